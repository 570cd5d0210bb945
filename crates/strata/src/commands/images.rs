use std::collections::BTreeMap;

use strata_engine::images::ImageRow;
use strata_engine::Engine;
use strata_oci::time::{human_duration, human_size, Timestamp};

use crate::cli::ImagesArgs;
use crate::output::{print, table};

pub fn run(engine: &Engine, args: ImagesArgs) -> anyhow::Result<u8> {
    let rows = engine.list_images(args.reference.as_deref())?;
    let id = |row: &ImageRow| {
        if args.no_trunc {
            row.id.to_string()
        } else {
            row.id.short().to_owned()
        }
    };
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        let ids: String = rows.iter().filter(|r| seen.insert(r.id.clone())).map(|r| id(r) + "\n").collect();
        return print(&ids).map(|()| 0);
    }
    let now = Timestamp::now();
    let since = |row: &ImageRow| {
        row.created.map_or_else(|| "N/A".to_owned(), |c| format!("{} ago", human_duration(now.seconds - c.seconds)))
    };
    match args.format.as_deref() {
        Some(format) if format != "table" => {
            let mut objects = Vec::new();
            for row in &rows {
                let mut object = BTreeMap::new();
                object.insert("Containers", "N/A".to_owned());
                object.insert("CreatedAt", row.created.map(|c| c.to_go_string()).unwrap_or_default());
                object.insert("CreatedSince", since(row));
                object.insert("Digest", row.digest.clone());
                object.insert("ID", id(row));
                object.insert("Repository", row.repository.clone());
                object.insert("SharedSize", "N/A".to_owned());
                object.insert("Size", human_size(row.size));
                object.insert("Tag", row.tag.clone());
                object.insert("UniqueSize", "N/A".to_owned());
                object.insert("VirtualSize", human_size(row.size));
                objects.push(serde_json::to_value(&object)?);
            }
            print(&crate::output::render_objects(format, &objects, &images_header)?)?;
        }
        _ => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut cells = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for row in &rows {
                let mut line = vec![row.repository.clone(), row.tag.clone()];
                if args.digests {
                    line.push(row.digest.clone());
                }
                line.extend([id(row), since(row), human_size(row.size)]);
                cells.push(line);
            }
            print(&table(&cells))?;
        }
    }
    Ok(0)
}

/// The column header Docker shows for an `images --format 'table ...'` field.
fn images_header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".to_owned(),
        "CreatedSince" => "CREATED".to_owned(),
        "CreatedAt" => "CREATED AT".to_owned(),
        other => other.to_uppercase(),
    }
}

use std::collections::BTreeMap;

use strata_engine::images::HistoryRow;
use strata_engine::Engine;
use strata_oci::time::{human_duration, human_size, Timestamp};

use crate::cli::HistoryArgs;
use crate::output::{ellipsis, print, table};

pub fn run(engine: &Engine, args: HistoryArgs) -> anyhow::Result<u8> {
    let rows = engine.history(&args.image)?;
    let id = |row: &HistoryRow| match &row.id {
        Some(id) if args.no_trunc => id.to_string(),
        Some(id) => id.short().to_owned(),
        None => "<missing>".to_owned(),
    };
    if args.quiet {
        return print(&rows.iter().map(|r| id(r) + "\n").collect::<String>()).map(|()| 0);
    }
    let now = Timestamp::now();
    // Docker shows whole seconds here.
    let created_at =
        |row: &HistoryRow| row.created.map(|c| Timestamp::from_unix(c.seconds).to_rfc3339()).unwrap_or_default();
    let created = |row: &HistoryRow| match (row.created, args.human) {
        (Some(c), true) => format!("{} ago", human_duration(now.seconds - c.seconds)),
        (Some(_), false) => created_at(row),
        (None, _) => "N/A".to_owned(),
    };
    let created_by = |row: &HistoryRow| {
        let text = row.created_by.replace('\t', " ");
        if args.no_trunc {
            text
        } else {
            ellipsis(&text, 45)
        }
    };
    let size = |row: &HistoryRow| {
        if args.human {
            human_size(row.size)
        } else {
            row.size.to_string()
        }
    };
    match args.format.as_deref() {
        Some(format) if format != "table" => {
            let mut objects = Vec::new();
            for row in &rows {
                let mut object = BTreeMap::new();
                object.insert("Comment", row.comment.clone());
                object.insert("CreatedAt", created_at(row));
                object.insert("CreatedBy", created_by(row));
                object.insert("CreatedSince", created(row));
                object.insert("ID", id(row));
                object.insert("Size", size(row));
                objects.push(serde_json::to_value(&object)?);
            }
            print(&crate::output::render_objects(format, &objects, &history_header)?)?;
        }
        _ => {
            let mut cells = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from).to_vec()];
            for row in &rows {
                cells.push(vec![id(row), created(row), created_by(row), size(row), row.comment.clone()]);
            }
            print(&table(&cells))?;
        }
    }
    Ok(0)
}

/// The column header Docker shows for a `history --format 'table ...'` field.
fn history_header(field: &str) -> String {
    match field {
        "ID" => "IMAGE".to_owned(),
        "CreatedSince" => "CREATED".to_owned(),
        "CreatedAt" => "CREATED AT".to_owned(),
        "CreatedBy" => "CREATED BY".to_owned(),
        other => other.to_uppercase(),
    }
}

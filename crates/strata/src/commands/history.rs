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
        Some("json") | Some("{{json .}}") => {
            let mut out = String::new();
            for row in &rows {
                let mut object = BTreeMap::new();
                object.insert("Comment", row.comment.clone());
                object.insert("CreatedAt", created_at(row));
                object.insert("CreatedBy", created_by(row));
                object.insert("CreatedSince", created(row));
                object.insert("ID", id(row));
                object.insert("Size", size(row));
                out.push_str(&serde_json::to_string(&object)?);
                out.push('\n');
            }
            print(&out)?;
        }
        None | Some("table") => {
            let mut cells = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from).to_vec()];
            for row in &rows {
                cells.push(vec![id(row), created(row), created_by(row), size(row), row.comment.clone()]);
            }
            print(&table(&cells))?;
        }
        Some(other) => anyhow::bail!("unsupported --format {other:?}: use table or json"),
    }
    Ok(0)
}

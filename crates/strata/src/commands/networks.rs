//! `strata network create|ls|inspect|rm|prune`.

use strata_engine::networks::{predefined_id, NetworkCreateOptions, DEFAULT_NETWORK};
use strata_engine::Engine;
use strata_oci::time::Timestamp;

use crate::cli::{NamesArgs, NetworkCreateArgs, NetworkInspectArgs, NetworkLsArgs, NetworkPruneArgs};
use crate::output::{print, print_error, table};

pub fn create(engine: &Engine, args: NetworkCreateArgs) -> anyhow::Result<u8> {
    let record = engine.create_network(&NetworkCreateOptions {
        name: args.name,
        driver: args.driver,
        subnet: args.subnet,
        gateway: args.gateway,
        ip_range: args.ip_range,
        internal: args.internal,
        labels: args.label,
        options: args.opt,
    })?;
    print(&format!("{}\n", record.id))?;
    Ok(0)
}

/// Every network as `ls` shows it: the records (the default `bridge` made if missing), then
/// `host` and `none`, sorted by name.
fn rows(engine: &Engine) -> anyhow::Result<Vec<serde_json::Value>> {
    engine.find_network(DEFAULT_NETWORK)?;
    let mut rows: Vec<serde_json::Value> = engine
        .list_networks()?
        .iter()
        .map(|n| {
            let created = Timestamp::parse_rfc3339(&n.created).map(|t| t.to_go_string()).unwrap_or_default();
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            serde_json::json!({
                "ID": n.id, "Name": n.name, "Driver": n.driver, "Scope": "local", "IPv6": "false",
                "Internal": n.internal.to_string(), "Labels": labels.join(","), "CreatedAt": created,
                "builtin": n.name == DEFAULT_NETWORK,
            })
        })
        .collect();
    for name in ["host", "none"] {
        rows.push(serde_json::json!({
            "ID": predefined_id(name), "Name": name, "Driver": if name == "host" { "host" } else { "null" },
            "Scope": "local", "IPv6": "false", "Internal": "false", "Labels": "", "CreatedAt": "", "builtin": true,
        }));
    }
    rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    Ok(rows)
}

fn matches(row: &serde_json::Value, filters: &[String]) -> anyhow::Result<bool> {
    for filter in filters {
        let (key, value) = filter
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {filter}"))?;
        let field = |name: &str| row[name].as_str().unwrap_or_default().to_owned();
        let ok = match key {
            "name" => field("Name").contains(value),
            "id" => field("ID").starts_with(value),
            "driver" => field("Driver") == value,
            "label" => field("Labels").split(',').any(|l| l == value || l.split('=').next() == Some(value)),
            "type" => match value {
                "custom" => !row["builtin"].as_bool().unwrap_or(false),
                "builtin" => row["builtin"].as_bool().unwrap_or(false),
                other => anyhow::bail!("invalid filter: 'type'='{other}'"),
            },
            "scope" => value == "local",
            other => anyhow::bail!("invalid filter '{other}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn ls(engine: &Engine, args: NetworkLsArgs) -> anyhow::Result<u8> {
    let mut shown = Vec::new();
    for mut row in rows(engine)? {
        if matches(&row, &args.filters)? {
            if !args.no_trunc {
                let short = row["ID"].as_str().unwrap_or_default()[..12].to_owned();
                row["ID"] = serde_json::Value::String(short);
            }
            if let Some(map) = row.as_object_mut() {
                map.remove("builtin");
            }
            shown.push(row);
        }
    }
    if args.quiet {
        return print(&shown.iter().map(|r| format!("{}\n", r["ID"].as_str().unwrap_or_default())).collect::<String>())
            .map(|()| 0);
    }
    if let Some(format) = &args.format {
        let header = |field: &str| match field {
            "ID" => "NETWORK ID".to_owned(),
            other => other.to_uppercase(),
        };
        print(&crate::output::render_objects(format, &shown, &header)?)?;
        return Ok(0);
    }
    let mut lines = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"].map(String::from).to_vec()];
    for row in &shown {
        lines.push(
            ["ID", "Name", "Driver", "Scope"].iter().map(|k| row[*k].as_str().unwrap_or_default().to_owned()).collect(),
        );
    }
    print(&table(&lines))?;
    Ok(0)
}

/// A network as `network inspect` shows it (`host` and `none` too).
pub fn network_json(engine: &Engine, name: &str) -> anyhow::Result<serde_json::Value> {
    if matches!(name, "host" | "none") {
        return Ok(engine.predefined_network_json(name));
    }
    Ok(engine.find_network(name).and_then(|n| engine.network_json(&n))?)
}

pub fn inspect(engine: &Engine, args: NetworkInspectArgs) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut status = 0;
    for name in &args.names {
        match network_json(engine, name) {
            Ok(value) => found.push(value),
            Err(e) => {
                print_error(&e);
                status = 1;
            }
        }
    }
    match &args.format {
        Some(format) => {
            for value in &found {
                print(&format!("{}\n", crate::output::render_template(format, value)?))?;
            }
        }
        None => print(&format!("{}\n", serde_json::to_string_pretty(&found)?))?,
    }
    Ok(status)
}

pub fn rm(engine: &Engine, args: NamesArgs) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in &args.names {
        match engine.remove_network(name) {
            Ok(_) => print(&format!("{name}\n"))?,
            Err(e) => {
                print_error(&e.into());
                status = 1;
            }
        }
    }
    Ok(status)
}

pub fn prune(engine: &Engine, args: NetworkPruneArgs) -> anyhow::Result<u8> {
    if !args.force {
        eprint!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let removed = engine.prune_networks()?;
    if !removed.is_empty() {
        print(&format!("Deleted Networks:\n{}\n", removed.iter().map(|n| format!("{n}\n")).collect::<String>()))?;
    }
    Ok(0)
}

//! Output helpers: Docker's table layout, its templates' basics, error printing.

use std::io::{self, Write};

use serde_json::Value;

/// Lays rows out as Go's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` does for Docker's tables:
/// every column but the last is as wide as its widest cell plus 3, and at least 10.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = (widths[i] + 3).max(10);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Writes to stdout, treating a closed pipe as the end rather than an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `Error: outer: inner: …` on stderr.
pub fn print_error(error: &anyhow::Error) {
    let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
    // thiserror's `{path}: {source}` already includes the source; drop repeats.
    let mut message = String::new();
    for part in chain {
        if !message.contains(&part) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&part);
        }
    }
    eprintln!("Error: {message}");
}

/// `--format json` (one JSON object per line) or any other template, over the rows' objects.
pub fn render_objects(format: &str, objects: &[Value], header: &dyn Fn(&str) -> String) -> anyhow::Result<String> {
    if format == "json" || format == "{{json .}}" {
        return Ok(objects.iter().map(|o| o.to_string() + "\n").collect());
    }
    format_objects(format, objects, header)
}

/// `ps`/`images --format TEMPLATE` over the JSON objects of the rows: one rendered template per
/// row, or with `table TEMPLATE` aligned columns under headers (`header` names a field, as
/// Docker's `.ID` → `CONTAINER ID`). `\t` and `\n` in the template are escapes, as in Docker.
pub fn format_objects(format: &str, objects: &[Value], header: &dyn Fn(&str) -> String) -> anyhow::Result<String> {
    let unescaped = format.replace("\\t", "\t").replace("\\n", "\n");
    if let Some(template) = unescaped.strip_prefix("table") {
        let template = template.trim_start();
        let mut headers = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            headers.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| anyhow::anyhow!("template: unclosed action in {format:?}"))?;
            let action = after[..end].trim();
            headers.push_str(&header(action.strip_prefix("json ").unwrap_or(action).trim_start_matches('.')));
            rest = &after[end + 2..];
        }
        headers.push_str(rest);
        let mut rows = vec![headers.split('\t').map(str::to_owned).collect::<Vec<_>>()];
        for object in objects {
            rows.push(render(template, object, true)?.split('\t').map(str::to_owned).collect());
        }
        return Ok(table(&rows));
    }
    let mut out = String::new();
    for object in objects {
        out.push_str(&render(&unescaped, object, true)?);
        out.push('\n');
    }
    Ok(out)
}

/// Renders a Go template (`inspect -f`) over `value`; see [`crate::template`].
pub fn render_template(template: &str, value: &Value) -> anyhow::Result<String> {
    render(template, value, false)
}

/// `strict`: a field the object does not have is an error, as for Docker's `ps`/`images`
/// rows (Go structs); otherwise `<no value>`, as for `inspect` (Go maps).
fn render(template: &str, value: &Value, strict: bool) -> anyhow::Result<String> {
    crate::template::render(template, value, strict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_templates_and_tables() {
        let objects = vec![
            serde_json::json!({"ID": "abc", "Names": "web", "Status": "Up 2 seconds"}),
            serde_json::json!({"ID": "def", "Names": "db", "Status": "Exited (0) 1 second ago"}),
        ];
        let header = |field: &str| if field == "ID" { "CONTAINER ID".to_owned() } else { field.to_uppercase() };
        assert_eq!(format_objects("{{.Names}}", &objects, &header).expect("renders"), "web\ndb\n");
        let unknown = format_objects("{{.Nope}}", &objects, &header).expect_err("no such field");
        assert!(unknown.to_string().contains("can't evaluate field Nope"), "{unknown}");
        assert_eq!(render_template("{{.Nope}}", &objects[0]).expect("inspect is lenient"), "<no value>");
        assert_eq!(format_objects("{{.ID}}\\t{{.Names}}", &objects, &header).expect("renders"), "abc\tweb\ndef\tdb\n");
        assert_eq!(
            format_objects("table {{.ID}}\\t{{.Status}}", &objects, &header).expect("renders"),
            "CONTAINER ID   STATUS\nabc            Up 2 seconds\ndef            Exited (0) 1 second ago\n"
        );
        assert!(format_objects("{{.Names", &objects, &header).is_err());
    }

    #[test]
    fn table_matches_docker_spacing() {
        let rows = vec![
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["busybox".into(), "latest".into(), "4.26MB".into()],
        ];
        assert_eq!(table(&rows), "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n");
    }

    #[test]
    fn templates() {
        let v = serde_json::json!({"Id": "sha256:x", "Config": {"Cmd": ["sh", "-c"]}});
        assert_eq!(render_template("{{.Id}}", &v).expect("ok"), "sha256:x");
        assert_eq!(render_template("{{.Config.Cmd}}", &v).expect("ok"), "[sh -c]");
        assert_eq!(render_template("{{json .Config.Cmd}}", &v).expect("ok"), r#"["sh","-c"]"#);
        assert!(render_template("{{.Id.X}}", &v).is_err());
    }
}

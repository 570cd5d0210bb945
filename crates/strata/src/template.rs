//! Go's text/template, as much of it as `--format` users write against Docker: fields
//! (`{{.A.B}}`), variables (`$`, `$v`), pipelines (`{{.Names | upper}}`), parentheses,
//! `if`/`else if`/`else`, `range` (with `$k, $v :=`), `with`, trim markers (`{{-`, `-}}`),
//! comments, Go's functions (`len`, `index`, `eq`/`ne`/`lt`/`le`/`gt`/`ge`, `and`, `or`, `not`,
//! `print`, `printf`, `println`, `slice`) and the Docker CLI's (`json`, `join`, `split`,
//! `upper`, `lower`, `title`, `pad`, `truncate`). Values are the JSON the commands print.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// Renders `template` over `value`. `strict`: a field the object does not have is an error, as
/// for Docker's `ps`/`images` rows (Go structs); otherwise `<no value>`, as for `inspect` (Go
/// maps).
pub fn render(template: &str, value: &Value, strict: bool) -> Result<String> {
    let nodes = parse(template)?;
    let mut out = String::new();
    let mut scope = Scope { vars: vec![("$".to_owned(), value.clone())], strict, template };
    execute(&nodes, value, &mut scope, &mut out)?;
    Ok(out)
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Vec<String>, Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipe {
    /// `$x :=` (one name) or `$k, $v :=` (range).
    declare: Vec<String>,
    commands: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty: `.`).
    Field(Vec<String>),
    /// `$v.A.B`.
    Var(String, Vec<String>),
    Literal(Value),
    Function(String),
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Literal(Value),
    Ident(String),
    Open,
    /// `)`, and the fields that follow it.
    Close(Vec<String>),
    Pipe,
    Declare,
    Comma,
}

/// Text and the actions between `{{` and `}}`, with trim markers applied.
fn split(template: &str) -> Result<Vec<(bool, String)>> {
    let mut parts: Vec<(bool, String)> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_owned();
        let mut inner = &rest[start + 2..];
        if let Some(trimmed) = inner.strip_prefix("- ") {
            text = text.trim_end().to_owned();
            inner = trimmed;
        }
        let end = inner.find("}}").ok_or_else(|| anyhow!("template: unclosed action in {template:?}"))?;
        let mut action = &inner[..end];
        let mut after = &inner[end + 2..];
        if let Some(trimmed) = action.strip_suffix(" -") {
            action = trimmed;
            after = after.trim_start();
        }
        parts.push((false, text));
        parts.push((true, action.trim().to_owned()));
        rest = after;
    }
    parts.push((false, rest.to_owned()));
    Ok(parts)
}

fn fields_after(chars: &[char], at: &mut usize) -> Vec<String> {
    let mut fields = Vec::new();
    while *at < chars.len() && chars[*at] == '.' {
        *at += 1;
        let start = *at;
        while *at < chars.len() && (chars[*at].is_alphanumeric() || chars[*at] == '_') {
            *at += 1;
        }
        if *at == start {
            break;
        }
        fields.push(chars[start..*at].iter().collect());
    }
    fields
}

fn tokenize(action: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = action.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        match c {
            ' ' | '\t' | '\n' | '\r' => at += 1,
            '(' => {
                tokens.push(Token::Open);
                at += 1;
            }
            ')' => {
                at += 1;
                tokens.push(Token::Close(fields_after(&chars, &mut at)));
            }
            '|' => {
                tokens.push(Token::Pipe);
                at += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                at += 1;
            }
            ':' if chars.get(at + 1) == Some(&'=') => {
                tokens.push(Token::Declare);
                at += 2;
            }
            '=' => {
                tokens.push(Token::Declare);
                at += 1;
            }
            '.' => {
                let fields = fields_after(&chars, &mut at);
                if fields.is_empty() {
                    at += 1;
                }
                tokens.push(Token::Field(fields));
            }
            '$' => {
                let start = at;
                at += 1;
                while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
                let name: String = chars[start..at].iter().collect();
                tokens.push(Token::Var(name, fields_after(&chars, &mut at)));
            }
            '"' => {
                let mut text = String::new();
                at += 1;
                loop {
                    let Some(&c) = chars.get(at) else { bail!("template: unterminated quoted string in {action:?}") };
                    at += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let escaped = chars.get(at).copied().unwrap_or('\\');
                            at += 1;
                            text.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            });
                        }
                        other => text.push(other),
                    }
                }
                tokens.push(Token::Literal(Value::String(text)));
            }
            '`' => {
                let end = chars[at + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| anyhow!("template: unterminated raw quoted string in {action:?}"))?;
                tokens.push(Token::Literal(Value::String(chars[at + 1..at + 1 + end].iter().collect())));
                at += end + 2;
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(at + 1).is_some_and(char::is_ascii_digit)) => {
                let start = at;
                at += 1;
                while at < chars.len() && (chars[at].is_ascii_digit() || chars[at] == '.') {
                    at += 1;
                }
                let text: String = chars[start..at].iter().collect();
                let number = match text.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => {
                        text.parse::<f64>().map(Value::from).map_err(|_| anyhow!("template: bad number {text}"))?
                    }
                };
                tokens.push(Token::Literal(number));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = at;
                while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
                let word: String = chars[start..at].iter().collect();
                tokens.push(match word.as_str() {
                    "true" => Token::Literal(Value::Bool(true)),
                    "false" => Token::Literal(Value::Bool(false)),
                    "nil" => Token::Literal(Value::Null),
                    _ => Token::Ident(word),
                });
            }
            other => bail!("template: unexpected {other:?} in {action:?}"),
        }
    }
    Ok(tokens)
}

/// A pipeline from `tokens[*at..]`, up to a `)` (inside parentheses) or the end.
fn parse_pipe(tokens: &[Token], at: &mut usize, action: &str) -> Result<Pipe> {
    let mut declare = Vec::new();
    // `$x :=` or `$k, $v :=`.
    let mut look = *at;
    let mut names = Vec::new();
    while let Some(Token::Var(name, fields)) = tokens.get(look) {
        if !fields.is_empty() {
            break;
        }
        names.push(name.clone());
        look += 1;
        match tokens.get(look) {
            Some(Token::Comma) => look += 1,
            Some(Token::Declare) => {
                declare = names.clone();
                *at = look + 1;
                break;
            }
            _ => break,
        }
    }
    let mut commands = Vec::new();
    let mut command = Vec::new();
    while let Some(token) = tokens.get(*at) {
        match token {
            Token::Close(_) => break,
            Token::Pipe => {
                if command.is_empty() {
                    bail!("template: missing command before | in {action:?}");
                }
                commands.push(std::mem::take(&mut command));
                *at += 1;
            }
            Token::Open => {
                *at += 1;
                let inner = parse_pipe(tokens, at, action)?;
                let Some(Token::Close(fields)) = tokens.get(*at) else { bail!("template: unclosed ( in {action:?}") };
                command.push(Arg::Sub(Box::new(inner), fields.clone()));
                *at += 1;
            }
            Token::Field(fields) => {
                command.push(Arg::Field(fields.clone()));
                *at += 1;
            }
            Token::Var(name, fields) => {
                command.push(Arg::Var(name.clone(), fields.clone()));
                *at += 1;
            }
            Token::Literal(value) => {
                command.push(Arg::Literal(value.clone()));
                *at += 1;
            }
            Token::Ident(name) => {
                command.push(Arg::Function(name.clone()));
                *at += 1;
            }
            Token::Comma | Token::Declare => bail!("template: unexpected {token:?} in {action:?}"),
        }
    }
    if !command.is_empty() {
        commands.push(command);
    }
    if commands.is_empty() {
        bail!("template: missing value in {action:?}");
    }
    Ok(Pipe { declare, commands })
}

fn pipe_of(action: &str) -> Result<Pipe> {
    let tokens = tokenize(action)?;
    let mut at = 0;
    let pipe = parse_pipe(&tokens, &mut at, action)?;
    if at != tokens.len() {
        bail!("template: unexpected ) in {action:?}");
    }
    Ok(pipe)
}

fn parse(template: &str) -> Result<Vec<Node>> {
    let parts = split(template)?;
    let mut at = 0;
    let (nodes, end) = parse_nodes(&parts, &mut at, template)?;
    if let Some(end) = end {
        bail!("template: unexpected {{{{{end}}}}} in {template:?}");
    }
    Ok(nodes)
}

/// Nodes up to an `else`/`end` (returned) or the end of the template.
fn parse_nodes(parts: &[(bool, String)], at: &mut usize, template: &str) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some((is_action, text)) = parts.get(*at) {
        *at += 1;
        if !is_action {
            if !text.is_empty() {
                nodes.push(Node::Text(text.clone()));
            }
            continue;
        }
        let (keyword, rest) = match text.split_once(|c: char| c.is_whitespace()) {
            Some((keyword, rest)) => (keyword, rest.trim()),
            None => (text.as_str(), ""),
        };
        match keyword {
            "" => bail!("template: missing value for command in {template:?}"),
            _ if text.starts_with("/*") => {}
            "end" | "else" => return Ok((nodes, Some(text.clone()))),
            "if" | "with" | "range" => nodes.push(parse_block(keyword, rest, parts, at, template)?),
            _ => nodes.push(Node::Action(pipe_of(text)?)),
        }
    }
    Ok((nodes, None))
}

/// An `if`/`with`/`range` block, its `else` (or `else if ...` chain) and `end`.
fn parse_block(keyword: &str, head: &str, parts: &[(bool, String)], at: &mut usize, template: &str) -> Result<Node> {
    let pipe = pipe_of(head)?;
    let (body, end) = parse_nodes(parts, at, template)?;
    let end = end.ok_or_else(|| anyhow!("template: unexpected EOF: {keyword} without end in {template:?}"))?;
    let otherwise = if end == "end" {
        Vec::new()
    } else if let Some(chained) = end.strip_prefix("else ").map(str::trim) {
        // `else if X` / `else with X`: a block of its own that ends this one too.
        let (inner, head) = chained.split_once(|c: char| c.is_whitespace()).unwrap_or((chained, ""));
        if !matches!(inner, "if" | "with") {
            bail!("template: unexpected {{{{{end}}}}} in {template:?}");
        }
        vec![parse_block(inner, head.trim(), parts, at, template)?]
    } else {
        let (otherwise, end) = parse_nodes(parts, at, template)?;
        if end.as_deref() != Some("end") {
            bail!("template: expected end after else in {template:?}");
        }
        otherwise
    };
    Ok(match keyword {
        "if" => Node::If(pipe, body, otherwise),
        "with" => Node::With(pipe, body, otherwise),
        _ => {
            let names = pipe.declare.clone();
            Node::Range(names, pipe, body, otherwise)
        }
    })
}

struct Scope<'t> {
    vars: Vec<(String, Value)>,
    strict: bool,
    template: &'t str,
}

impl Scope<'_> {
    fn var(&self, name: &str) -> Result<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("template: undefined variable: {name}"))
    }
}

fn execute(nodes: &[Node], dot: &Value, scope: &mut Scope, out: &mut String) -> Result<()> {
    for node in nodes {
        let depth = scope.vars.len();
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipe) => {
                let value = eval_pipe(pipe, dot, scope)?;
                if pipe.declare.is_empty() {
                    out.push_str(&go_format(&value));
                } else {
                    // A declaration prints nothing; the variable lives to the end of the block.
                    scope.vars.push((pipe.declare[0].clone(), value));
                    continue;
                }
            }
            Node::If(pipe, body, otherwise) => {
                let chosen = if truth(&eval_pipe(pipe, dot, scope)?) { body } else { otherwise };
                execute(chosen, dot, scope, out)?;
            }
            Node::With(pipe, body, otherwise) => {
                let value = eval_pipe(pipe, dot, scope)?;
                if truth(&value) {
                    execute(body, &value, scope, out)?;
                } else {
                    execute(otherwise, dot, scope, out)?;
                }
            }
            Node::Range(names, pipe, body, otherwise) => {
                let value = eval_pipe(pipe, dot, scope)?;
                let items: Vec<(Value, Value)> = match &value {
                    Value::Array(items) => items.iter().enumerate().map(|(i, v)| (Value::from(i), v.clone())).collect(),
                    // Go ranges over a map in key order.
                    Value::Object(map) => {
                        let mut keys: Vec<&String> = map.keys().collect();
                        keys.sort();
                        keys.into_iter().map(|k| (Value::String(k.clone()), map[k].clone())).collect()
                    }
                    Value::Null => Vec::new(),
                    other => bail!("template: range can't iterate over {}", go_format(other)),
                };
                if items.is_empty() {
                    execute(otherwise, dot, scope, out)?;
                }
                for (key, item) in items {
                    match names.as_slice() {
                        [] => {}
                        [value] => scope.vars.push((value.clone(), item.clone())),
                        [key_name, value, ..] => {
                            scope.vars.push((key_name.clone(), key));
                            scope.vars.push((value.clone(), item.clone()));
                        }
                    }
                    execute(body, &item, scope, out)?;
                    scope.vars.truncate(depth);
                }
            }
        }
        scope.vars.truncate(depth);
    }
    Ok(())
}

fn eval_pipe(pipe: &Pipe, dot: &Value, scope: &Scope) -> Result<Value> {
    let mut piped: Option<Value> = None;
    for command in &pipe.commands {
        piped = Some(eval_command(command, dot, scope, piped)?);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_command(command: &[Arg], dot: &Value, scope: &Scope, piped: Option<Value>) -> Result<Value> {
    match command {
        [Arg::Function(name), args @ ..] => {
            let mut values = args.iter().map(|a| eval_arg(a, dot, scope)).collect::<Result<Vec<_>>>()?;
            values.extend(piped);
            call(name, values, scope)
        }
        [single] if piped.is_none() => eval_arg(single, dot, scope),
        [_] => bail!("template: can't give argument to non-function in {:?}", scope.template),
        _ => bail!("template: can't give argument to non-function in {:?}", scope.template),
    }
}

fn eval_arg(arg: &Arg, dot: &Value, scope: &Scope) -> Result<Value> {
    match arg {
        Arg::Field(fields) => walk(dot, fields, scope),
        Arg::Var(name, fields) => walk(&scope.var(name)?, fields, scope),
        Arg::Literal(value) => Ok(value.clone()),
        Arg::Function(name) => call(name, Vec::new(), scope),
        Arg::Sub(pipe, fields) => walk(&eval_pipe(pipe, dot, scope)?, fields, scope),
    }
}

/// Fields that are Go maps in Docker's row structs: a key missing below them is `<no value>`,
/// not an error (`{{.Actor.Attributes.name}}` of an event without a name).
const GO_MAPS: &[&str] = &["Attributes", "Labels"];

fn walk(value: &Value, fields: &[String], scope: &Scope) -> Result<Value> {
    let mut current = value.clone();
    let mut in_map = false;
    for field in fields {
        current = match current {
            Value::Object(mut map) => match map.remove(field) {
                Some(next) => next,
                None if scope.strict && !in_map => {
                    bail!("template: executing \"\" at <.{field}>: can't evaluate field {field}")
                }
                None => Value::Null,
            },
            Value::Null => Value::Null,
            other => bail!("template: {:?}: can't evaluate field {field} in {}", scope.template, go_format(&other)),
        };
        in_map = GO_MAPS.contains(&field.as_str());
    }
    Ok(current)
}

fn truth(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => go_format(other),
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().zip(y.as_f64()).and_then(|(x, y)| x.partial_cmp(&y)).ok_or_else(|| anyhow!("incomparable"))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => bail!("template: incompatible types for comparison"),
    }
}

fn call(name: &str, args: Vec<Value>, scope: &Scope) -> Result<Value> {
    let want = |n: usize| -> Result<()> {
        if args.len() != n {
            bail!("template: wrong number of args for {name}: want {n} got {}", args.len());
        }
        Ok(())
    };
    Ok(match name {
        "json" => {
            want(1)?;
            Value::String(serde_json::to_string(&args[0])?)
        }
        "len" => {
            want(1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => bail!("template: len of {}", go_format(other)),
            })
        }
        "index" => {
            let mut current = args.first().cloned().unwrap_or(Value::Null);
            for key in args.iter().skip(1) {
                current = match (&current, key) {
                    (Value::Object(map), Value::String(k)) => map.get(k).cloned().unwrap_or(Value::Null),
                    (Value::Array(items), Value::Number(n)) => {
                        let i = n.as_u64().ok_or_else(|| anyhow!("template: index of a negative number"))?;
                        items.get(i as usize).cloned().ok_or_else(|| anyhow!("template: index out of range: {i}"))?
                    }
                    (Value::Null, _) => Value::Null,
                    _ => bail!("template: can't index {} with {}", go_format(&current), go_format(key)),
                };
            }
            current
        }
        "slice" => {
            let bound = |i: usize| args.get(i).and_then(Value::as_u64).map(|n| n as usize);
            match args.first() {
                Some(Value::String(s)) => {
                    let (from, to) = (bound(1).unwrap_or(0), bound(2).unwrap_or(s.len()));
                    Value::String(s.get(from..to).ok_or_else(|| anyhow!("template: slice out of range"))?.to_owned())
                }
                Some(Value::Array(a)) => {
                    let (from, to) = (bound(1).unwrap_or(0), bound(2).unwrap_or(a.len()));
                    Value::Array(a.get(from..to).ok_or_else(|| anyhow!("template: slice out of range"))?.to_vec())
                }
                _ => bail!("template: can't slice"),
            }
        }
        "eq" => {
            let first = args.first().ok_or_else(|| anyhow!("template: missing argument for eq"))?;
            Value::Bool(args[1..].iter().any(|other| other == first))
        }
        "ne" => {
            want(2)?;
            Value::Bool(args[0] != args[1])
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let order = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => order.is_lt(),
                "le" => order.is_le(),
                "gt" => order.is_gt(),
                _ => order.is_ge(),
            })
        }
        "and" => args.iter().find(|v| !truth(v)).or(args.last()).cloned().unwrap_or(Value::Null),
        "or" => args.iter().find(|v| truth(v)).or(args.last()).cloned().unwrap_or(Value::Null),
        "not" => {
            want(1)?;
            Value::Bool(!truth(&args[0]))
        }
        "print" => Value::String(args.iter().map(text).collect::<Vec<_>>().join("")),
        "println" => Value::String(format!("{}\n", args.iter().map(text).collect::<Vec<_>>().join(" "))),
        "printf" => {
            let format = args.first().map(text).unwrap_or_default();
            Value::String(printf(&format, &args[1.min(args.len())..]))
        }
        "join" => {
            want(2)?;
            let items: Vec<String> = args[0].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
            Value::String(items.join(&text(&args[1])))
        }
        "split" => {
            want(2)?;
            Value::Array(text(&args[0]).split(&text(&args[1])).map(|s| Value::String(s.to_owned())).collect())
        }
        "upper" => {
            want(1)?;
            Value::String(text(&args[0]).to_uppercase())
        }
        "lower" => {
            want(1)?;
            Value::String(text(&args[0]).to_lowercase())
        }
        "title" => {
            want(1)?;
            let titled: Vec<String> = text(&args[0])
                .split(' ')
                .map(|w| {
                    let mut chars = w.chars();
                    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
                })
                .collect();
            Value::String(titled.join(" "))
        }
        "pad" => {
            want(3)?;
            let (left, right) = (args[1].as_u64().unwrap_or(0) as usize, args[2].as_u64().unwrap_or(0) as usize);
            Value::String(format!("{}{}{}", " ".repeat(left), text(&args[0]), " ".repeat(right)))
        }
        "truncate" => {
            want(2)?;
            let length = args[1].as_u64().unwrap_or(0) as usize;
            Value::String(text(&args[0]).chars().take(length).collect())
        }
        other => bail!("template: {:?}: function {other:?} not defined", scope.template),
    })
}

/// Go's `printf` for the verbs people use: `%s`, `%v`, `%d`, `%q`, `%%`.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&format!("{:?}", args.next().map(text).unwrap_or_default())),
            Some(_) => out.push_str(&args.next().map(text).unwrap_or_else(|| "%!v(MISSING)".to_owned())),
            None => out.push('%'),
        }
    }
    out
}

/// Go's `%v` of decoded JSON: strings bare, arrays `[a b]`, maps `map[k:v]`, null `<no value>`.
pub fn go_format(value: &Value) -> String {
    match value {
        Value::Null => "<no value>".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_format).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter().map(|k| format!("{k}:{}", go_format(&map[*k]))).collect::<Vec<_>>().join(" ")
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(template: &str, value: &Value) -> String {
        render(template, value, false).unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    #[test]
    fn fields_functions_and_pipelines() {
        let v = json!({"Id": "sha256:x", "Name": "/web", "Config": {"Cmd": ["sh", "-c"], "Labels": {"a": "1", "b": "2"}},
            "NetworkSettings": {"Networks": {"front": {"IPAddress": "10.0.0.2"}, "back": {"IPAddress": "10.1.0.2"}},
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}}});
        assert_eq!(r("{{.Id}}", &v), "sha256:x");
        assert_eq!(r("{{.Config.Cmd}}", &v), "[sh -c]");
        assert_eq!(r("{{json .Config.Cmd}}", &v), r#"["sh","-c"]"#);
        assert_eq!(r("{{len .Config.Cmd}}", &v), "2");
        assert_eq!(r("{{len .NetworkSettings.Networks}}", &v), "2");
        assert_eq!(r(r#"{{index .Config.Labels "b"}}"#, &v), "2");
        assert_eq!(r(r#"{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}"#, &v), "8080");
        assert_eq!(r("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", &v), "10.1.0.2 10.0.0.2 ");
        assert_eq!(r("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", &v), "a=1;b=2;");
        assert_eq!(r("{{range $i, $c := .Config.Cmd}}{{$i}}:{{$c}} {{end}}", &v), "0:sh 1:-c ");
        assert_eq!(r("{{.Name | upper}}", &v), "/WEB");
        assert_eq!(r(r#"{{join .Config.Cmd ","}}"#, &v), "sh,-c");
        assert_eq!(r(r#"{{if eq .Name "/web"}}yes{{else}}no{{end}}"#, &v), "yes");
        assert_eq!(r(r#"{{if .Missing}}a{{else if .Name}}b{{else}}c{{end}}"#, &v), "b");
        assert_eq!(r("{{with .Config}}{{.Cmd}}{{end}}", &v), "[sh -c]");
        assert_eq!(r("{{range .Nothing}}x{{else}}empty{{end}}", &v), "empty");
        assert_eq!(r("a  {{- .Id -}}  b", &v), "asha256:xb");
        assert_eq!(r("{{/* note */}}{{$n := .Name}}{{$n}}{{$.Id}}", &v), "/websha256:x");
        assert_eq!(r(r#"{{printf "%s-%d" .Name 3}}"#, &v), "/web-3");
        assert_eq!(r("{{.Config.Labels}}", &v), "map[a:1 b:2]");
        assert_eq!(r("{{.Nope}}", &v), "<no value>");
    }

    #[test]
    fn errors_say_what() {
        let v = json!({"Names": "web", "Labels": {}});
        assert!(render("{{.Names", &v, true).is_err());
        let strict = render("{{.Nope}}", &v, true).expect_err("a row has no such field");
        assert!(strict.to_string().contains("can't evaluate field Nope"), "{strict}");
        assert_eq!(render("{{.Labels.x}}", &v, true).expect("a Go map"), "<no value>");
        assert!(render("{{if .Names}}x", &v, false).expect_err("no end").to_string().contains("without end"));
        assert!(render("{{nosuch .Names}}", &v, false).expect_err("unknown").to_string().contains("not defined"));
        assert!(render("{{.Names.X}}", &v, false).is_err());
        assert!(render("{{end}}", &v, false).is_err());
    }
}

//! The line-level parser: Dockerfile text → a list of located [`Node`]s, read exactly as
//! BuildKit's `frontend/dockerfile/parser` reads it (directives, continuations, comments inside
//! continuations, JSON vs shell form, flags, heredocs, ONBUILD nesting).
//!
//! Nothing here knows what an instruction means; `instructions` does that.

use std::fmt::Write as _;

use crate::error::{Error, Location};
use crate::shell::Lexer;

/// The default escape token.
pub const DEFAULT_ESCAPE: char = '\\';

/// One instruction as parsed: BuildKit's `parser.Node` flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction, lowercased (`run`).
    pub value: String,
    /// The instruction word as written (`Run`), for messages.
    pub keyword: String,
    /// The logical line (continuations joined), as BuildKit's `Original`.
    pub original: String,
    /// `--flag[=value]` words before the arguments (`--` dropped).
    pub flags: Vec<String>,
    /// The arguments, after the instruction's line parser.
    pub args: Vec<String>,
    /// ONBUILD's trigger.
    pub sub: Option<Box<Node>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    pub location: Location,
    /// Comment lines right above the instruction (without `#`).
    pub comments: Vec<String>,
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub file_descriptor: u32,
    /// False when the delimiter was quoted: the content is taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped.
    pub chomp: bool,
    pub content: String,
}

impl Heredoc {
    /// The content with leading tabs removed from every line when `<<-` was used.
    pub fn effective_content(&self) -> String {
        if self.chomp {
            chomp_heredoc_content(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// What [`parse`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseResult {
    pub nodes: Vec<Node>,
    pub escape: char,
    /// `# syntax=` directive, if any.
    pub syntax: Option<String>,
    /// `# check=` directive, if any.
    pub check: Option<String>,
    pub warnings: Vec<String>,
    /// First and last line of the instructions.
    pub location: Location,
}

impl ParseResult {
    /// BuildKit's `Node.Dump()` of the whole file, one line per instruction, plus a final
    /// newline — the format of BuildKit's parser `result` test files.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            out.push_str(&node.dump());
            out.push_str(")\n");
        }
        out
    }
}

impl Node {
    /// BuildKit's dump of one node, without the surrounding parentheses.
    pub fn dump(&self) -> String {
        let mut out = self.value.clone();
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, flag) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&go_quote(flag));
            }
            out.push(']');
        }
        if let Some(sub) = &self.sub {
            let _ = write!(out, " ({})", sub.dump());
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.trim().to_owned()
    }
}

/// Parser directives and the escape token in force.
#[derive(Debug, Clone)]
struct Directives {
    escape: char,
    done: bool,
    seen: Vec<String>,
    syntax: Option<String>,
    check: Option<String>,
}

impl Directives {
    fn new() -> Self {
        Directives { escape: DEFAULT_ESCAPE, done: false, seen: Vec::new(), syntax: None, check: None }
    }

    /// `# key = value` at the top of the file, before anything else.
    fn possible_directive(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                other => return Err(format!("invalid escape token '{other}' does not match ` or \\")),
            },
            "syntax" => self.syntax = Some(value.to_owned()),
            _ => self.check = Some(value.to_owned()),
        }
        Ok(())
    }

    /// BuildKit's continuation regex: `([^\e])\e[ \t]*$|^\e[ \t]*$`. Returns the line without
    /// the continuation and whether the logical line ends here.
    fn trim_continuation<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        let Some(before) = trimmed.strip_suffix(self.escape) else {
            return (line, true);
        };
        match before.chars().next_back() {
            None => ("", false),
            Some(c) if c != self.escape => (before, false),
            Some(_) => (line, true),
        }
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

fn is_empty_continuation_line(line: &str) -> bool {
    trim_newline(line).trim_start().is_empty()
}

/// Strips a comment line (`#` in the first column) to nothing.
fn trim_comments(line: &str) -> &str {
    if line.starts_with('#') {
        ""
    } else {
        line
    }
}

/// Lines with their endings, like BuildKit's `scanLines`.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            lines.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Parses Dockerfile text. `file` names the file in error messages.
pub fn parse(text: &str, file: &str) -> Result<ParseResult, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text);
    let mut directives = Directives::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut index = 0;
    let error = |message: String, start: usize, end: usize| Error::new(file, Location::new(start, end), message);

    while index < lines.len() {
        let raw = lines[index];
        index += 1;
        let line_number = index;
        if is_comment(raw) {
            comments.push(raw.get(1..).unwrap_or("").trim().to_owned());
        }
        let token = trim_newline(raw).trim_start();
        directives.possible_directive(token).map_err(|m| error(m, line_number, line_number))?;
        let token = trim_comments(token);
        let (first, mut end_of_line) = directives.trim_continuation(token);
        if end_of_line && first.is_empty() {
            continue;
        }
        let start_line = line_number;
        let mut line = first.to_owned();
        let mut empty_continuation = false;
        while !end_of_line && index < lines.len() {
            let raw = lines[index];
            index += 1;
            let token = trim_newline(raw);
            directives.possible_directive(token).map_err(|m| error(m, index, index))?;
            if is_comment(raw) {
                continue;
            }
            let token = trim_comments(token);
            if is_empty_continuation_line(token) {
                empty_continuation = true;
                continue;
            }
            let (continuation, ends) = directives.trim_continuation(token);
            end_of_line = ends;
            line.push_str(continuation);
        }
        if empty_continuation {
            warnings.push(format!("[WARNING]: Empty continuation line found in:\n    {line}"));
        }
        let mut node = node_from_line(&line, &directives).map_err(|m| error(m, start_line, index))?;
        node.comments = std::mem::take(&mut comments);

        if can_contain_heredoc(&node) {
            let heredocs = heredocs_from_line(&line).map_err(|m| error(m, start_line, index))?;
            for mut heredoc in heredocs {
                let mut terminated = false;
                while index < lines.len() {
                    let raw = lines[index];
                    index += 1;
                    let mut candidate = trim_newline(raw);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(error("unterminated heredoc".to_owned(), start_line, index));
                }
                match &mut node.sub {
                    Some(sub) if node.value == "onbuild" => sub.heredocs.push(heredoc.clone()),
                    _ => {}
                }
                node.heredocs.push(heredoc);
            }
        }
        node.location = Location::new(start_line, index);
        if let Some(sub) = &mut node.sub {
            sub.location = node.location;
        }
        nodes.push(node);
    }
    if !warnings.is_empty() {
        warnings.push("[WARNING]: Empty continuation lines will become errors in a future release.".to_owned());
    }
    let (Some(first), Some(last)) = (nodes.first(), nodes.last()) else {
        return Err(error("file with no instructions".to_owned(), index.max(1), index.max(1)));
    };
    let location = Location::new(first.location.start, last.location.end);
    Ok(ParseResult {
        nodes,
        escape: directives.escape,
        syntax: directives.syntax,
        check: directives.check,
        warnings,
        location,
    })
}

/// `[\t\v\f\r ]+`
fn is_token_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

fn split_whitespace_regex(s: &str) -> Vec<String> {
    s.split(is_token_whitespace).filter(|part| !part.is_empty()).map(str::to_owned).collect::<Vec<_>>()
}

/// Splits a logical line into a node: instruction, flags, arguments by the instruction's rules.
fn node_from_line(line: &str, directives: &Directives) -> Result<Node, String> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_token_whitespace) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_token_whitespace)),
        None => (trimmed, ""),
    };
    let value = keyword.to_lowercase();
    let (args_text, flags) = if rest.is_empty() { (String::new(), Vec::new()) } else { extract_builder_flags(rest) };
    let args_text = args_text.trim();
    let mut node = Node {
        value: value.clone(),
        keyword: keyword.to_owned(),
        original: line.to_owned(),
        flags,
        args: Vec::new(),
        sub: None,
        json: false,
        heredocs: Vec::new(),
        location: Location::default(),
        comments: Vec::new(),
    };
    match value.as_str() {
        "add" | "copy" | "volume" => {
            let (args, json) = parse_maybe_json_to_list(args_text)?;
            node.args = args;
            node.json = json;
        }
        "arg" => node.args = parse_words(args_text, directives.escape),
        "cmd" | "entrypoint" | "run" | "shell" => {
            let (args, json) = parse_maybe_json(args_text)?;
            node.args = args;
            node.json = json;
        }
        "env" | "label" => node.args = parse_name_value(args_text, &value.to_uppercase(), directives.escape)?,
        "expose" | "from" => node.args = split_whitespace_regex(args_text),
        "healthcheck" => {
            let (args, json) = parse_health_config(args_text)?;
            node.args = args;
            node.json = json;
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !args_text.is_empty() {
                node.args = vec![args_text.to_owned()];
            }
        }
        "onbuild" => {
            if !args_text.is_empty() {
                let sub = node_from_line(args_text, directives)?;
                node.json = sub.json;
                node.sub = Some(Box::new(sub));
            }
        }
        // Unknown instructions parse (BuildKit reports them when typing instructions).
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes and backslashes processed), up
/// to the first word that does not start with `--`, or `--` itself.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let bytes = line.as_bytes();
    let mut words: Vec<String> = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word: Vec<u8> = Vec::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= bytes.len() {
        let at_end = pos == bytes.len();
        let ch = if at_end { 0 } else { bytes[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_ascii_whitespace() || ch == 0x0b {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == bytes.len() || bytes[pos + 1] != b'-' {
                return (line[pos..].to_owned(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != b"--" && (blank_ok || !word.is_empty()) {
                words.push(String::from_utf8_lossy(&word).into_owned());
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_ascii_whitespace() || ch == 0x0b {
                phase = Phase::Spaces;
                if word == b"--" {
                    return (line[pos..].to_owned(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(String::from_utf8_lossy(&word).into_owned());
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut ch = ch;
            if ch == b'\\' {
                if pos + 1 == bytes.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = bytes[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut ch = ch;
        if ch == b'\\' {
            if pos + 1 == bytes.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = bytes[pos];
        }
        word.push(ch);
        pos += 1;
    }
    (String::new(), words)
}

/// BuildKit's `parseWords`: whitespace-separated words, quotes kept (stripped later by the
/// shell lexer), the escape token kept with the character it escapes.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// ENV and LABEL: `k=v ...` (triples `k v "="`) or the legacy `k v` (triple `k v ""`).
fn parse_name_value(rest: &str, instruction: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let parts: Vec<&str> = rest.splitn(2, is_token_whitespace).collect();
        if parts.len() < 2 {
            return Err(format!("{instruction} must have two arguments"));
        }
        let value = parts[1].trim_start_matches(is_token_whitespace);
        return Ok(vec![parts[0].to_owned(), value.to_owned(), String::new()]);
    }
    let mut out = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(&word)));
        };
        out.extend([key.to_owned(), value.to_owned(), "=".to_owned()]);
    }
    Ok(out)
}

/// A JSON array of strings, BuildKit-style: `Ok(None)` when it is not JSON at all (use the
/// shell form), an error when it is an array of something other than strings.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    // The whole rest must be the array (BuildKit ≥ 1.9 unmarshals all of it): `["a"] x`
    // is shell form, its text kept as written.
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            _ => Err("when using JSON array syntax, arrays must be comprised of strings only".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest)? {
        Some(args) => Ok((args, true)),
        None => Ok((vec![rest.to_owned()], false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest)? {
        Some(args) => Ok((args, true)),
        None => Ok((split_whitespace_regex(rest), false)),
    }
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`) then a maybe-JSON command.
fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let kind = &rest[..sep];
    let command = rest[sep..].trim_start();
    let (mut args, json) = parse_maybe_json(command)?;
    args.insert(0, kind.to_owned());
    Ok((args, json))
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&node.sub, node.value.as_str()) {
        (Some(sub), "onbuild") => sub,
        _ => node,
    };
    matches!(node.value.as_str(), "add" | "copy" | "run") && !node.json
}

/// Parses one word as a heredoc opener (`<<EOF`, `<<-"EOF"`, `3<<EOF`); `None` when it is not.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let file_descriptor = word[..digits].parse().unwrap_or(0);
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer.process_words(rest, &Default::default()).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &Default::default()).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        file_descriptor,
        expand: quotes(&words[0]) == quotes(&raw[0]),
        chomp,
        content: String::new(),
    }))
}

fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset_env = true;
    let words = lexer.process_words(line, &Default::default()).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in words {
        if let Some(heredoc) = parse_heredoc(&word)? {
            heredocs.push(heredoc);
        }
    }
    Ok(heredocs)
}

/// Removes leading tabs from every line (`<<-`).
pub fn chomp_heredoc_content(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: graphic characters and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
        && !('\u{e000}'..='\u{f8ff}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_args() {
        let result = parse("FROM scratch\nCOPY --from=a --chown=1:1 x /y\n", "Dockerfile").expect("parses");
        assert_eq!(result.dump(), "(from \"scratch\")\n(copy [\"--from=a\" \"--chown=1:1\"] \"x\" \"/y\")\n");
    }

    #[test]
    fn heredocs_are_collected() {
        let text = "FROM scratch\nRUN <<EOF bash\necho hi\nEOF\nCOPY <<-\"A\" <<B /dst\n\tone\n\tA\ntwo\nB\n";
        let result = parse(text, "Dockerfile").expect("parses");
        let run = &result.nodes[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "echo hi\n");
        assert!(run.heredocs[0].expand);
        let copy = &result.nodes[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert!(copy.heredocs[0].chomp && !copy.heredocs[0].expand);
        assert_eq!(copy.heredocs[0].effective_content(), "one\n");
        assert_eq!(copy.heredocs[1].content, "two\n");
        assert_eq!(copy.location, Location::new(5, 9));
        let err = parse("FROM a\nRUN <<EOF\nno end\n", "Dockerfile").expect_err("unterminated");
        assert_eq!(err.to_string(), "Dockerfile:2: unterminated heredoc");
    }

    #[test]
    fn text_after_a_json_array_makes_it_shell_form() {
        let text = "FROM scratch\nRUN [\"a\"] x\nCMD [\"b\"] y\nENTRYPOINT [\"c\"]  \\\n z\nVOLUME [\"/v\"] w\nCOPY [\"s\", \"d\"] e\nHEALTHCHECK CMD [\"h\"] i\nRUN [\"ok\"]  \n";
        let result = parse(text, "Dockerfile").expect("parses");
        assert_eq!(
            result.dump(),
            "(from \"scratch\")\n(run \"[\\\"a\\\"] x\")\n(cmd \"[\\\"b\\\"] y\")\n(entrypoint \"[\\\"c\\\"]   z\")\n\
             (volume \"[\\\"/v\\\"]\" \"w\")\n(copy \"[\\\"s\\\",\" \"\\\"d\\\"]\" \"e\")\n(healthcheck \"CMD\" \"[\\\"h\\\"] i\")\n\
             (run \"ok\")\n"
        );
        assert!(!result.nodes[1].json && result.nodes[7].json);
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{0}"), "\"a\\\"b\\\\c\\n\\x00\"");
        assert_eq!(go_quote("♥"), "\"♥\"");
    }
}

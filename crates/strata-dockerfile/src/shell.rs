//! Shell-word processing with BuildKit's lexer rules (`frontend/dockerfile/shell/lex.go`):
//! quotes, escapes, `$VAR`, `${VAR}` and its modifiers, and word splitting after expansion.

use std::collections::{BTreeMap, BTreeSet};

/// Variables visible to an expansion.
pub type Env = BTreeMap<String, String>;

/// Builds an [`Env`] from `KEY=value` strings; later keys win, a bare `KEY` is empty.
pub fn env_from_list<S: AsRef<str>>(list: &[S]) -> Env {
    list.iter()
        .map(|entry| match entry.as_ref().split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (entry.as_ref().to_owned(), String::new()),
        })
        .collect()
}

/// An expansion error; the message is BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {input:?}: {message}")]
pub struct LexError {
    pub input: String,
    pub message: String,
}

/// The result of processing one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// The expanded text, spaces kept.
    pub result: String,
    /// The text split into words (quotes group, unquoted expansions split).
    pub words: Vec<String>,
    /// Variables that were found.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced but not set.
    pub unmatched: BTreeSet<String>,
}

/// The lexer and its modes.
#[derive(Debug, Clone)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as they are written.
    pub skip_unset_env: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_process_quotes: false, skip_unset_env: false }
    }

    /// Expands `word`, keeping spaces (BuildKit's `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &Env) -> Result<String, LexError> {
        self.process(word, env).map(|p| p.result)
    }

    /// Expands and splits `word` into words (BuildKit's `ProcessWords`).
    pub fn process_words(&self, word: &str, env: &Env) -> Result<Vec<String>, LexError> {
        self.process(word, env).map(|p| p.words)
    }

    /// Expands `word`, reporting both forms and which variables were used.
    pub fn process(&self, word: &str, env: &Env) -> Result<Processed, LexError> {
        let mut state = State {
            lexer: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let raw_escapes = state.raw_escapes;
        let (result, words) =
            state.process_stop_on(None, raw_escapes).map_err(|message| LexError { input: word.to_owned(), message })?;
        Ok(Processed { result, words, matched: state.matched, unmatched: state.unmatched })
    }
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct State<'a> {
    lexer: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a Env,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_owned());
                Some(value.clone())
            }
            None => {
                self.unmatched.insert(name.to_owned());
                None
            }
        }
    }

    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let result = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(c) = self.peek() {
            if stop == Some(c) {
                self.next();
                return Ok((result, words.finish()));
            }
            if c == '$' {
                let value = self.process_dollar()?;
                result.push_str(&value);
                words.add_string(&value);
            } else if quotes && c == '\'' {
                let value = self.process_single_quote()?;
                result.push_str(&value);
                words.add_raw_string(&value);
            } else if quotes && c == '"' {
                let value = self.process_double_quote()?;
                result.push_str(&value);
                words.add_raw_string(&value);
            } else {
                let mut c = self.next().unwrap_or_default();
                if c == self.lexer.escape {
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    match self.next() {
                        None => break,
                        Some(escaped) => c = escaped,
                    }
                    words.add_raw_char(c);
                } else {
                    words.add_char(c);
                }
                result.push(c);
            }
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let quote = self.next().unwrap_or('\'');
        if self.lexer.raw_quotes {
            result.push(quote);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".to_owned()),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let quote = self.next().unwrap_or('"');
        if self.lexer.raw_quotes {
            result.push(quote);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".to_owned()),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lexer.escape => {
                                c = self.next().unwrap_or(next);
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_owned()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_owned()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut c) = self.next() else {
            return Err("syntax error: missing '}'".to_owned());
        };
        let mut modifier = c.to_string();
        match c {
            '}' => Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = c == ':';
                if null_is_unset {
                    c = self.next().unwrap_or('\u{fffd}');
                    modifier.push(c);
                }
                let raw_escapes = c == '#' || c == '%';
                let word = match self.process_stop_on(Some('}'), raw_escapes) {
                    Ok((word, _)) => word,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".to_owned());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lexer.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset_or_null = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match c {
                    '-' => Ok(if unset_or_null { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if unset_or_null { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() { "is not allowed to be unset" } else { &word }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() { "is not allowed to be empty" } else { &word }
                        )),
                        Some(v) => Ok(v),
                    },
                    '%' | '#' => {
                        let (greedy, pattern) = match word.strip_prefix(c) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        if c == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((pattern, _)) => pattern,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".to_owned());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((replacement, _)) => replacement,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".to_owned());
                        }
                        return Err(e);
                    }
                };
                let Some(value) = self.get_env(&name) else {
                    if self.lexer.skip_unset_env {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let compiled = Pattern::compile(&pattern, true)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                let chars: Vec<char> = value.chars().collect();
                Ok(if replace_all {
                    compiled.replace_all(&chars, &replacement)
                } else {
                    compiled.replace_first(&chars, &replacement)
                })
            }
            _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(digit) = self.peek().filter(|d| d.is_numeric()) {
                    self.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphabetic() || c.is_numeric() || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }
}

/// A shell wildcard pattern (`*`, `?`, escapes; no brackets), matched with the preferences
/// of the regular expression BuildKit builds from it.
#[derive(Debug, Clone)]
struct Pattern {
    tokens: Vec<Token>,
    greedy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Literal(char),
}

impl Pattern {
    fn compile(pattern: &str, greedy: bool) -> Result<Pattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => {
                    // `}` and `/` are escaped only for the ${} syntax.
                    if matches!(chars.get(i), Some('}' | '/')) {
                        continue;
                    }
                    match chars.get(i) {
                        Some(&escaped @ ('*' | '?' | '\\')) => {
                            tokens.push(Token::Literal(escaped));
                            i += 1;
                        }
                        Some(other) => return Err(format!("invalid escape '\\{other}'")),
                        None => return Err("invalid escape '\\'".to_owned()),
                    }
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        Ok(Pattern { tokens, greedy })
    }

    /// The end of a match of the tokens from `t` at `pos`, if any.
    fn match_at(&self, t: usize, text: &[char], pos: usize) -> Option<usize> {
        let Some(token) = self.tokens.get(t) else {
            return Some(pos);
        };
        match token {
            Token::Literal(c) => (text.get(pos) == Some(c)).then(|| self.match_at(t + 1, text, pos + 1)).flatten(),
            Token::Any => text.get(pos).filter(|&&c| c != '\n').and_then(|_| self.match_at(t + 1, text, pos + 1)),
            Token::Star => {
                // `.` does not cross a newline.
                let max = text[pos..].iter().position(|&c| c == '\n').unwrap_or(text.len() - pos);
                if self.greedy {
                    (0..=max).rev().find_map(|n| self.match_at(t + 1, text, pos + n))
                } else {
                    (0..=max).find_map(|n| self.match_at(t + 1, text, pos + n))
                }
            }
        }
    }

    /// Leftmost match: (start, end).
    fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=text.len()).find_map(|start| self.match_at(0, text, start).map(|end| (start, end)))
    }

    fn replace_first(&self, text: &[char], replacement: &str) -> String {
        match self.find(text, 0) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(replacement);
                out.extend(&text[end..]);
                out
            }
            None => text.iter().collect(),
        }
    }

    /// Go's `Regexp.ReplaceAllString` loop (without `$` expansion in the replacement).
    fn replace_all(&self, text: &[char], replacement: &str) -> String {
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find(text, search) else { break };
            out.extend(&text[last_end..start]);
            // No replacement for an empty match right after another match.
            if end > last_end || start == 0 {
                out.push_str(replacement);
            }
            last_end = end;
            search = if search + 1 > end { search + 1 } else { end };
        }
        out.extend(&text[last_end.min(text.len())..]);
        out
    }
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let compiled =
        Pattern::compile(pattern, greedy).map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match compiled.match_at(0, &chars, 0) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_owned(),
    })
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let mut compiled =
        Pattern::compile(pattern, greedy).map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    compiled.tokens.reverse();
    let reversed: Vec<char> = value.chars().rev().collect();
    Ok(match compiled.match_at(0, &reversed, 0) {
        Some(end) => reversed[end..].iter().rev().collect(),
        None => value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        env_from_list(&["PWD=/home", "FILE=archive.tar.gz", "EMPTY="])
    }

    #[test]
    fn modifiers() {
        let lexer = Lexer::new('\\');
        let cases = [
            ("${FILE%.*}", "archive.tar"),
            ("${FILE%%.*}", "archive"),
            ("${FILE#*.}", "tar.gz"),
            ("${FILE##*.}", "gz"),
            ("${FILE/a/A}", "Archive.tar.gz"),
            ("${FILE//a/A}", "Archive.tAr.gz"),
            ("${EMPTY:-x}", "x"),
            ("${EMPTY-x}", ""),
            ("${PWD:+set}", "set"),
        ];
        for (input, expected) in cases {
            assert_eq!(lexer.process_word(input, &env()).expect(input), expected, "{input}");
        }
        assert!(lexer.process_word("${EMPTY:?must be set}", &env()).is_err());
    }

    #[test]
    fn unset_references_can_be_kept() {
        let mut lexer = Lexer::new('\\');
        lexer.skip_unset_env = true;
        assert_eq!(lexer.process_word("$X ${Y} ${Z:-d} $PWD", &env()).expect("ok"), "$X ${Y} ${Z:-d} /home");
    }
}

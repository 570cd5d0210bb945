//! Errors that name the file and line, with a suggestion where one is near.

use std::fmt;

/// Lines of a Dockerfile, 1-based and inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub start: usize,
    pub end: usize,
}

impl Location {
    pub fn new(start: usize, end: usize) -> Location {
        Location { start, end: end.max(start) }
    }
}

/// `Dockerfile:7: unknown instruction: COPPY (did you mean COPY?)`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub file: String,
    pub location: Location,
    pub message: String,
}

impl Error {
    pub fn new(file: &str, location: Location, message: impl Into<String>) -> Error {
        Error { file: file.to_owned(), location, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.location.start, self.message)
    }
}

impl std::error::Error for Error {}

/// The closest of `options` to `word` when it is close enough to be a likely typo
/// (BuildKit's `suggest` rule of thumb: at most a third of the word, and at most 2 edits
/// for short words).
pub fn suggest<'a>(word: &str, options: &[&'a str], case_sensitive: bool) -> Option<&'a str> {
    let normalize = |s: &str| if case_sensitive { s.to_owned() } else { s.to_lowercase() };
    let word = normalize(word);
    let limit = (word.chars().count() / 3).max(2);
    options
        .iter()
        .map(|option| (levenshtein(&word, &normalize(option)), *option))
        .filter(|(distance, _)| *distance > 0 && *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, option)| option)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current[j + 1] = (previous[j] + cost).min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("COPPY", &["COPY", "CMD", "ADD"], false), Some("COPY"));
        assert_eq!(suggest("chwn", &["chown", "chmod", "from", "link"], true), Some("chown"));
        assert_eq!(suggest("xyzzy", &["COPY", "RUN"], false), None);
    }
}

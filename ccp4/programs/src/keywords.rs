//! CCP4-style program input shared by the programs: logical-name pairs on the
//! command line (`HKLIN file.mtz`) and keyword records on stdin.
//!
//! The keyword syntax follows the CCP4 parser closely enough that scripts
//! written for the real programs work unchanged: words are separated by
//! spaces, tabs, commas or `=`; `#` and `!` start a comment (outside quotes);
//! a line whose last word is `-` or `&` continues on the next line; keywords
//! are recognised by their first four characters, case-insensitively.

use std::io::{self, BufRead, BufReader, Read};

/// Longest keyword line accepted. Keyword input is a few short lines; the
/// bound only keeps a runaway writer from exhausting memory.
const MAX_LINE: usize = 64 * 1024;

/// Command-line arguments that are not `NAME value` pairs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArgError {
    #[error("logical name {0} has no file name after it")]
    MissingValue(String),
}

/// Splits the command line into `(LOGICAL_NAME, value)` pairs, names
/// upper-cased because CCP4 logical names are case-insensitive.
pub(crate) fn logical_names(args: &[String]) -> Result<Vec<(String, String)>, ArgError> {
    let mut pairs = Vec::new();
    let mut words = args.iter();
    while let Some(name) = words.next() {
        let Some(value) = words.next() else {
            return Err(ArgError::MissingValue(name.clone()));
        };
        pairs.push((name.to_ascii_uppercase(), value.clone()));
    }
    Ok(pairs)
}

/// One logical keyword record, continuation lines joined.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeywordLine {
    /// The text as given (continuations joined with a space), for the
    /// `Data line---` echo.
    pub raw: String,
    /// The words after comment removal; never empty.
    pub words: Vec<String>,
}

impl KeywordLine {
    /// Whether the first word is `keyword`, compared the CCP4 way: the first
    /// four characters, ignoring case (`HEAD`, `header` and `HEADERS` all
    /// match `HEADER`).
    pub fn is(&self, keyword: &str) -> bool {
        keyword_matches(&self.words[0], keyword)
    }
}

fn keyword_matches(word: &str, keyword: &str) -> bool {
    let word = word.to_ascii_uppercase();
    let w: String = word.chars().take(4).collect();
    let k: String = keyword.chars().take(4).collect();
    w == k.to_ascii_uppercase()
}

/// Reads keyword records from a stream, one at a time, so that a program can
/// stop at `END` without waiting for the writer to close its end.
pub(crate) struct KeywordReader<'a> {
    input: BufReader<&'a mut dyn Read>,
}

impl<'a> KeywordReader<'a> {
    pub fn new(input: &'a mut dyn Read) -> Self {
        KeywordReader {
            input: BufReader::new(input),
        }
    }

    /// The next non-empty record, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<KeywordLine>> {
        let mut raw = String::new();
        let mut words = Vec::new();
        loop {
            let Some(line) = self.read_physical_line()? else {
                // End of input in the middle of a continuation: use what we have.
                return Ok((!words.is_empty()).then_some(KeywordLine { raw, words }));
            };
            let mut line_words = split_words(&line);
            if !raw.is_empty() {
                raw.push(' ');
            }
            raw.push_str(line.trim_end());
            let continued = matches!(line_words.last().map(String::as_str), Some("-") | Some("&"));
            if continued {
                line_words.pop();
            }
            words.extend(line_words);
            if continued {
                continue;
            }
            if words.is_empty() {
                raw.clear();
                continue;
            }
            return Ok(Some(KeywordLine { raw, words }));
        }
    }

    fn read_physical_line(&mut self) -> io::Result<Option<String>> {
        let mut buf = Vec::new();
        let n = (&mut self.input)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.len() >= MAX_LINE && buf.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("keyword line longer than {MAX_LINE} bytes"),
            ));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// Splits one line into words, dropping the comment. Quotes group words
/// (`TITLE 'two words'`) and protect `#` and `!`.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    let is_sep = |c: char| c.is_whitespace() || c == ',' || c == '=';
    while let Some(&c) = chars.peek() {
        if is_sep(c) {
            chars.next();
        } else if c == '#' || c == '!' {
            break;
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut word = String::new();
            for q in chars.by_ref() {
                if q == c {
                    break;
                }
                word.push(q);
            }
            words.push(word);
        } else {
            let mut word = String::new();
            while let Some(&w) = chars.peek() {
                if is_sep(w) || w == '#' || w == '!' {
                    break;
                }
                word.push(w);
                chars.next();
            }
            words.push(word);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Vec<KeywordLine> {
        let mut bytes = text.as_bytes();
        let mut reader = KeywordReader::new(&mut bytes);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn words_comments_and_separators() {
        let lines =
            read_all("# comment\n! another\n\nCELL 1,2 , 3 90=90 90 # trailing\r\n  nref -1\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].words, ["CELL", "1", "2", "3", "90", "90", "90"]);
        assert_eq!(lines[0].raw, "CELL 1,2 , 3 90=90 90 # trailing");
        assert_eq!(lines[1].words, ["nref", "-1"]);
        assert!(lines[1].is("NREF"));
    }

    #[test]
    fn continuation_and_quotes() {
        let lines = read_all("CELL 10 20 -\n 30 90 &\n90 90\nTITLE 'a # b' c\n");
        assert_eq!(lines[0].words, ["CELL", "10", "20", "30", "90", "90", "90"]);
        assert_eq!(lines[1].words, ["TITLE", "a # b", "c"]);
    }

    #[test]
    fn keywords_match_on_four_characters() {
        assert!(keyword_matches("head", "HEADER"));
        assert!(keyword_matches("HEADERS", "HEADER"));
        assert!(!keyword_matches("HEA", "HEADER"));
        assert!(keyword_matches("end", "END"));
        assert!(!keyword_matches("ENDX", "END"));
        assert!(keyword_matches("Go", "GO"));
    }

    #[test]
    fn logical_name_pairs() {
        let args: Vec<String> = ["hklin", "a.mtz", "HKLOUT", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pairs = logical_names(&args).unwrap();
        assert_eq!(pairs[0], ("HKLIN".to_string(), "a.mtz".to_string()));
        assert!(logical_names(&args[..3]).is_err());
    }
}

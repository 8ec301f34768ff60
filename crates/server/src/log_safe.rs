//! User input in log lines: escaped and cut short.
//!
//! Every log field whose text a client chose (a login name, a token name, a path segment)
//! goes through [`shown`], so a newline cannot forge a second log line and a 2 MB
//! username costs the log at most [`MAX_CHARS`] characters.

use std::fmt::{self, Write as _};

/// Characters of user input kept in a log field; the rest is summarised by its length.
pub(crate) const MAX_CHARS: usize = 64;

/// Displays user input safely: control and line/bidi-breaking characters escaped (`\n`,
/// `\u{1b}`), backslashes doubled (so an escape cannot be faked), at most [`MAX_CHARS`]
/// characters, then `…(N bytes)`.
pub(crate) struct Shown<'a>(&'a str);

pub(crate) fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// Characters that are not C0/C1 controls but still move or reorder text in a terminal
/// or log viewer: line/paragraph separators and bidirectional overrides.
fn breaks_layout(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (written, c) in self.0.chars().enumerate() {
            if written == MAX_CHARS {
                return write!(f, "…({} bytes)", self.0.len());
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() || breaks_layout(c) => write!(f, "{}", c.escape_default())?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let forged = "eve\n2026-01-01T00:00:00Z  INFO logged in username=root\r\u{1b}[2J\u{2028}";
        let out = shown(forged).to_string();
        assert!(!out.contains(['\n', '\r', '\u{1b}', '\u{2028}']), "{out}");
        assert!(out.starts_with("eve\\n2026"), "{out}");
        assert_eq!(shown("a\\nb").to_string(), "a\\\\nb");
    }

    #[test]
    fn long_input_is_cut_with_its_size() {
        let long = "é".repeat(1_000_000);
        let out = shown(&long).to_string();
        assert!(out.chars().count() < MAX_CHARS + 20, "{}", out.len());
        assert!(out.ends_with("…(2000000 bytes)"), "{out}");
        assert_eq!(shown("alice").to_string(), "alice");
    }
}

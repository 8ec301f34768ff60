//! The XSD `pattern` facets of the AXL schema (issue 11), matched with the `regex` crate.
//!
//! XSD patterns are regular expressions anchored at both ends. The AXL fixtures use only
//! groups, alternation, `.`, character classes, `\d` and escaped literals with `*`, `+`,
//! `?` and `{n}`/`{n,m}` quantifiers, which mean the same in `regex` once anchored; `.`
//! excludes `\r` as well as `\n` in XSD. Constructs whose XSD meaning differs or that
//! `regex` lacks (character-class subtraction `[a-z-[aeiou]]`, the `\i`/`\c` name escapes)
//! are refused at parse time, and the table test (`facets::generate`) parses every pattern of
//! the table, so such a construct fails the test instead of being misread at run time.
//! `regex` matches in linear time, so a hostile request cannot make a pattern slow.

use regex::Regex;

/// A parsed pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    regex: Regex,
}

impl Pattern {
    pub(crate) fn parse(src: &str) -> Result<Pattern, String> {
        if src.contains("-[") {
            return Err(format!(
                "character-class subtraction is not supported: {src:?}"
            ));
        }
        // XSD's `.` is "any character but \n and \r" (XML Schema Part 2, F.1.1).
        let translated = translate_dots(src);
        let regex = Regex::new(&format!("^(?:{translated})$"))
            .map_err(|e| format!("unsupported XSD pattern {src:?}: {e}"))?;
        Ok(Pattern { regex })
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// `.` outside character classes and escapes becomes `[^\n\r]`.
fn translate_dots(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let (mut escaped, mut in_class) = (false, false);
    for ch in src.chars() {
        match ch {
            _ if escaped => {
                escaped = false;
                out.push(ch);
            }
            '\\' => {
                escaped = true;
                out.push(ch);
            }
            '[' => {
                in_class = true;
                out.push(ch);
            }
            ']' => {
                in_class = false;
                out.push(ch);
            }
            '.' if !in_class => out.push_str("[^\\n\\r]"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::parse(p).expect("pattern parses").matches(s)
    }

    #[test]
    fn fixture_patterns() {
        let boolean = "(t)|(f)|(true)|(false)|(0)|(1)";
        assert!(m(boolean, "true") && m(boolean, "f") && m(boolean, "1"));
        assert!(!m(boolean, "yes") && !m(boolean, "truee") && !m(boolean, ""));
        let uuid = r"\{........-....-....-....-............\}";
        assert!(m(uuid, "{1B1B9EB6-7803-11D3-BDF0-00108302EAD1}"));
        assert!(!m(uuid, "1B1B9EB6-7803-11D3-BDF0-00108302EAD1"));
        let mac = "([0-9]|[a-f]|[A-F]){12}";
        assert!(m(mac, "00112233AaBb") && !m(mac, "00112233AaB") && !m(mac, "0011223344GG"));
        assert!(m(r"\d\d\d\d+", "1234") && m(r"\d\d\d\d+", "123456"));
        assert!(!m(r"\d\d\d\d+", "123"));
        assert!(m("a{2,3}b?", "aa") && m("a{2,3}b?", "aaab") && !m("a{2,3}", "aaaa"));
        assert!(m("[^x]*", "abc") && !m("[^x]*", "axc"));
        assert!(Pattern::parse(r"\i\c*").is_err());
        assert!(Pattern::parse("[a-z-[aeiou]]").is_err());
        assert!(Pattern::parse("(a").is_err());
        assert!(m("a.c", "abc") && !m("a.c", "a\rc") && m("a[.]c", "a.c") && !m("a[.]c", "abc"));
    }
}

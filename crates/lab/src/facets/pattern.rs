//! A small matcher for the XSD `pattern` facets of the AXL schema (issue 11).
//!
//! XSD patterns are regular expressions anchored at both ends. The AXL fixtures use only
//! groups, alternation, `.`, character classes, `\d` and escaped literals, with `*`, `+`,
//! `?` and `{n}`/`{n,m}` quantifiers; anything else is refused at parse time, and the
//! table test (`facets::generate`) parses every pattern of the table, so an unsupported
//! construct fails the test instead of being ignored at run time.

/// A parsed pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    alt: Vec<Vec<Piece>>,
}

#[derive(Debug, Clone)]
struct Piece {
    atom: Atom,
    min: usize,
    max: Option<usize>,
}

#[derive(Debug, Clone)]
enum Atom {
    Char(char),
    Any,
    Digit,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Group(Pattern),
}

/// Deeper nesting is refused: the fixture patterns nest at most two groups.
const MAX_NESTING: usize = 16;

impl Pattern {
    pub(crate) fn parse(src: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = src.chars().collect();
        let mut pos = 0;
        let p = parse_alt(&chars, &mut pos, 0)?;
        if pos != chars.len() {
            return Err(format!("unexpected {:?} at {pos} in {src:?}", chars[pos]));
        }
        Ok(p)
    }

    /// Whether the whole of `text` matches.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        match_alt(self, &chars, 0, &mut |end| end == chars.len())
    }
}

fn parse_alt(c: &[char], pos: &mut usize, depth: usize) -> Result<Pattern, String> {
    if depth > MAX_NESTING {
        return Err("pattern nests too deeply".into());
    }
    let mut alt = vec![Vec::new()];
    while *pos < c.len() {
        match c[*pos] {
            ')' => break,
            '|' => {
                *pos += 1;
                alt.push(Vec::new());
            }
            _ => {
                let atom = parse_atom(c, pos, depth)?;
                let (min, max) = parse_quantifier(c, pos)?;
                if let Some(seq) = alt.last_mut() {
                    seq.push(Piece { atom, min, max });
                }
            }
        }
    }
    Ok(Pattern { alt })
}

fn parse_atom(c: &[char], pos: &mut usize, depth: usize) -> Result<Atom, String> {
    let ch = c[*pos];
    *pos += 1;
    Ok(match ch {
        '.' => Atom::Any,
        '(' => {
            let inner = parse_alt(c, pos, depth + 1)?;
            if c.get(*pos) != Some(&')') {
                return Err("unclosed group".into());
            }
            *pos += 1;
            Atom::Group(inner)
        }
        '[' => parse_class(c, pos)?,
        '\\' => {
            let e = *c.get(*pos).ok_or("dangling escape")?;
            *pos += 1;
            match e {
                'd' => Atom::Digit,
                '{' | '}' | '(' | ')' | '[' | ']' | '.' | '\\' | '|' | '+' | '*' | '?' | '-'
                | '^' | '$' => Atom::Char(e),
                other => return Err(format!("unsupported escape \\{other}")),
            }
        }
        '*' | '+' | '?' | '{' | '}' | ']' => return Err(format!("unexpected {ch:?}")),
        other => Atom::Char(other),
    })
}

fn parse_class(c: &[char], pos: &mut usize) -> Result<Atom, String> {
    let negated = c.get(*pos) == Some(&'^');
    if negated {
        *pos += 1;
    }
    let mut ranges = Vec::new();
    while let Some(&ch) = c.get(*pos) {
        if ch == ']' {
            *pos += 1;
            return Ok(Atom::Class { ranges, negated });
        }
        if ch == '\\' || ch == '[' {
            return Err("escapes and subtraction in classes are not supported".into());
        }
        *pos += 1;
        if c.get(*pos) == Some(&'-') && c.get(*pos + 1).is_some_and(|n| *n != ']') {
            let hi = c[*pos + 1];
            *pos += 2;
            ranges.push((ch, hi));
        } else {
            ranges.push((ch, ch));
        }
    }
    Err("unclosed class".into())
}

fn parse_quantifier(c: &[char], pos: &mut usize) -> Result<(usize, Option<usize>), String> {
    let q = match c.get(*pos) {
        Some('*') => (0, None),
        Some('+') => (1, None),
        Some('?') => (0, Some(1)),
        Some('{') => {
            let close = c[*pos..]
                .iter()
                .position(|x| *x == '}')
                .ok_or("unclosed quantifier")?;
            let body: String = c[*pos + 1..*pos + close].iter().collect();
            *pos += close;
            let num = |s: &str| s.trim().parse::<usize>().map_err(|e| e.to_string());
            match body.split_once(',') {
                None => {
                    let n = num(&body)?;
                    (n, Some(n))
                }
                Some((lo, "")) => (num(lo)?, None),
                Some((lo, hi)) => (num(lo)?, Some(num(hi)?)),
            }
        }
        _ => return Ok((1, Some(1))),
    };
    *pos += 1;
    Ok(q)
}

fn match_alt(p: &Pattern, s: &[char], at: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    p.alt.iter().any(|seq| match_seq(seq, s, at, k))
}

fn match_seq(seq: &[Piece], s: &[char], at: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    let Some((first, rest)) = seq.split_first() else {
        return k(at);
    };
    match_repeat(first, 0, rest, s, at, k)
}

/// `count` repetitions of `piece` matched so far; try one more (greedy), then the rest.
fn match_repeat(
    piece: &Piece,
    count: usize,
    rest: &[Piece],
    s: &[char],
    at: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let may_repeat = piece.max.is_none_or(|m| count < m);
    if may_repeat {
        let more = match_atom(&piece.atom, s, at, &mut |next| {
            // An empty repetition cannot make progress: stop there.
            next > at && match_repeat(piece, count + 1, rest, s, next, k)
        });
        if more {
            return true;
        }
    }
    count >= piece.min && match_seq(rest, s, at, k)
}

fn match_atom(a: &Atom, s: &[char], at: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    let single = |ok: bool, k: &mut dyn FnMut(usize) -> bool| ok && k(at + 1);
    let Some(&ch) = s.get(at) else {
        return match a {
            Atom::Group(g) => match_alt(g, s, at, k),
            _ => false,
        };
    };
    match a {
        Atom::Char(c) => single(ch == *c, k),
        Atom::Any => single(ch != '\n' && ch != '\r', k),
        Atom::Digit => single(ch.is_ascii_digit(), k),
        Atom::Class { ranges, negated } => {
            let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&ch));
            single(inside != *negated, k)
        }
        Atom::Group(g) => match_alt(g, s, at, k),
    }
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
        assert!(Pattern::parse(r"\p{L}").is_err());
        assert!(Pattern::parse("(a").is_err());
    }
}

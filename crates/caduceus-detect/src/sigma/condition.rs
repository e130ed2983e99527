//! The condition language: `and`, `or`, `not`, parentheses, `1 of X`,
//! `all of X`, `them`, with the precedence of the specification (or < and <
//! not < x of < parentheses). Resolves identifiers to selection indices.

use super::matcher::Cond;

/// Deepest nesting accepted, so a hostile rule cannot exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Longest condition accepted, in characters.
const MAX_LEN: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Num(u64),
    Ident(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    if s.len() > MAX_LEN {
        return Err(format!("condition longer than {MAX_LEN} characters"));
    }
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        match c {
            '(' => {
                out.push(Tok::LParen);
                chars.next();
            }
            ')' => {
                out.push(Tok::RParen);
                chars.next();
            }
            '|' => {
                return Err(
                    "aggregations after `|` (Sigma v1 `count()`, `near`) are not supported; write a correlation rule"
                        .into(),
                );
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '*' | '-' | '.' | '?') => {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_alphanumeric() || matches!(d, '_' | '*' | '-' | '.' | '?') {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = s.get(i..end).unwrap_or_default();
                out.push(match word.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "of" => Tok::Of,
                    "all" => Tok::All,
                    "them" => Tok::Them,
                    _ if word.bytes().all(|b| b.is_ascii_digit()) => Tok::Num(word.parse().unwrap_or(u64::MAX)),
                    _ => Tok::Ident(word.to_owned()),
                });
            }
            other => return Err(format!("unexpected character `{other}` in condition")),
        }
    }
    Ok(out)
}

/// `*` matches any run of characters in identifier patterns.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i + 1 == parts.len() {
            return rest.len() >= part.len() && rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
                None => return false,
            }
        }
    }
    true
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Cond, String> {
        if depth > MAX_DEPTH {
            return Err(format!("condition nested deeper than {MAX_DEPTH}"));
        }
        let mut parts = vec![self.and(depth)?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap_or(Cond::Or(Vec::new())) } else { Cond::Or(parts) })
    }

    fn and(&mut self, depth: usize) -> Result<Cond, String> {
        let mut parts = vec![self.not(depth)?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            parts.push(self.not(depth)?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap_or(Cond::And(Vec::new())) } else { Cond::And(parts) })
    }

    fn not(&mut self, depth: usize) -> Result<Cond, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            if depth > MAX_DEPTH {
                return Err(format!("condition nested deeper than {MAX_DEPTH}"));
            }
            return Ok(Cond::Not(Box::new(self.not(depth + 1)?)));
        }
        self.primary(depth)
    }

    fn targets(&mut self) -> Result<Vec<usize>, String> {
        match self.next() {
            Some(Tok::Them) => {
                let found: Vec<usize> =
                    self.names.iter().enumerate().filter(|(_, n)| !n.starts_with('_')).map(|(i, _)| i).collect();
                if found.is_empty() {
                    return Err("`them` names no search identifier".into());
                }
                Ok(found)
            }
            Some(Tok::Ident(pattern)) => {
                let found: Vec<usize> =
                    self.names.iter().enumerate().filter(|(_, n)| glob_match(&pattern, n)).map(|(i, _)| i).collect();
                if found.is_empty() {
                    return Err(format!("no search identifier matches `{pattern}`"));
                }
                Ok(found)
            }
            other => {
                Err(format!("expected `them` or an identifier pattern after `of`, found {}", describe(other.as_ref())))
            }
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Cond, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(Tok::RParen) => Ok(inner),
                    other => Err(format!("expected `)`, found {}", describe(other.as_ref()))),
                }
            }
            Some(Tok::Num(n)) => {
                if self.next() != Some(Tok::Of) {
                    return Err(format!("expected `of` after `{n}`"));
                }
                if n != 1 {
                    return Err(format!("`{n} of` is not Sigma: only `1 of` and `all of`"));
                }
                Ok(Cond::Or(self.targets()?.into_iter().map(Cond::Sel).collect()))
            }
            Some(Tok::All) => {
                if self.next() != Some(Tok::Of) {
                    return Err("expected `of` after `all`".into());
                }
                Ok(Cond::And(self.targets()?.into_iter().map(Cond::Sel).collect()))
            }
            Some(Tok::Ident(name)) => match self.names.iter().position(|n| *n == name) {
                Some(i) => Ok(Cond::Sel(i)),
                None => Err(format!("condition names `{name}`, which is not a search identifier of the detection")),
            },
            other => Err(format!(
                "expected a search identifier, `(`, `not`, `1 of` or `all of`, found {}",
                describe(other.as_ref())
            )),
        }
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end".into(),
        Some(Tok::LParen) => "`(`".into(),
        Some(Tok::RParen) => "`)`".into(),
        Some(Tok::And) => "`and`".into(),
        Some(Tok::Or) => "`or`".into(),
        Some(Tok::Not) => "`not`".into(),
        Some(Tok::Of) => "`of`".into(),
        Some(Tok::All) => "`all`".into(),
        Some(Tok::Them) => "`them`".into(),
        Some(Tok::Num(n)) => format!("`{n}`"),
        Some(Tok::Ident(s)) => format!("`{s}`"),
    }
}

/// Parse a condition over the detection's search identifiers (`names`, in
/// order; index = selection index).
pub(crate) fn parse(condition: &str, names: &[String]) -> Result<Cond, String> {
    let toks = tokenize(condition)?;
    if toks.is_empty() {
        return Err("empty condition".into());
    }
    let mut p = Parser { toks, pos: 0, names };
    let cond = p.or(0)?;
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {} in condition", describe(Some(t))));
    }
    Ok(cond)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn precedence() {
        let n = names(&["a", "b", "c"]);
        // not a and b or c == ((not a) and b) or c
        assert_eq!(
            parse("not a and b or c", &n).unwrap(),
            Cond::Or(vec![Cond::And(vec![Cond::Not(Box::new(Cond::Sel(0))), Cond::Sel(1)]), Cond::Sel(2)])
        );
        assert_eq!(
            parse("a and (b or c)", &n).unwrap(),
            Cond::And(vec![Cond::Sel(0), Cond::Or(vec![Cond::Sel(1), Cond::Sel(2)])])
        );
    }

    #[test]
    fn of_patterns() {
        let n = names(&["selection_a", "selection_b", "filter_x", "_hidden"]);
        assert_eq!(parse("1 of selection_*", &n).unwrap(), Cond::Or(vec![Cond::Sel(0), Cond::Sel(1)]));
        assert_eq!(parse("all of them", &n).unwrap(), Cond::And(vec![Cond::Sel(0), Cond::Sel(1), Cond::Sel(2)]));
        assert_eq!(
            parse("all of sel* and not 1 of filter*", &n).unwrap(),
            Cond::And(vec![
                Cond::And(vec![Cond::Sel(0), Cond::Sel(1)]),
                Cond::Not(Box::new(Cond::Or(vec![Cond::Sel(2)])))
            ])
        );
        assert!(parse("1 of nothing*", &n).is_err());
        assert!(parse("2 of them", &n).is_err());
    }

    #[test]
    fn errors() {
        let n = names(&["a"]);
        assert!(parse("a and b", &n).unwrap_err().contains("`b`"));
        assert!(parse("a |count() > 5", &n).unwrap_err().contains("correlation"));
        assert!(parse("(a", &n).is_err());
        assert!(parse("a a", &n).is_err());
        assert!(parse("", &n).is_err());
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&deep, &n).is_err());
    }
}

//! Maven versions, ordered as Maven's `ComparableVersion` orders them.
//!
//! The version is lowercased and split on `.` and `-` and on every change between digits and
//! letters; a `-` (and a digit/letter change) opens a nested list. Trailing "null" items
//! (`0`, `""`/`ga`/`final`, empty lists) are dropped from each list. Items compare as:
//! numbers by value; qualifiers in the order `alpha < beta < milestone < rc = cr < snapshot <
//! "" = ga = final < sp`, then unknown qualifiers in lexical order; a number beats a list,
//! which beats a qualifier. `a1`, `b1`, `m1` (a letter straight before a digit) mean
//! alpha-1, beta-1, milestone-1.

use std::cmp::Ordering;

use super::cmp_digits;

#[derive(Debug, Clone)]
enum Node {
    /// Digits with leading zeros removed ("" is zero).
    Int(String),
    /// A qualifier after aliasing.
    Str(String),
    /// Index of a nested list in the arena.
    List(usize),
}

struct Parsed {
    lists: Vec<Vec<Node>>,
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

fn comparable_qualifier(q: &str) -> String {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

/// `comparableQualifier("")`: where a release sits among the qualifiers.
fn release_index() -> String {
    comparable_qualifier("")
}

fn string_item(value: &str, followed_by_digit: bool) -> Node {
    let v = match (followed_by_digit, value) {
        (true, "a") => "alpha",
        (true, "b") => "beta",
        (true, "m") => "milestone",
        _ => value,
    };
    let v = match v {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Node::Str(v.to_string())
}

fn parse_item(is_digit: bool, buf: &str) -> Node {
    if is_digit { Node::Int(buf.trim_start_matches('0').to_string()) } else { string_item(buf, false) }
}

fn parse(version: &str) -> Option<Parsed> {
    if version.is_empty() || version.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let v = version.to_lowercase();
    let mut lists: Vec<Vec<Node>> = vec![Vec::new()];
    let mut cur = 0usize;
    let push = |lists: &mut Vec<Vec<Node>>, cur: usize, node: Node| {
        if let Some(l) = lists.get_mut(cur) {
            l.push(node);
        }
    };
    let open = |lists: &mut Vec<Vec<Node>>, cur: &mut usize| {
        let id = lists.len();
        lists.push(Vec::new());
        if let Some(l) = lists.get_mut(*cur) {
            l.push(Node::List(id));
        }
        *cur = id;
    };
    let mut is_digit = false;
    let mut start = 0usize;
    for (i, c) in v.char_indices() {
        let token = v.get(start..i).unwrap_or("");
        if c == '.' || c == '-' {
            if i == start {
                push(&mut lists, cur, Node::Int(String::new()));
            } else {
                push(&mut lists, cur, parse_item(is_digit, token));
            }
            start = i + c.len_utf8();
            if c == '-' {
                open(&mut lists, &mut cur);
            }
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                push(&mut lists, cur, string_item(token, true));
                start = i;
                open(&mut lists, &mut cur);
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                push(&mut lists, cur, parse_item(true, token));
                start = i;
                open(&mut lists, &mut cur);
            }
            is_digit = false;
        }
    }
    if let Some(rest) = v.get(start..)
        && !rest.is_empty()
    {
        push(&mut lists, cur, parse_item(is_digit, rest));
    }
    // Normalise innermost (newest) lists first, as Maven pops its stack.
    for k in (0..lists.len()).rev() {
        let mut items = std::mem::take(lists.get_mut(k)?);
        let mut idx = items.len();
        while idx > 0 {
            idx -= 1;
            let null = match items.get(idx) {
                Some(Node::Int(d)) => d.is_empty(),
                Some(Node::Str(s)) => s.is_empty(),
                Some(Node::List(id)) => lists.get(*id).is_none_or(Vec::is_empty),
                None => false,
            };
            if null {
                items.remove(idx);
            } else if !matches!(items.get(idx), Some(Node::List(_))) {
                break;
            }
        }
        *lists.get_mut(k)? = items;
    }
    Some(Parsed { lists })
}

/// `x.compareTo(y)` of ComparableVersion's items; `y` None is a missing item.
fn cmp_item(pa: &Parsed, x: &Node, pb: &Parsed, y: Option<&Node>) -> Ordering {
    match x {
        Node::Int(a) => match y {
            None => {
                if a.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            Some(Node::Int(b)) => cmp_digits(a, b),
            Some(Node::Str(_)) | Some(Node::List(_)) => Ordering::Greater,
        },
        Node::Str(a) => match y {
            None => comparable_qualifier(a).cmp(&release_index()),
            Some(Node::Int(_)) | Some(Node::List(_)) => Ordering::Less,
            Some(Node::Str(b)) => comparable_qualifier(a).cmp(&comparable_qualifier(b)),
        },
        Node::List(ia) => {
            let la = pa.lists.get(*ia).map_or(&[][..], Vec::as_slice);
            match y {
                None => match la.first() {
                    None => Ordering::Equal,
                    Some(first) => cmp_item(pa, first, pb, None),
                },
                Some(Node::Int(_)) => Ordering::Less,
                Some(Node::Str(_)) => Ordering::Greater,
                Some(Node::List(ib)) => {
                    let lb = pb.lists.get(*ib).map_or(&[][..], Vec::as_slice);
                    cmp_lists(pa, la, pb, lb)
                }
            }
        }
    }
}

fn cmp_lists(pa: &Parsed, la: &[Node], pb: &Parsed, lb: &[Node]) -> Ordering {
    let n = la.len().max(lb.len());
    for i in 0..n {
        let o = match (la.get(i), lb.get(i)) {
            (None, None) => Ordering::Equal,
            (None, Some(r)) => cmp_item(pb, r, pa, None).reverse(),
            (Some(l), r) => cmp_item(pa, l, pb, r),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let pa = parse(a)?;
    let pb = parse(b)?;
    let la = pa.lists.first().map_or(&[][..], Vec::as_slice);
    let lb = pb.lists.first().map_or(&[][..], Vec::as_slice);
    Some(cmp_lists(&pa, la, &pb, lb))
}

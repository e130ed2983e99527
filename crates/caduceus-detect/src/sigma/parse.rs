//! Rule files: split into YAML documents (keeping each one's first line),
//! parse each into a [`Rule`] (or hand a correlation to
//! `crate::correlation`), and turn every problem into a [`RuleError`] with
//! the line of the offending key.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value as Yaml};

use super::compile::{self, CompileError, Interner};
use super::condition;
use super::matcher::{Cond, Detection, Item, Selection};
use super::{LogSource, Rule, SourceKey};
use crate::RuleError;

/// Largest rule file accepted.
pub const MAX_RULE_FILE_BYTES: usize = 1 << 20;
/// Most YAML documents in one rule file.
pub const MAX_DOCUMENTS: usize = 256;
/// Most search identifiers in one detection.
const MAX_SELECTIONS: usize = 256;

/// One YAML document of a file and the 1-based line it starts on.
pub(crate) struct Doc<'a> {
    pub(crate) text: &'a str,
    pub(crate) line: usize,
}

/// Split at `---` (and `...`) lines; a block scalar is always indented, so a
/// marker at the start of a line is always a document boundary.
pub(crate) fn documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") || bare == "...";
        if is_marker {
            docs.push(Doc { text: text.get(start..offset).unwrap_or_default(), line: start_line });
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Doc { text: text.get(start..).unwrap_or_default(), line: start_line });
    docs.retain(|d| d.text.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    docs
}

/// The line of the first `key:` in the document (quoted or not, possibly as
/// a list item), or of the first line containing `key`.
pub(crate) fn key_line(doc: &Doc<'_>, key: &str) -> Option<usize> {
    key_line_after(doc, key, doc.line)
}

/// As [`key_line`], looking only from line `from` on (so that a field is
/// found in its own search identifier, not an earlier one).
pub(crate) fn key_line_after(doc: &Doc<'_>, key: &str, from: usize) -> Option<usize> {
    let skip = from.saturating_sub(doc.line);
    let lines = || doc.text.lines().enumerate().skip(skip);
    let as_key = lines().find(|(_, l)| {
        let t = l.trim_start();
        let t = t.strip_prefix("- ").map(str::trim_start).unwrap_or(t);
        let t = t.strip_prefix(['\'', '"']).unwrap_or(t);
        t.strip_prefix(key).is_some_and(|rest| {
            let rest = rest.strip_prefix(['\'', '"']).unwrap_or(rest);
            rest.trim_start().starts_with(':')
        })
    });
    as_key.or_else(|| lines().find(|(_, l)| l.contains(key))).map(|(i, _)| doc.line + i)
}

fn yaml_error(file: &str, doc: &Doc<'_>, e: &serde_norway::Error) -> RuleError {
    let line = e.location().map(|l| doc.line + l.line() - 1);
    let mut msg = e.to_string();
    // The location is in the error's own text relative to the document;
    // drop it, the line is carried separately.
    if let Some(at) = msg.find(" at line ") {
        msg.truncate(at);
    }
    RuleError::new(file, line.or(Some(doc.line)), format!("invalid YAML: {msg}"))
}

fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Yaml> {
    map.get(key).filter(|v| !v.is_null())
}

fn string(map: &Mapping, key: &str) -> Result<Option<String>, String> {
    match get(map, key) {
        None => Ok(None),
        Some(Yaml::String(s)) => Ok(Some(s.clone())),
        Some(Yaml::Number(n)) => Ok(Some(n.to_string())),
        Some(Yaml::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn strings(map: &Mapping, key: &str) -> Result<Vec<String>, String> {
    match get(map, key) {
        None => Ok(Vec::new()),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|v| match v {
                Yaml::String(s) => Ok(s.clone()),
                Yaml::Number(n) => Ok(n.to_string()),
                Yaml::Bool(b) => Ok(b.to_string()),
                _ => Err(format!("`{key}` must be a list of strings")),
            })
            .collect(),
        Some(Yaml::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(format!("`{key}` must be a list of strings")),
    }
}

/// What one document holds.
pub(crate) enum Parsed {
    Rule(Box<Rule>),
    Correlation(Box<crate::correlation::CorrelationRule>),
}

/// Parse and compile one document.
pub(crate) fn document(
    file: &str,
    doc: &Doc<'_>,
    fields: &mut dyn Interner,
    placeholders: &BTreeMap<String, Vec<String>>,
) -> Result<Parsed, RuleError> {
    let value: Yaml = serde_norway::from_str(doc.text).map_err(|e| yaml_error(file, doc, &e))?;
    let at = |key: &str, message: String| RuleError::new(file, key_line(doc, key).or(Some(doc.line)), message);
    let Yaml::Mapping(map) = &value else {
        return Err(RuleError::new(file, Some(doc.line), "a Sigma rule must be a YAML mapping"));
    };
    if map.contains_key("correlation") {
        return crate::correlation::parse_with_text(&value, file, Some(doc.line), doc.text)
            .map(|c| Parsed::Correlation(Box::new(c)));
    }
    let title = string(map, "title")
        .map_err(|m| at("title", m))?
        .ok_or_else(|| RuleError::new(file, Some(doc.line), "the rule has no `title`"))?;
    let text = |key: &str| string(map, key).map_err(|m| at(key, m));
    let list = |key: &str| strings(map, key).map_err(|m| at(key, m));

    let Some(Yaml::Mapping(ls)) = get(map, "logsource") else {
        return Err(at("logsource", "the rule needs a `logsource` mapping".into()));
    };
    let ls_text = |key: &str| string(ls, key).map_err(|m| at(key, m));
    let logsource =
        LogSource { product: ls_text("product")?, service: ls_text("service")?, category: ls_text("category")? };

    let Some(Yaml::Mapping(det)) = get(map, "detection") else {
        return Err(at("detection", "the rule needs a `detection` mapping".into()));
    };
    let detection = detection(det, doc, file, fields, placeholders)?;
    let id = match text("id")? {
        Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => format!("{file}:{}", doc.line),
    };
    Ok(Parsed::Rule(Box::new(Rule {
        key: SourceKey::of(&logsource),
        id,
        name: text("name")?,
        title,
        status: text("status")?,
        description: text("description")?,
        author: text("author")?,
        level: text("level")?.map(|l| l.to_ascii_lowercase()),
        tags: list("tags")?,
        logsource,
        falsepositives: list("falsepositives")?,
        fields: list("fields")?,
        references: list("references")?,
        file: file.to_owned(),
        line: doc.line,
        detection,
    })))
}

fn detection(
    det: &Mapping,
    doc: &Doc<'_>,
    file: &str,
    fields: &mut dyn Interner,
    placeholders: &BTreeMap<String, Vec<String>>,
) -> Result<Detection, RuleError> {
    let det_line = key_line(doc, "detection").unwrap_or(doc.line);
    let at_needle = |e: CompileError, name: &str| {
        let sel_line = key_line_after(doc, name, det_line);
        let line = e.needle.as_deref().and_then(|n| key_line_after(doc, n, sel_line.unwrap_or(det_line))).or(sel_line);
        RuleError::new(file, line.or(Some(doc.line)), e.message)
    };
    let mut names = Vec::new();
    let mut selections = Vec::new();
    let mut condition_value = None;
    for (key, value) in det {
        let Some(key) = key.as_str() else {
            return Err(RuleError::new(file, key_line(doc, "detection"), "search identifiers must be strings"));
        };
        match key {
            "condition" => condition_value = Some(value),
            // Sigma v1's window for aggregations: meaningless without them.
            "timeframe" => {}
            name => {
                if selections.len() >= MAX_SELECTIONS {
                    return Err(RuleError::new(
                        file,
                        key_line_after(doc, name, det_line),
                        format!("more than {MAX_SELECTIONS} search identifiers"),
                    ));
                }
                let sel = selection(name, value, fields, placeholders).map_err(|e| at_needle(e, name))?;
                names.push(name.to_owned());
                selections.push(sel);
            }
        }
    }
    let cond_err = |m: String| RuleError::new(file, key_line_after(doc, "condition", det_line).or(Some(doc.line)), m);
    let conditions: Vec<&str> = match condition_value {
        None => {
            return Err(RuleError::new(
                file,
                key_line(doc, "detection").or(Some(doc.line)),
                "the detection has no `condition`",
            ));
        }
        Some(Yaml::String(s)) => vec![s.as_str()],
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| cond_err("each condition must be a string".into())))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(cond_err("`condition` must be a string or a list of strings".into())),
    };
    if conditions.is_empty() {
        return Err(cond_err("`condition` is an empty list".into()));
    }
    let mut parsed = Vec::with_capacity(conditions.len());
    for c in conditions {
        parsed.push(condition::parse(c, &names).map_err(|m| cond_err(format!("condition `{}`: {m}", c.trim())))?);
    }
    let condition = if parsed.len() == 1 { parsed.pop().unwrap_or(Cond::Or(Vec::new())) } else { Cond::Or(parsed) };
    Ok(Detection { selections, condition })
}

fn selection(
    name: &str,
    value: &Yaml,
    fields: &mut dyn Interner,
    placeholders: &BTreeMap<String, Vec<String>>,
) -> Result<Selection, CompileError> {
    let map_items = |m: &Mapping, fields: &mut dyn Interner| -> Result<Vec<Item>, CompileError> {
        let mut items = Vec::with_capacity(m.len());
        for (k, v) in m {
            let key = match k {
                Yaml::String(s) => s.clone(),
                Yaml::Number(n) => n.to_string(),
                _ => return Err(CompileError::new(Some(name), format!("`{name}` has a key that is not a field name"))),
            };
            if matches!(v, Yaml::Mapping(_)) {
                return Err(CompileError::new(
                    Some(&key),
                    format!(
                        "`{key}` holds a mapping; Sigma values are strings, numbers, booleans, null or lists of them"
                    ),
                ));
            }
            items.push(compile::item(&key, v, false, fields, placeholders)?);
        }
        Ok(items)
    };
    match value {
        Yaml::Mapping(m) => {
            if m.is_empty() {
                return Err(CompileError::new(Some(name), format!("search identifier `{name}` is empty")));
            }
            Ok(Selection { alts: vec![map_items(m, fields)?] })
        }
        Yaml::Sequence(items) => {
            if items.is_empty() {
                return Err(CompileError::new(Some(name), format!("search identifier `{name}` is an empty list")));
            }
            let mut alts = Vec::new();
            let mut keywords = Vec::new();
            for item in items {
                match item {
                    Yaml::Mapping(m) => alts.push(map_items(m, fields)?),
                    Yaml::Sequence(_) | Yaml::Tagged(_) => {
                        return Err(CompileError::new(Some(name), format!("`{name}` holds a nested list")));
                    }
                    Yaml::Null => {
                        return Err(CompileError::new(Some(name), format!("`{name}`: a keyword cannot be null")));
                    }
                    scalar => keywords.push(scalar.clone()),
                }
            }
            if !keywords.is_empty() {
                let item = compile::item("", &Yaml::Sequence(keywords), true, fields, placeholders)
                    .map_err(|e| CompileError::new(Some(name), e.message))?;
                alts.push(vec![item]);
            }
            Ok(Selection { alts })
        }
        Yaml::String(_) | Yaml::Number(_) | Yaml::Bool(_) => {
            let item = compile::item("", value, true, fields, placeholders)
                .map_err(|e| CompileError::new(Some(name), e.message))?;
            Ok(Selection { alts: vec![vec![item]] })
        }
        _ => Err(CompileError::new(
            Some(name),
            format!("search identifier `{name}` must be a mapping, a list or a keyword"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn documents_keep_their_lines() {
        let text = "# c\ntitle: a\n---\ntitle: b\nx: 1\n--- \n\n---\ntitle: c\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!((docs[0].line, docs[1].line, docs[2].line), (1, 4, 9));
        assert_eq!(key_line(&docs[1], "x"), Some(5));
    }

    #[test]
    fn key_lines_quoted_and_listed() {
        let doc = Doc { text: "a:\n  - 'Image|foo': x\n  \"b\": 2\n", line: 10 };
        assert_eq!(key_line(&doc, "Image|foo"), Some(11));
        assert_eq!(key_line(&doc, "b"), Some(12));
        assert_eq!(key_line(&doc, "nothing"), None);
    }
}

//! Dataset loading: a CSV file, or a directory of CSV files sharing one header, into a row-major
//! `f32` matrix with a 0/1 label per row. It owns parsing and the column schema; it must not
//! learn anything from the labels (that is the models' job, on training rows only).
//!
//! Rules, in the order they apply:
//! - Files: a path to a file is read alone; a directory is read as all its `*.csv` files in
//!   byte order of their names (the CIC-IDS2017 sample is one class per file). Every file must
//!   have the same header. Rows keep file order, then line order: row `i` of the dataset is the
//!   same row on every machine, which is what the split depends on.
//! - Cells are trimmed; a UTF-8 BOM and CRLF line ends are accepted; headers are trimmed.
//! - Missing cells: empty, `-`, `?`, `NaN`, `Infinity`/`inf` (any case, any sign) read as
//!   missing (NaN) in every column. A column is numeric when every non-missing cell parses as a
//!   number, else categorical; categorical cells become codes into a vocabulary of the column's
//!   distinct texts, in order of first appearance. In a column that mixes numbers and text, the
//!   numbers seen before the first text become categories spelled as their shortest decimal form.
//! - The label column: a row is normal (label 0) when its value equals one of `normal_values`
//!   (case-insensitive, or numerically equal when both are numbers), else an attack (label 1).
//! - Known layouts are recognised from the header when the options leave the label column or
//!   the dropped columns unset: UNSW-NB15 (label `label`, drop `id`, `attack_cat`),
//!   CIC-IDS2017 improved (label `Label`, drop `id`, `Flow ID`, `Src IP`, `Src Port`, `Dst IP`,
//!   `Timestamp`, `Attempted Category`) and TON_IoT (label `label`, drop `ts`, `date`, `time`,
//!   `type`). The class column (`attack_cat`, `Label`, `type`) names each row's class.
//! - Caps ([`Limits`]): total bytes, rows, columns, bytes per cell and distinct texts per
//!   categorical column. Errors name the file and line, never a cell's contents.
//! - Fingerprint: SHA-256 over the SHA-256 of each file's bytes, in the files' name order. A
//!   model records it so that evaluation on its own training data scores only the test rows.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{MlError, Result};

/// The normal label values used when none are given.
pub const DEFAULT_NORMAL_VALUES: [&str; 3] = ["0", "normal", "BENIGN"];

/// What a feature column holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// Numbers; missing cells are NaN.
    Numeric,
    /// Text, stored as the index of the text in `vocabulary`; unknown or missing text is NaN.
    Categorical { vocabulary: Vec<String> },
}

/// One feature column: its header name and kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
}

impl Feature {
    /// True for a categorical column.
    pub fn is_categorical(&self) -> bool {
        matches!(self.kind, FeatureKind::Categorical { .. })
    }
}

/// Size caps for loading. Every cap is checked while reading, before memory grows past it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Total bytes over all files.
    pub max_total_bytes: u64,
    /// Total data rows over all files.
    pub max_rows: usize,
    /// Columns in the header.
    pub max_columns: usize,
    /// Bytes in one cell.
    pub max_cell_bytes: usize,
    /// Distinct texts in one categorical column (an identifier column blows this; drop it).
    pub max_vocabulary: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_total_bytes: 2 << 30,
            max_rows: 20_000_000,
            max_columns: 4096,
            max_cell_bytes: 16 * 1024,
            max_vocabulary: 65_536,
        }
    }
}

/// How to read a dataset. `None`/empty fields fall back to the layout detected from the header.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The label column; `None` takes the detected layout's.
    pub label_column: Option<String>,
    /// Label values meaning "normal" (compared case-insensitively); everything else is an attack.
    pub normal_values: Vec<String>,
    /// Columns that must not be learned (identifiers, leaks); `None` takes the detected
    /// layout's. Named columns must exist in the header.
    pub drop_columns: Option<Vec<String>>,
    /// The column naming each row's class; `None` takes the detected layout's, else the label.
    pub class_column: Option<String>,
    pub limits: Limits,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            label_column: None,
            normal_values: DEFAULT_NORMAL_VALUES.iter().map(|s| (*s).to_owned()).collect(),
            drop_columns: None,
            class_column: None,
            limits: Limits::default(),
        }
    }
}

/// A known dataset layout, recognised from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    UnswNb15,
    CicIds2017,
    TonIot,
}

impl Layout {
    /// The layout whose marker columns all appear in `header`.
    pub fn detect(header: &[String]) -> Option<Layout> {
        let has = |name: &str| header.iter().any(|h| h == name);
        if has("attack_cat") && has("label") {
            Some(Layout::UnswNb15)
        } else if has("Label") && (has("Flow ID") || has("Attempted Category")) {
            Some(Layout::CicIds2017)
        } else if has("label") && has("type") {
            Some(Layout::TonIot)
        } else {
            None
        }
    }

    /// The label column.
    pub fn label_column(self) -> &'static str {
        match self {
            Layout::UnswNb15 | Layout::TonIot => "label",
            Layout::CicIds2017 => "Label",
        }
    }

    /// Columns dropped by default: identifiers, timestamps and the class name (a label leak).
    pub fn drop_columns(self) -> &'static [&'static str] {
        match self {
            Layout::UnswNb15 => &["id", "attack_cat"],
            Layout::CicIds2017 => &["id", "Flow ID", "Src IP", "Src Port", "Dst IP", "Timestamp", "Attempted Category"],
            Layout::TonIot => &["ts", "date", "time", "type"],
        }
    }

    /// The column naming the row's class.
    pub fn class_column(self) -> &'static str {
        match self {
            Layout::UnswNb15 => "attack_cat",
            Layout::CicIds2017 => "Label",
            Layout::TonIot => "type",
        }
    }
}

/// Per-row class names, stored as codes into `names`.
#[derive(Clone, Debug, PartialEq)]
pub struct Classes {
    pub column: String,
    pub names: Vec<String>,
    pub codes: Vec<u32>,
}

impl Classes {
    /// The class name of row `i`.
    pub fn name(&self, i: usize) -> Option<&str> {
        let code = *self.codes.get(i)?;
        self.names.get(code as usize).map(String::as_str)
    }
}

/// A loaded dataset: feature schema, row-major values and labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Feature columns in header order, after the label, class and dropped columns are removed.
    pub features: Vec<Feature>,
    /// Row-major values, `rows() * features.len()`; NaN is missing.
    pub values: Vec<f32>,
    /// 1 = attack, 0 = normal, one per row.
    pub labels: Vec<u8>,
    /// Class name per row, when the data has a class column (or from the label column).
    pub classes: Option<Classes>,
    /// Hex SHA-256 fingerprint of the files (see the module doc).
    pub fingerprint: String,
    /// The label column used.
    pub label_column: String,
    /// Columns that were dropped.
    pub dropped_columns: Vec<String>,
    /// The layout recognised from the header, if any.
    pub layout: Option<Layout>,
}

impl Dataset {
    /// Load a CSV file or a directory of CSV files (see the module doc for the rules).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
        let files = csv_files(path)?;
        let mut total: u64 = 0;
        for f in &files {
            let len = std::fs::metadata(f).map_err(|source| MlError::Io { file: display_name(f), source })?.len();
            total = total.saturating_add(len);
        }
        if total > opts.limits.max_total_bytes {
            return Err(MlError::Limit {
                file: display_name(path),
                what: "total size",
                limit: opts.limits.max_total_bytes,
            });
        }
        let mut builder = Builder::new(opts);
        for f in &files {
            let file = std::fs::File::open(f).map_err(|source| MlError::Io { file: display_name(f), source })?;
            builder.read(std::io::BufReader::new(file), &display_name(f))?;
        }
        builder.finish()
    }

    /// Parse one CSV from a reader; `name` appears in errors. The fingerprint is as for a
    /// single file with these bytes.
    pub fn from_reader<R: Read>(reader: R, name: &str, opts: &LoadOptions) -> Result<Dataset> {
        let mut builder = Builder::new(opts);
        builder.read(reader, name)?;
        builder.finish()
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Number of feature columns.
    pub fn dims(&self) -> usize {
        self.features.len()
    }

    /// Row `i`'s feature values.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let d = self.dims();
        self.values.get(i.checked_mul(d)?..i.checked_add(1)?.checked_mul(d)?)
    }

    /// Feature names in column order.
    pub fn feature_names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }

    /// Number of attack rows.
    pub fn attacks(&self) -> usize {
        self.labels.iter().filter(|l| **l == 1).count()
    }

    /// A dataset of the given rows (in the given order). Its fingerprint is derived from this
    /// one's and the row list, so it never passes for the original training file.
    pub fn select_rows(&self, rows: &[usize]) -> Dataset {
        let d = self.dims();
        let mut values = Vec::with_capacity(rows.len() * d);
        let mut labels = Vec::with_capacity(rows.len());
        let mut hasher = Sha256::new();
        hasher.update(self.fingerprint.as_bytes());
        for &r in rows {
            if let Some(row) = self.row(r)
                && let Some(l) = self.labels.get(r)
            {
                values.extend_from_slice(row);
                labels.push(*l);
                hasher.update((r as u64).to_le_bytes());
            }
        }
        let classes = self.classes.as_ref().map(|c| Classes {
            column: c.column.clone(),
            names: c.names.clone(),
            codes: rows.iter().filter(|r| **r < self.rows()).filter_map(|r| c.codes.get(*r).copied()).collect(),
        });
        Dataset {
            features: self.features.clone(),
            values,
            labels,
            classes,
            fingerprint: hex::encode(hasher.finalize()),
            label_column: self.label_column.clone(),
            dropped_columns: self.dropped_columns.clone(),
            layout: self.layout,
        }
    }
}

/// The CSV files at `path`: itself, or a directory's `*.csv` files sorted by name.
fn csv_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let io_err = |source| MlError::Io { file: display_name(path), source };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_err)? {
        let p = entry.map_err(io_err)?.path();
        let is_csv = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv && p.is_file() {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        return Err(MlError::Dataset(format!("no .csv files in directory {}", display_name(path))));
    }
    Ok(files)
}

/// The last component of a path: errors name the file without the directories above it.
fn display_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// A cell read as a number, as missing, or as text.
enum Cell<'a> {
    Missing,
    Num(f32),
    Text(&'a str),
}

/// True for the spellings of a missing value (see the module doc).
pub(crate) fn is_missing(s: &str) -> bool {
    if s.is_empty() || s == "-" || s == "?" {
        return true;
    }
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity")
}

/// Parse a number as `f32`; infinities and NaN are missing, out-of-range values are clamped.
pub(crate) fn parse_number(s: &str) -> Option<f32> {
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() {
        return Some(f32::NAN);
    }
    Some(v.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32)
}

fn classify(s: &str) -> Cell<'_> {
    if is_missing(s) {
        return Cell::Missing;
    }
    match parse_number(s) {
        Some(v) if v.is_nan() => Cell::Missing,
        Some(v) => Cell::Num(v),
        None => Cell::Text(s),
    }
}

/// A growing vocabulary of distinct texts.
#[derive(Default)]
struct Vocab {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl Vocab {
    fn code(&mut self, s: &str, cap: usize) -> Option<u32> {
        if let Some(c) = self.index.get(s) {
            return Some(*c);
        }
        if self.names.len() >= cap {
            return None;
        }
        let c = u32::try_from(self.names.len()).ok()?;
        self.index.insert(s.to_owned(), c);
        self.names.push(s.to_owned());
        Some(c)
    }
}

/// The role of a header column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Drop,
    Label,
    Feature(usize),
}

/// Column layout fixed by the first file's header.
struct Schema {
    header: Vec<String>,
    roles: Vec<Role>,
    class_col: Option<usize>,
    label_column: String,
    dropped: Vec<String>,
    layout: Option<Layout>,
}

struct Builder<'o> {
    opts: &'o LoadOptions,
    normal_lower: Vec<String>,
    normal_numbers: Vec<f64>,
    schema: Option<Schema>,
    features: Vec<(String, Option<Vocab>)>,
    values: Vec<f32>,
    labels: Vec<u8>,
    class_vocab: Vocab,
    class_codes: Vec<u32>,
    bytes_read: u64,
    file_hashes: Vec<[u8; 32]>,
}

/// A reader that hashes what passes through it and stops at a byte cap.
struct CappedHasher<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    cap: u64,
    exceeded: bool,
}

impl<R: Read> Read for CappedHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.cap {
            self.exceeded = true;
            return Err(std::io::Error::other("size cap exceeded"));
        }
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

impl<'o> Builder<'o> {
    fn new(opts: &'o LoadOptions) -> Self {
        Self {
            opts,
            normal_lower: opts.normal_values.iter().map(|v| v.trim().to_lowercase()).collect(),
            normal_numbers: opts
                .normal_values
                .iter()
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .collect(),
            schema: None,
            features: Vec::new(),
            values: Vec::new(),
            labels: Vec::new(),
            class_vocab: Vocab::default(),
            class_codes: Vec::new(),
            bytes_read: 0,
            file_hashes: Vec::new(),
        }
    }

    fn read<R: Read>(&mut self, reader: R, name: &str) -> Result<()> {
        let limits = &self.opts.limits;
        let capped = CappedHasher {
            inner: reader,
            hasher: Sha256::new(),
            read: 0,
            cap: limits.max_total_bytes.saturating_sub(self.bytes_read),
            exceeded: false,
        };
        let mut rdr =
            csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(capped);
        let mut record = csv::ByteRecord::new();
        let mut header_seen = false;
        loop {
            let more = match rdr.read_byte_record(&mut record) {
                Ok(more) => more,
                Err(e) => {
                    if rdr.get_ref().exceeded {
                        return Err(MlError::Limit {
                            file: name.to_owned(),
                            what: "total size",
                            limit: limits.max_total_bytes,
                        });
                    }
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    return Err(MlError::Csv { file: name.to_owned(), line, reason: csv_reason(&e) });
                }
            };
            if !more {
                break;
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if record.iter().any(|c| c.len() > limits.max_cell_bytes) {
                return Err(MlError::Limit {
                    file: format!("{name}, line {line}"),
                    what: "cell size",
                    limit: limits.max_cell_bytes as u64,
                });
            }
            if !header_seen {
                header_seen = true;
                self.header(&record, name, line)?;
                continue;
            }
            // A blank line reads as one empty field: skip it.
            if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
                continue;
            }
            self.row(&record, name, line)?;
        }
        if !header_seen {
            return Err(MlError::Csv { file: name.to_owned(), line: 1, reason: "empty file: no header".to_owned() });
        }
        let capped = rdr.into_inner();
        self.bytes_read = self.bytes_read.saturating_add(capped.read);
        self.file_hashes.push(capped.hasher.finalize().into());
        Ok(())
    }

    fn header(&mut self, record: &csv::ByteRecord, name: &str, line: u64) -> Result<()> {
        let limits = &self.opts.limits;
        if record.len() > limits.max_columns {
            return Err(MlError::Limit {
                file: name.to_owned(),
                what: "column count",
                limit: limits.max_columns as u64,
            });
        }
        let header: Vec<String> = record
            .iter()
            .map(|c| String::from_utf8_lossy(c).trim_start_matches('\u{feff}').trim().to_owned())
            .collect();
        if let Some(schema) = &self.schema {
            if schema.header != header {
                return Err(MlError::Csv {
                    file: name.to_owned(),
                    line,
                    reason: "header differs from the first file's".to_owned(),
                });
            }
            return Ok(());
        }
        for (i, h) in header.iter().enumerate() {
            if header.iter().skip(i + 1).any(|o| o == h) {
                return Err(MlError::Csv {
                    file: name.to_owned(),
                    line,
                    reason: format!("duplicate column `{}` in header", short(h)),
                });
            }
        }
        let layout = Layout::detect(&header);
        let label_column = match (&self.opts.label_column, layout) {
            (Some(l), _) => l.trim().to_owned(),
            (None, Some(layout)) => layout.label_column().to_owned(),
            (None, None) => {
                return Err(MlError::Dataset(format!(
                    "{name}: no label column given and the header matches no known layout \
                     (UNSW-NB15, CIC-IDS2017, TON_IoT)"
                )));
            }
        };
        let Some(label_idx) = header.iter().position(|h| *h == label_column) else {
            return Err(MlError::Dataset(format!("{name}: label column `{}` not in the header", short(&label_column))));
        };
        let drops: Vec<String> = match (&self.opts.drop_columns, layout) {
            (Some(d), _) => {
                for c in d {
                    if !header.iter().any(|h| h == c.trim()) {
                        return Err(MlError::Dataset(format!("{name}: drop column `{}` not in the header", short(c))));
                    }
                }
                d.iter().map(|c| c.trim().to_owned()).collect()
            }
            (None, Some(layout)) => layout
                .drop_columns()
                .iter()
                .filter(|c| header.iter().any(|h| h == *c))
                .map(|c| (*c).to_owned())
                .collect(),
            (None, None) => Vec::new(),
        };
        let class_name = match (&self.opts.class_column, layout) {
            (Some(c), _) => Some(c.trim().to_owned()),
            (None, Some(layout)) => Some(layout.class_column().to_owned()),
            (None, None) => Some(label_column.clone()),
        };
        let class_col = class_name.and_then(|c| header.iter().position(|h| *h == c));
        let mut roles = Vec::with_capacity(header.len());
        for (i, h) in header.iter().enumerate() {
            if i == label_idx {
                roles.push(Role::Label);
            } else if drops.iter().any(|d| d == h) || Some(i) == class_col {
                roles.push(Role::Drop);
            } else {
                roles.push(Role::Feature(self.features.len()));
                self.features.push((h.clone(), None));
            }
        }
        let mut dropped: Vec<String> = drops;
        if let Some(c) = class_col
            && c != label_idx
            && let Some(h) = header.get(c)
            && !dropped.contains(h)
        {
            dropped.push(h.clone());
        }
        self.schema = Some(Schema { header, roles, class_col, label_column, dropped, layout });
        Ok(())
    }

    fn row(&mut self, record: &csv::ByteRecord, name: &str, line: u64) -> Result<()> {
        let limits = &self.opts.limits;
        let Some(schema) = &self.schema else {
            return Err(MlError::Csv { file: name.to_owned(), line, reason: "row before header".to_owned() });
        };
        if record.len() != schema.header.len() {
            return Err(MlError::Csv {
                file: name.to_owned(),
                line,
                reason: format!("{} fields where the header has {}", record.len(), schema.header.len()),
            });
        }
        if self.labels.len() >= limits.max_rows {
            return Err(MlError::Limit { file: name.to_owned(), what: "row count", limit: limits.max_rows as u64 });
        }
        let d = self.features.len();
        let row_start = self.values.len();
        self.values.resize(row_start + d, f32::NAN);
        let mut label = None;
        for (i, (cell, role)) in record.iter().zip(&schema.roles).enumerate() {
            let text = String::from_utf8_lossy(cell);
            if Some(i) == schema.class_col {
                let code = self.class_vocab.code(&text, limits.max_vocabulary).ok_or_else(|| MlError::Limit {
                    file: format!("{name}, line {line}"),
                    what: "distinct class names",
                    limit: limits.max_vocabulary as u64,
                })?;
                self.class_codes.push(code);
            }
            match *role {
                Role::Drop => {}
                Role::Label => {
                    if is_missing(&text) {
                        return Err(MlError::Csv {
                            file: name.to_owned(),
                            line,
                            reason: format!("missing label in column `{}`", short(&schema.label_column)),
                        });
                    }
                    label = Some(self.is_attack(&text));
                }
                Role::Feature(j) => {
                    let Some((col_name, vocab)) = self.features.get_mut(j) else {
                        continue;
                    };
                    let v = match (classify(&text), vocab) {
                        (Cell::Missing, _) => f32::NAN,
                        (Cell::Num(v), None) => v,
                        (Cell::Num(v), Some(vocab)) => {
                            categorical_code(vocab, &v.to_string(), limits, name, line, col_name)?
                        }
                        (Cell::Text(t), Some(vocab)) => categorical_code(vocab, t, limits, name, line, col_name)?,
                        (Cell::Text(t), vocab @ None) => {
                            // The column turns categorical: re-code the numbers read so far.
                            let mut new_vocab = Vocab::default();
                            let mut r = j;
                            while r < row_start {
                                if let Some(slot) = self.values.get_mut(r)
                                    && !slot.is_nan()
                                {
                                    let s = slot.to_string();
                                    *slot = categorical_code(&mut new_vocab, &s, limits, name, line, col_name)?;
                                }
                                r += d;
                            }
                            let code = categorical_code(&mut new_vocab, t, limits, name, line, col_name)?;
                            *vocab = Some(new_vocab);
                            code
                        }
                    };
                    if let Some(slot) = self.values.get_mut(row_start + j) {
                        *slot = v;
                    }
                }
            }
        }
        self.labels.push(label.unwrap_or(0));
        Ok(())
    }

    fn is_attack(&self, value: &str) -> u8 {
        let lower = value.to_lowercase();
        if self.normal_lower.contains(&lower) {
            return 0;
        }
        if let Ok(v) = value.parse::<f64>()
            && self.normal_numbers.contains(&v)
        {
            return 0;
        }
        1
    }

    fn finish(self) -> Result<Dataset> {
        let Some(schema) = self.schema else {
            return Err(MlError::Dataset("no header read".to_owned()));
        };
        let mut hasher = Sha256::new();
        for h in &self.file_hashes {
            hasher.update(h);
        }
        let features = self
            .features
            .into_iter()
            .map(|(name, vocab)| Feature {
                name,
                kind: match vocab {
                    None => FeatureKind::Numeric,
                    Some(v) => FeatureKind::Categorical { vocabulary: v.names },
                },
            })
            .collect();
        let classes = schema.class_col.and_then(|c| {
            let column = schema.header.get(c)?.clone();
            Some(Classes { column, names: self.class_vocab.names, codes: self.class_codes })
        });
        Ok(Dataset {
            features,
            values: self.values,
            labels: self.labels,
            classes,
            fingerprint: hex::encode(hasher.finalize()),
            label_column: schema.label_column,
            dropped_columns: schema.dropped,
            layout: schema.layout,
        })
    }
}

fn categorical_code(
    vocab: &mut Vocab,
    text: &str,
    limits: &Limits,
    file: &str,
    line: u64,
    column: &str,
) -> Result<f32> {
    match vocab.code(text, limits.max_vocabulary) {
        Some(c) => Ok(c as f32),
        None => Err(MlError::Dataset(format!(
            "{file}, line {line}: column `{}` has more than {} distinct texts; drop it with \
             drop_columns if it is an identifier",
            short(column),
            limits.max_vocabulary
        ))),
    }
}

/// A header name cut to a length fit for an error message.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

/// The reason of a CSV error without any cell contents.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".to_owned(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where {expected_len} were expected")
        }
        _ => "malformed CSV".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, opts: &LoadOptions) -> Result<Dataset> {
        Dataset::from_reader(text.as_bytes(), "t.csv", opts)
    }

    fn with_label(l: &str) -> LoadOptions {
        LoadOptions { label_column: Some(l.to_owned()), ..LoadOptions::default() }
    }

    #[test]
    fn bom_crlf_infinity_and_missing() {
        let text = "\u{feff} a , b ,c,label\r\n1,x,Infinity,0\r\n2.5,-,NaN,1\r\n,y,3,BENIGN\r\n";
        let ds = load(text, &with_label("label")).unwrap();
        assert_eq!(ds.feature_names(), vec!["a", "b", "c"]);
        assert_eq!(ds.rows(), 3);
        assert_eq!(ds.labels, vec![0, 1, 0]);
        assert_eq!(ds.features[0].kind, FeatureKind::Numeric);
        assert_eq!(ds.features[1].kind, FeatureKind::Categorical { vocabulary: vec!["x".into(), "y".into()] });
        assert_eq!(ds.features[2].kind, FeatureKind::Numeric);
        let r0 = ds.row(0).unwrap();
        assert_eq!(r0[0], 1.0);
        assert_eq!(r0[1], 0.0);
        assert!(r0[2].is_nan());
        let r1 = ds.row(1).unwrap();
        assert_eq!(r1[0], 2.5);
        assert!(r1[1].is_nan(), "`-` is missing");
        assert!(r1[2].is_nan());
        let r2 = ds.row(2).unwrap();
        assert!(r2[0].is_nan(), "empty is missing");
        assert_eq!(r2[1], 1.0);
        assert_eq!(r2[2], 3.0);
    }

    #[test]
    fn bad_row_names_file_and_line() {
        let text = "a,label\n1,0\n2,1\n3\n";
        let err = load(text, &with_label("label")).unwrap_err().to_string();
        assert!(err.contains("t.csv"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn long_cell_is_rejected_without_echo() {
        let secret = "s".repeat(100);
        let text = format!("a,label\n{secret},0\n");
        let mut opts = with_label("label");
        opts.limits.max_cell_bytes = 50;
        let err = load(&text, &opts).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains(&secret[..20]), "{err}");
    }

    #[test]
    fn caps_on_rows_columns_bytes_and_vocabulary() {
        let mut opts = with_label("label");
        opts.limits.max_rows = 2;
        let err = load("a,label\n1,0\n2,0\n3,1\n", &opts).unwrap_err();
        assert!(matches!(err, MlError::Limit { what: "row count", .. }), "{err}");

        let mut opts = with_label("label");
        opts.limits.max_columns = 2;
        let err = load("a,b,label\n1,2,0\n", &opts).unwrap_err();
        assert!(matches!(err, MlError::Limit { what: "column count", .. }), "{err}");

        let mut opts = with_label("label");
        opts.limits.max_total_bytes = 10;
        let err = load("a,label\n1,0\n2,0\n3,1\n", &opts).unwrap_err();
        assert!(matches!(err, MlError::Limit { what: "total size", .. }), "{err}");

        let mut opts = with_label("label");
        opts.limits.max_vocabulary = 2;
        let err = load("a,label\nx,0\ny,0\nz,1\n", &opts).unwrap_err().to_string();
        assert!(err.contains("more than 2 distinct"), "{err}");
    }

    #[test]
    fn mixed_column_becomes_categorical() {
        let ds = load("a,label\n1,0\n1.0,0\nx,1\n2,1\n", &with_label("label")).unwrap();
        assert_eq!(
            ds.features[0].kind,
            FeatureKind::Categorical { vocabulary: vec!["1".into(), "x".into(), "2".into()] }
        );
        assert_eq!(ds.values, vec![0.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn normal_values_case_and_numbers() {
        let ds = load("a,label\n1,benign\n2,Normal\n3,0.0\n4,DoS\n", &with_label("label")).unwrap();
        assert_eq!(ds.labels, vec![0, 0, 0, 1]);
        let mut opts = with_label("label");
        opts.normal_values = vec!["ok".into()];
        let ds = load("a,label\n1,OK\n2,0\n", &opts).unwrap();
        assert_eq!(ds.labels, vec![0, 1]);
    }

    #[test]
    fn layouts_are_detected() {
        let ton = "\u{feff}ts,date,time,temp,cond,label,type\r\n1,d,t, 9 , high ,1,ddos\r\n2,d,t,3,low,0,normal\r\n";
        let ds = load(ton, &LoadOptions::default()).unwrap();
        assert_eq!(ds.layout, Some(Layout::TonIot));
        assert_eq!(ds.feature_names(), vec!["temp", "cond"]);
        assert_eq!(ds.labels, vec![1, 0]);
        let classes = ds.classes.as_ref().unwrap();
        assert_eq!(classes.name(0), Some("ddos"));
        assert_eq!(classes.name(1), Some("normal"));

        let unsw = "id,dur,proto,attack_cat,label\n1,0.1,udp,Normal,0\n2,0.2,tcp,Exploits,1\n";
        let ds = load(unsw, &LoadOptions::default()).unwrap();
        assert_eq!(ds.layout, Some(Layout::UnswNb15));
        assert_eq!(ds.feature_names(), vec!["dur", "proto"]);
        assert_eq!(ds.classes.as_ref().unwrap().name(1), Some("Exploits"));

        let err = load("a,b\n1,2\n", &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("no label column"), "{err}");
        let err = load("a,b\n1,2\n", &with_label("c")).unwrap_err().to_string();
        assert!(err.contains("label column `c` not in the header"), "{err}");
    }

    #[test]
    fn explicit_drops_must_exist() {
        let mut opts = with_label("label");
        opts.drop_columns = Some(vec!["nope".into()]);
        let err = load("a,label\n1,0\n", &opts).unwrap_err().to_string();
        assert!(err.contains("drop column `nope`"), "{err}");
        opts.drop_columns = Some(vec!["a".into()]);
        let ds = load("a,b,label\n1,2,0\n", &opts).unwrap();
        assert_eq!(ds.feature_names(), vec!["b"]);
    }

    #[test]
    fn quoted_cells_and_blank_lines() {
        let ds = load("a,b,label\n\"1\",\"x,y\",0\n\n2,z,1\n", &with_label("label")).unwrap();
        assert_eq!(ds.rows(), 2);
        assert_eq!(ds.features[1].kind, FeatureKind::Categorical { vocabulary: vec!["x,y".into(), "z".into()] });
    }

    #[test]
    fn empty_and_header_only() {
        assert!(load("", &with_label("label")).is_err());
        let ds = load("a,label\n", &with_label("label")).unwrap();
        assert_eq!(ds.rows(), 0);
    }

    #[test]
    fn fingerprint_depends_on_bytes() {
        let a = load("a,label\n1,0\n", &with_label("label")).unwrap();
        let b = load("a,label\n1,0\n", &with_label("label")).unwrap();
        let c = load("a,label\n2,0\n", &with_label("label")).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(a.select_rows(&[0]).fingerprint, a.fingerprint);
    }

    #[test]
    fn fuzz_entry_point_survives_garbage() {
        crate::fuzz_dataset(b"");
        crate::fuzz_dataset(b"\xff\xfe,\"\n\"\"");
        crate::fuzz_dataset(b"a,label\n1,0\n\"unterminated");
        crate::fuzz_dataset(b"x,y\n1,2,3\n");
    }
}

//! Offline enrichment: FIRST's EPSS scores and CISA's Known Exploited Vulnerabilities (KEV)
//! catalogue, loaded from the files those organisations publish.
//!
//! - EPSS: `epss_scores-YYYY-MM-DD.csv` (decompressed), an optional first comment line
//!   `#model_version:v2023.03.01,score_date:2024-01-01T00:00:00+0000`, then the header
//!   `cve,epss,percentile` and one row per CVE.
//! - KEV: `known_exploited_vulnerabilities.json` (`{"title","catalogVersion","dateReleased",
//!   "count","vulnerabilities":[{"cveID","vendorProject","product",...}]}`) or the CSV with the
//!   same columns.
//!
//! Every row is checked (CVE id shape, scores in [0, 1], dates `YYYY-MM-DD`); a bad row
//! rejects the file with its row number, since a half-loaded catalogue would silently
//! under-report. Loading again adds to (and for the same CVE replaces) what is loaded.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::{DevicesError, Result, check_size};

/// Largest EPSS file accepted (the full daily CSV is about 10 MiB uncompressed).
pub const MAX_EPSS_BYTES: usize = 256 * 1024 * 1024;
/// Largest KEV file accepted (the catalogue is about 1.5 MiB).
pub const MAX_KEV_BYTES: usize = 64 * 1024 * 1024;

/// A CVE's EPSS probability of exploitation in the next 30 days and its percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epss {
    pub score: f64,
    pub percentile: f64,
}

/// One entry of the KEV catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KevEntry {
    pub cve: String,
    pub vendor: String,
    pub product: String,
    /// `YYYY-MM-DD`.
    pub date_added: String,
    /// `YYYY-MM-DD`, the federal remediation deadline.
    pub due_date: Option<String>,
    /// `knownRansomwareCampaignUse` is `Known`.
    pub known_ransomware: bool,
    pub required_action: String,
}

/// EPSS scores and KEV entries by CVE id.
#[derive(Debug, Clone, Default)]
pub struct Enrichment {
    epss: HashMap<String, Epss>,
    kev: HashMap<String, KevEntry>,
    epss_model_version: Option<String>,
    epss_score_date: Option<String>,
    kev_catalog_version: Option<String>,
}

impl Enrichment {
    pub fn new() -> Self {
        Self::default()
    }

    /// Load FIRST's EPSS CSV; returns the number of rows loaded.
    pub fn load_epss_csv(&mut self, bytes: &[u8]) -> Result<usize> {
        check_size("EPSS file", bytes, MAX_EPSS_BYTES)?;
        let bytes = strip_bom(bytes);
        let (comment, body) = split_comment_line(bytes);
        if let Some(comment) = comment {
            let text = String::from_utf8_lossy(comment);
            for part in text.trim_start_matches('#').split(',') {
                if let Some((k, v)) = part.split_once(':') {
                    match k.trim() {
                        "model_version" => self.epss_model_version = Some(cap(v.trim())),
                        "score_date" => self.epss_score_date = Some(cap(v.trim())),
                        _ => {}
                    }
                }
            }
        }
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(body);
        let headers = reader.headers().map_err(|e| epss_err(format!("header: {e}")))?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let (Some(cve_col), Some(epss_col), Some(pct_col)) = (col("cve"), col("epss"), col("percentile")) else {
            return Err(epss_err("header must name the columns cve, epss and percentile".into()));
        };
        let mut loaded = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let row = i + 1;
            let record = record.map_err(|e| epss_err(format!("row {row}: {e}")))?;
            let field = |c: usize| record.get(c).unwrap_or("").trim();
            let cve = normalise_cve(field(cve_col)).ok_or_else(|| epss_err(format!("row {row}: not a CVE id")))?;
            let score = unit_interval(field(epss_col))
                .ok_or_else(|| epss_err(format!("row {row}: epss is not a number in [0, 1]")))?;
            let percentile = unit_interval(field(pct_col))
                .ok_or_else(|| epss_err(format!("row {row}: percentile is not a number in [0, 1]")))?;
            loaded.insert(cve, Epss { score, percentile });
        }
        let n = loaded.len();
        self.epss.extend(loaded);
        Ok(n)
    }

    /// Load CISA's KEV catalogue in its JSON form; returns the number of entries loaded.
    pub fn load_kev_json(&mut self, bytes: &[u8]) -> Result<usize> {
        check_size("KEV file", bytes, MAX_KEV_BYTES)?;
        let catalog: KevCatalog =
            serde_json::from_slice(strip_bom(bytes)).map_err(|e| kev_err(format!("JSON: {e}")))?;
        let mut loaded = HashMap::new();
        for (i, v) in catalog.vulnerabilities.into_iter().enumerate() {
            let row = i + 1;
            let entry = kev_entry(
                row,
                &v.cve_id,
                v.vendor_project,
                v.product,
                &v.date_added,
                v.due_date.as_deref(),
                v.known_ransomware_campaign_use.as_deref(),
                v.required_action,
            )?;
            loaded.insert(entry.cve.clone(), entry);
        }
        if let Some(version) = catalog.catalog_version {
            self.kev_catalog_version = Some(cap(&version));
        }
        let n = loaded.len();
        self.kev.extend(loaded);
        Ok(n)
    }

    /// Load CISA's KEV catalogue in its CSV form; returns the number of entries loaded.
    pub fn load_kev_csv(&mut self, bytes: &[u8]) -> Result<usize> {
        check_size("KEV file", bytes, MAX_KEV_BYTES)?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(strip_bom(bytes));
        let headers = reader.headers().map_err(|e| kev_err(format!("CSV header: {e}")))?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let (Some(cve_col), Some(date_col)) = (col("cveID"), col("dateAdded")) else {
            return Err(kev_err("CSV header must name at least cveID and dateAdded".into()));
        };
        let (vendor_col, product_col, due_col, ransom_col, action_col) = (
            col("vendorProject"),
            col("product"),
            col("dueDate"),
            col("knownRansomwareCampaignUse"),
            col("requiredAction"),
        );
        let mut loaded = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let row = i + 1;
            let record = record.map_err(|e| kev_err(format!("CSV row {row}: {e}")))?;
            let field = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or("").trim().to_string();
            let due = field(due_col);
            let ransom = field(ransom_col);
            let entry = kev_entry(
                row,
                &field(Some(cve_col)),
                field(vendor_col),
                field(product_col),
                &field(Some(date_col)),
                (!due.is_empty()).then_some(due.as_str()),
                (!ransom.is_empty()).then_some(ransom.as_str()),
                field(action_col),
            )?;
            loaded.insert(entry.cve.clone(), entry);
        }
        let n = loaded.len();
        self.kev.extend(loaded);
        Ok(n)
    }

    /// Load a file, choosing the format by extension and content: `.json` is the KEV JSON;
    /// a CSV whose header has `cveID` is the KEV CSV, one with `cve,epss` (or the EPSS
    /// comment line) is EPSS. Compressed files are refused: decompress them first.
    pub fn load_file(&mut self, path: &Path) -> Result<usize> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".gz") || name.ends_with(".zip") {
            return Err(DevicesError::Parse {
                format: "enrichment",
                reason: "compressed file: decompress it first (gzip is not read)".into(),
            });
        }
        let file = std::fs::File::open(path).map_err(|e| DevicesError::Parse {
            format: "enrichment",
            reason: format!("cannot open {}: {e}", cap(&name)),
        })?;
        let mut bytes = Vec::new();
        let limit = MAX_EPSS_BYTES.max(MAX_KEV_BYTES);
        file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| DevicesError::Parse {
            format: "enrichment",
            reason: format!("cannot read {}: {e}", cap(&name)),
        })?;
        check_size("enrichment file", &bytes, limit)?;
        let start =
            strip_bom(&bytes).iter().position(|b| !b.is_ascii_whitespace()).and_then(|p| strip_bom(&bytes).get(p));
        if name.ends_with(".json") || start == Some(&b'{') {
            return self.load_kev_json(&bytes);
        }
        let (_, body) = split_comment_line(strip_bom(&bytes));
        let header_line = body.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let header = String::from_utf8_lossy(header_line);
        if header.contains("cveID") {
            self.load_kev_csv(&bytes)
        } else if header.to_ascii_lowercase().contains("epss") {
            self.load_epss_csv(&bytes)
        } else {
            Err(DevicesError::Parse {
                format: "enrichment",
                reason: format!("{} is neither an EPSS CSV nor a KEV catalogue", cap(&name)),
            })
        }
    }

    /// The EPSS score of a CVE (id case-insensitive).
    pub fn epss(&self, cve: &str) -> Option<Epss> {
        self.epss.get(&normalise_cve(cve)?).copied()
    }

    /// The KEV entry of a CVE (id case-insensitive).
    pub fn kev(&self, cve: &str) -> Option<&KevEntry> {
        self.kev.get(&normalise_cve(cve)?)
    }

    pub fn epss_len(&self) -> usize {
        self.epss.len()
    }

    pub fn kev_len(&self) -> usize {
        self.kev.len()
    }

    /// EPSS `model_version` from the file's comment line.
    pub fn epss_model_version(&self) -> Option<&str> {
        self.epss_model_version.as_deref()
    }

    /// EPSS `score_date` from the file's comment line.
    pub fn epss_score_date(&self) -> Option<&str> {
        self.epss_score_date.as_deref()
    }

    /// KEV `catalogVersion` (JSON form only).
    pub fn kev_catalog_version(&self) -> Option<&str> {
        self.kev_catalog_version.as_deref()
    }
}

/// Fuzz entry point: feed the bytes to every loader, dropping the results.
pub fn fuzz_enrich(data: &[u8]) {
    let mut e = Enrichment::new();
    let _ = e.load_epss_csv(data);
    let _ = e.load_kev_json(data);
    let _ = e.load_kev_csv(data);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KevCatalog {
    #[serde(default)]
    catalog_version: Option<String>,
    vulnerabilities: Vec<KevJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KevJson {
    #[serde(rename = "cveID")]
    cve_id: String,
    #[serde(default)]
    vendor_project: String,
    #[serde(default)]
    product: String,
    date_added: String,
    #[serde(default)]
    required_action: String,
    #[serde(default)]
    due_date: Option<String>,
    #[serde(default)]
    known_ransomware_campaign_use: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn kev_entry(
    row: usize,
    cve: &str,
    vendor: String,
    product: String,
    date_added: &str,
    due_date: Option<&str>,
    ransomware: Option<&str>,
    required_action: String,
) -> Result<KevEntry> {
    let cve = normalise_cve(cve).ok_or_else(|| kev_err(format!("entry {row}: cveID is not a CVE id")))?;
    if !is_date(date_added) {
        return Err(kev_err(format!("entry {row} ({cve}): dateAdded is not YYYY-MM-DD")));
    }
    let due_date = match due_date.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if is_date(d) => Some(d.to_string()),
        Some(_) => return Err(kev_err(format!("entry {row} ({cve}): dueDate is not YYYY-MM-DD"))),
        None => None,
    };
    let known_ransomware = ransomware.is_some_and(|r| r.trim().eq_ignore_ascii_case("known"));
    Ok(KevEntry {
        cve,
        vendor,
        product,
        date_added: date_added.trim().to_string(),
        due_date,
        known_ransomware,
        required_action,
    })
}

/// `CVE-\d{4}-\d{4,}`, upper-cased; None when the id has another shape.
fn normalise_cve(id: &str) -> Option<String> {
    let id = id.trim();
    if id.len() > 32 {
        return None;
    }
    let upper = id.to_ascii_uppercase();
    let rest = upper.strip_prefix("CVE-")?;
    let (year, number) = rest.split_once('-')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (year.len() == 4 && digits(year) && number.len() >= 4 && digits(number)).then_some(upper)
}

fn unit_interval(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
}

fn is_date(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() == 10 && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Split off a first line that starts with `#`.
fn split_comment_line(bytes: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if bytes.first() != Some(&b'#') {
        return (None, bytes);
    }
    match bytes.iter().position(|b| *b == b'\n') {
        Some(p) => match bytes.split_at_checked(p) {
            Some((line, rest)) => (Some(line), rest.get(1..).unwrap_or(&[])),
            None => (Some(bytes), &[]),
        },
        None => (Some(bytes), &[]),
    }
}

fn cap(s: &str) -> String {
    s.chars().take(64).collect()
}

fn epss_err(reason: String) -> DevicesError {
    DevicesError::Parse { format: "EPSS CSV", reason }
}

fn kev_err(reason: String) -> DevicesError {
    DevicesError::Parse { format: "KEV catalogue", reason }
}

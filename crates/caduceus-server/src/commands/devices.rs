//! `caduceus devices scan|import` and `caduceus advisories import`: scan an SBOM, a
//! Cargo.lock or an inventory CSV against advisory files offline (like `trivy sbom`), and
//! send an inventory or advisories to a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use caduceus_devices::enrich::Enrichment;
use caduceus_devices::matching::{Finding, PreparedSbom};
use caduceus_devices::model::FindingStatus;
use caduceus_devices::scan::{AdvisorySet, Scanner, read_capped};
use caduceus_devices::{MAX_ADVISORY_BYTES, MAX_SBOM_BYTES, csaf, inventory, lockfile, report, sbom};
use serde_json::Value;

/// How many advisory load errors are printed one by one before they are only counted.
const SHOWN_ERRORS: usize = 20;
/// Largest ROLIE feed fetched.
const MAX_FEED_BYTES: usize = 4 * MAX_ADVISORY_BYTES;
/// Largest hash or signature file fetched.
const MAX_SIDE_FILE_BYTES: usize = 1024 * 1024;

/// Arguments of `caduceus devices scan`.
#[derive(Debug, Default)]
pub struct ScanArgs {
    /// A CycloneDX or SPDX SBOM, or a Cargo.lock.
    pub sbom: Option<PathBuf>,
    /// An inventory CSV (`id,manufacturer,model,version`, ...).
    pub inventory: Option<PathBuf>,
    /// Advisory files or directories (CSAF, CSAF VEX, OSV JSON/YAML).
    pub advisories: Vec<PathBuf>,
    /// CycloneDX VEX documents.
    pub vex: Vec<PathBuf>,
    pub epss: Option<PathBuf>,
    pub kev: Option<PathBuf>,
    /// `table`, `json` or `sarif`.
    pub format: String,
    /// `affected`: the scan "fails" (exit 3) when any finding is affected.
    pub fail_on: Option<String>,
}

/// `caduceus devices scan (--sbom F | --inventory F.csv) --advisories PATH...`: print the
/// findings; returns whether `--fail-on` was met (the binary then exits with 3).
pub fn scan(args: &ScanArgs) -> anyhow::Result<bool> {
    if !matches!(args.format.as_str(), "table" | "json" | "sarif") {
        bail!("--format is table, json or sarif, not `{}`", clip(&args.format));
    }
    if let Some(fail_on) = &args.fail_on
        && fail_on != "affected"
    {
        bail!("--fail-on takes `affected`, not `{}`", clip(fail_on));
    }
    let (subject, scanned) = match (&args.sbom, &args.inventory) {
        (Some(path), None) => (Subject::Sbom(read_sbom(path)?), path),
        (None, Some(path)) => (Subject::Inventory(read_inventory(path)?), path),
        _ => bail!("give exactly one of --sbom FILE and --inventory FILE.csv"),
    };
    if args.advisories.is_empty() {
        bail!("give at least one --advisories PATH (a file or a directory)");
    }
    let advisories = load_advisories(&args.advisories)?;
    let mut enrichment = Enrichment::new();
    for path in args.epss.iter().chain(args.kev.iter()) {
        let n = enrichment.load_file(path).with_context(|| format!("cannot load {}", path.display()))?;
        eprintln!("{}: {n} entries", path.display());
    }
    let mut vex = Vec::new();
    for path in &args.vex {
        let bytes = read_capped(path, MAX_SBOM_BYTES)?;
        let document =
            sbom::parse(&bytes).with_context(|| format!("cannot read the VEX document {}", path.display()))?;
        if document.vex.is_empty() {
            eprintln!("warning: {} holds no VEX statements", path.display());
        }
        vex.extend(document.vex);
    }
    let scanner = Scanner::new(advisories, enrichment, vex);
    let findings: Vec<Finding> = match &subject {
        Subject::Sbom(prepared) => scanner.scan_sbom(prepared),
        Subject::Inventory(devices) => devices.iter().flat_map(|d| scanner.scan_device(d, None)).collect(),
    };
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&report::to_json(&findings))?),
        "sarif" => {
            let log = report::to_sarif(&findings, &scanned.display().to_string());
            println!("{}", serde_json::to_string_pretty(&log)?);
        }
        _ => print!("{}", report::to_table(&findings)),
    }
    let affected = findings.iter().any(|f| f.status == FindingStatus::Affected);
    Ok(args.fail_on.is_some() && affected)
}

enum Subject {
    Sbom(PreparedSbom),
    Inventory(Vec<inventory::Device>),
}

/// An SBOM (CycloneDX, SPDX) or a Cargo.lock, ready for matching.
fn read_sbom(path: &Path) -> anyhow::Result<PreparedSbom> {
    let bytes = read_capped(path, MAX_SBOM_BYTES)?;
    let parsed = if lockfile::is_cargo_lock(&bytes) { lockfile::parse_cargo_lock(&bytes) } else { sbom::parse(&bytes) };
    let parsed = parsed.with_context(|| format!("cannot read the SBOM {}", path.display()))?;
    eprintln!("{}: {} components", path.display(), parsed.components.len());
    Ok(PreparedSbom::new(&parsed))
}

fn read_inventory(path: &Path) -> anyhow::Result<Vec<inventory::Device>> {
    let bytes = read_capped(path, inventory::MAX_CSV_BYTES)?;
    match inventory::read_csv(&bytes) {
        Ok(import) => {
            if !import.ignored_columns.is_empty() {
                eprintln!("{}: ignored columns: {}", path.display(), import.ignored_columns.join(", "));
            }
            eprintln!("{}: {} devices", path.display(), import.devices.len());
            Ok(import.devices)
        }
        Err(rows) => {
            for row in &rows {
                eprintln!("{}: line {}: {}", path.display(), row.line, row.reason);
            }
            bail!("cannot read the inventory {}: {} bad row(s), nothing scanned", path.display(), rows.len())
        }
    }
}

/// Load every advisory under the paths; a path that cannot be read at all is an error, a
/// file that does not parse (or whose hash fails) is a warning.
fn load_advisories(paths: &[PathBuf]) -> anyhow::Result<Vec<caduceus_devices::model::Advisory>> {
    let mut set = AdvisorySet::default();
    for path in paths {
        set.load(path).with_context(|| format!("cannot read the advisories at {}", path.display()))?;
    }
    for error in set.errors.iter().take(SHOWN_ERRORS) {
        eprintln!("warning: {}: {}", error.file, clip_long(&error.reason));
    }
    if set.errors.len() > SHOWN_ERRORS {
        eprintln!("warning: ... and {} more", set.errors.len() - SHOWN_ERRORS);
    }
    if !set.errors.is_empty() {
        eprintln!("warning: {} advisory file(s) could not be loaded", set.errors.len());
    }
    eprintln!(
        "advisories: {} loaded from {} file(s), {} hash(es) verified, {} superseded, {} error(s)",
        set.len(),
        set.files,
        set.hashes_verified,
        set.superseded,
        set.errors.len()
    );
    if set.is_empty() {
        bail!(
            "no advisory could be loaded from {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(set.into_advisories())
}

/// A client for the Caduceus API and the token read from `token_file` (`--insecure`
/// accepts a self-signed certificate, for a test install).
pub fn api_client(token_file: &Path, insecure: bool, timeout: Duration) -> anyhow::Result<(reqwest::Client, String)> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read the token file {}", token_file.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!("the token file {} is empty", token_file.display());
    }
    let http = reqwest::Client::builder().danger_accept_invalid_certs(insecure).timeout(timeout).build()?;
    Ok((http, token))
}

/// The API's error message from a `{"error": {"code", "message"}}` body (else the text).
async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
            let code = error.get("code").and_then(Value::as_str).unwrap_or_default();
            Some(if code.is_empty() { message.to_owned() } else { format!("{message} ({code})") })
        })
        .unwrap_or_else(|| text.chars().take(500).collect());
    format!("{status}: {message}")
}

/// `caduceus devices import --file inventory.csv --server URL --token-file F`.
pub async fn import_devices(file: &Path, server: &str, token_file: &Path, insecure: bool) -> anyhow::Result<()> {
    let bytes = read_capped(file, inventory::MAX_CSV_BYTES)?;
    let (http, token) = api_client(token_file, insecure, Duration::from_secs(120))?;
    let url = format!("{}/api/v1/devices/import", server.trim_end_matches('/'));
    let response = http
        .post(&url)
        .bearer_auth(&token)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        bail!("the server refused the import: {}", error_message(response).await);
    }
    let answer: Value = response.json().await.context("the server's answer is not JSON")?;
    let imported = answer.get("imported").and_then(Value::as_u64).unwrap_or(0);
    println!("imported {imported} device(s) from {}", file.display());
    let ignored: Vec<&str> = answer
        .get("ignored_columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !ignored.is_empty() {
        println!("ignored columns: {}", ignored.join(", "));
    }
    Ok(())
}

/// Arguments of `caduceus advisories import`.
#[derive(Debug, Default)]
pub struct AdvisoryImportArgs {
    /// Files and directories (recursed) of CSAF and OSV documents.
    pub paths: Vec<PathBuf>,
    /// A CSAF ROLIE feed: a file path or an http(s) URL.
    pub rolie: Option<String>,
    /// Armored OpenPGP public keys: every document must carry a signature they verify.
    pub keyring: Option<PathBuf>,
    pub server: String,
    pub token_file: PathBuf,
    pub insecure: bool,
}

/// One document ready to post.
struct Document {
    /// Where it came from, for messages.
    origin: String,
    /// The file name sent as `?name=`.
    name: String,
    bytes: Vec<u8>,
}

/// `caduceus advisories import PATH... [--rolie FEED] [--keyring FILE] --server URL
/// --token-file F`: verify each document's hash (and signature, with a keyring), post it,
/// and print how many were created, updated, unchanged, older or failed.
pub async fn import_advisories(args: &AdvisoryImportArgs) -> anyhow::Result<()> {
    if args.paths.is_empty() && args.rolie.is_none() {
        bail!("give advisory files or directories, or --rolie FEED");
    }
    let keyring = match &args.keyring {
        Some(path) => Some(read_capped(path, 16 * MAX_SIDE_FILE_BYTES).with_context(|| "cannot read the keyring")?),
        None => None,
    };
    let (http, token) = api_client(&args.token_file, args.insecure, Duration::from_secs(60))?;
    let url = format!("{}/api/v1/advisories", args.server.trim_end_matches('/'));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0usize;
    let mut files = Vec::new();
    for path in &args.paths {
        collect_files(path, &mut files, 0).with_context(|| format!("cannot read {}", path.display()))?;
    }
    files.sort();
    for file in &files {
        let document = local_document(file, keyring.as_deref());
        tally(submit(&http, &url, &token, document).await, &mut counts, &mut failed);
    }
    if let Some(feed) = &args.rolie {
        // Documents are fetched without the API token: it is for our server only.
        let fetcher = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let (base, bytes) = fetch(&fetcher, &Location::parse(feed, None)?, MAX_FEED_BYTES).await?;
        let entries = csaf::read_rolie_feed(&bytes).with_context(|| format!("cannot read the ROLIE feed {feed}"))?;
        eprintln!("{feed}: {} entries", entries.len());
        for entry in &entries {
            let document = feed_document(&fetcher, &base, entry, keyring.as_deref()).await;
            tally(submit(&http, &url, &token, document).await, &mut counts, &mut failed);
        }
    }
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let others: usize = counts.iter().filter(|(k, _)| !KNOWN_OUTCOMES.contains(&k.as_str())).map(|(_, n)| n).sum();
    println!(
        "advisories: {} created, {} updated, {} unchanged, {} older, {} failed{}",
        count("created"),
        count("updated"),
        count("unchanged"),
        count("older"),
        failed,
        if others > 0 { format!(", {others} other") } else { String::new() }
    );
    if failed > 0 {
        bail!("{failed} advisory document(s) failed");
    }
    Ok(())
}

/// Post a document that was read and verified; an error names where it came from.
async fn submit(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    document: anyhow::Result<Document>,
) -> anyhow::Result<String> {
    let document = document?;
    post_advisory(http, url, token, &document).await.with_context(|| document.origin.clone())
}

fn tally(result: anyhow::Result<String>, counts: &mut BTreeMap<String, usize>, failed: &mut usize) {
    match result {
        Ok(outcome) => *counts.entry(outcome).or_default() += 1,
        Err(e) => {
            *failed += 1;
            eprintln!("failed: {e:#}");
        }
    }
}

const KNOWN_OUTCOMES: [&str; 4] = ["created", "updated", "unchanged", "older"];

/// POST one document; returns the server's `outcome`.
async fn post_advisory(http: &reqwest::Client, url: &str, token: &str, document: &Document) -> anyhow::Result<String> {
    let yaml = document.name.ends_with(".yaml") || document.name.ends_with(".yml");
    let response = http
        .post(url)
        .query(&[("name", document.name.as_str())])
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, if yaml { "application/yaml" } else { "application/json" })
        .body(document.bytes.clone())
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        bail!("{}", error_message(response).await);
    }
    let answer: Value = response.json().await.context("the server's answer is not JSON")?;
    let outcome = answer.get("outcome").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
    let revision = answer.get("revision").and_then(Value::as_str).unwrap_or("?");
    eprintln!("{}: {id} revision {revision}: {outcome}", document.origin);
    Ok(outcome)
}

/// Is this a document to import (not a feed, index or hash/signature file)?
fn is_document_name(name: &str) -> bool {
    (name.ends_with(".json") || name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.starts_with('.')
        && !name.contains("feed")
        && !name.contains("provider-metadata")
        && !name.contains("aggregator")
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, depth: usize) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect_files(&entry.path(), out, depth + 1)?;
        } else if is_document_name(&name) {
            out.push(entry.path());
        }
        if out.len() > caduceus_devices::scan::MAX_ADVISORY_FILES {
            bail!("more than {} files", caduceus_devices::scan::MAX_ADVISORY_FILES);
        }
    }
    Ok(())
}

/// A local document with its `.sha512` (when present) and, with a keyring, its `.asc`
/// checked.
fn local_document(file: &Path, keyring: Option<&[u8]>) -> anyhow::Result<Document> {
    let origin = file.display().to_string();
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let check = || -> anyhow::Result<Vec<u8>> {
        let bytes = read_capped(file, MAX_ADVISORY_BYTES)?;
        let sibling = |ext: &str| file.with_file_name(format!("{name}.{ext}"));
        if let Ok(hash) = read_capped(&sibling("sha512"), MAX_SIDE_FILE_BYTES) {
            csaf::verify_sha512(&bytes, &hash)?;
        }
        if let Some(keyring) = keyring {
            let asc = read_capped(&sibling("asc"), MAX_SIDE_FILE_BYTES)
                .map_err(|_| anyhow::anyhow!("--keyring was given but there is no signature {name}.asc"))?;
            csaf::verify_openpgp(&bytes, &asc, keyring)?;
        }
        Ok(bytes)
    };
    check().map(|bytes| Document { origin: origin.clone(), name, bytes }).with_context(|| origin)
}

/// Where a feed or a document is: a local file or an http(s) URL.
#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Url(url::Url),
}

impl Location {
    /// `text` as given on the command line or in a feed; relative references are taken
    /// against `base` (the feed's own location).
    fn parse(text: &str, base: Option<&Location>) -> anyhow::Result<Location> {
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Location::Url(url::Url::parse(text).with_context(|| format!("bad URL {}", clip(text)))?));
        }
        if text.starts_with("file:") {
            let url = url::Url::parse(text).with_context(|| format!("bad URL {}", clip(text)))?;
            let path = url.to_file_path().map_err(|()| anyhow::anyhow!("not a local file URL: {}", clip(text)))?;
            return Ok(Location::File(path));
        }
        if text.contains("://") {
            bail!("only http(s) and file URLs are fetched, not {}", clip(text));
        }
        Ok(match base {
            Some(Location::Url(url)) => {
                Location::Url(url.join(text).with_context(|| format!("bad reference {}", clip(text)))?)
            }
            Some(Location::File(path)) if Path::new(text).is_relative() => {
                Location::File(path.parent().unwrap_or(Path::new(".")).join(text))
            }
            _ => Location::File(PathBuf::from(text)),
        })
    }

    fn name(&self) -> String {
        match self {
            Location::File(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            Location::Url(url) => url
                .path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "advisory.json".into()),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Url(url) => write!(f, "{url}"),
        }
    }
}

/// Read a location, refusing more than `limit` bytes.
async fn fetch(http: &reqwest::Client, location: &Location, limit: usize) -> anyhow::Result<(Location, Vec<u8>)> {
    match location {
        Location::File(path) => Ok((location.clone(), read_capped(path, limit)?)),
        Location::Url(url) => {
            let mut response = http.get(url.clone()).send().await.with_context(|| format!("cannot fetch {url}"))?;
            if !response.status().is_success() {
                bail!("{url}: {}", response.status());
            }
            if response.content_length().is_some_and(|n| n > limit as u64) {
                bail!("{url} is over the limit of {limit} bytes");
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.with_context(|| format!("cannot read {url}"))? {
                if bytes.len() + chunk.len() > limit {
                    bail!("{url} is over the limit of {limit} bytes");
                }
                bytes.extend_from_slice(&chunk);
            }
            // Later relative references resolve against where the redirects ended.
            Ok((Location::Url(response.url().clone()), bytes))
        }
    }
}

/// A document a ROLIE feed lists, fetched with its hash (verified) and, with a keyring,
/// its signature (verified).
async fn feed_document(
    http: &reqwest::Client,
    base: &Location,
    entry: &csaf::FeedEntry,
    keyring: Option<&[u8]>,
) -> anyhow::Result<Document> {
    let location =
        Location::parse(&entry.url, Some(base)).with_context(|| format!("feed entry {}", clip(&entry.id)))?;
    let origin = location.to_string();
    let result = async {
        let (_, bytes) = fetch(http, &location, MAX_ADVISORY_BYTES).await?;
        if let Some(hash_url) = &entry.hash_url {
            let (_, hash) = fetch(http, &Location::parse(hash_url, Some(base))?, MAX_SIDE_FILE_BYTES).await?;
            if hash_url.ends_with(".sha256") {
                csaf::verify_sha256(&bytes, &hash)?;
            } else {
                csaf::verify_sha512(&bytes, &hash)?;
            }
        }
        if let Some(keyring) = keyring {
            let Some(signature_url) = &entry.signature_url else {
                bail!("--keyring was given but the feed lists no signature for this document");
            };
            let (_, asc) = fetch(http, &Location::parse(signature_url, Some(base))?, MAX_SIDE_FILE_BYTES).await?;
            csaf::verify_openpgp(&bytes, &asc, keyring)?;
        }
        Ok::<_, anyhow::Error>(bytes)
    }
    .await
    .with_context(|| origin.clone())?;
    Ok(Document { origin, name: location.name(), bytes: result })
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

fn clip_long(text: &str) -> String {
    text.chars().take(300).collect()
}

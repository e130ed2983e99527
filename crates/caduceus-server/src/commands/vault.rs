//! `caduceus vault ...`: import FHIR data and rotate the key-encryption key.
//!
//! Import works two ways. Offline (`--data-dir`), straight into a data
//! directory (created if new) through the same vault service the server
//! uses, so every resource is sealed, indexed and its import audited. Online
//! (`--server URL --token T`), through the FHIR API, so the server's policy
//! applies to the token's account.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use caduceus_core::SystemClock;
use caduceus_core::config::Config;
use caduceus_vault::bundle::{self, ImportUnit, UnitContents};
use caduceus_vault::service::{Requester, Vault};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::platform::{Platform, ServerError};

/// Where an import goes.
#[derive(Debug, Clone)]
pub enum ImportTarget {
    DataDir(PathBuf),
    Config(PathBuf),
    Server { url: String, token: String, accept_invalid_certs: bool },
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ImportReport {
    pub files: usize,
    pub resources: u64,
    pub by_type: BTreeMap<String, u64>,
    pub unresolved_conditional_references: u64,
    pub seconds: f64,
}

fn fail(message: impl Into<String>) -> ServerError {
    ServerError::Vault(message.into())
}

/// `caduceus vault import FILE... (--data-dir DIR | --config FILE | --server URL --token T)`
pub async fn import(files: &[PathBuf], target: ImportTarget, json_output: bool) -> Result<ImportReport, ServerError> {
    if files.is_empty() {
        return Err(fail("give at least one file to import"));
    }
    let started = Instant::now();
    let plan = bundle::import_plan(files).map_err(|e| fail(e.to_string()))?;
    let total: u64 = plan.iter().map(|u| u.resources() as u64).sum();
    let bar = if json_output { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} resources ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut report = match target {
        ImportTarget::DataDir(dir) => {
            let config = Config::with_data_dir(dir);
            import_offline(config, plan, &bar).await?
        }
        ImportTarget::Config(path) => {
            let config = crate::config::load(&path)?;
            import_offline(config, plan, &bar).await?
        }
        ImportTarget::Server { url, token, accept_invalid_certs } => {
            import_online(&url, &token, accept_invalid_certs, plan, &bar).await?
        }
    };
    bar.finish_and_clear();
    report.files = files.len();
    report.seconds = started.elapsed().as_secs_f64();
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!("imported {} resources from {} files in {:.1} s", report.resources, report.files, report.seconds);
        for (t, n) in &report.by_type {
            println!("  {t:<24} {n}");
        }
        if report.unresolved_conditional_references > 0 {
            println!(
                "  {} conditional references matched no resource and were kept as written",
                report.unresolved_conditional_references
            );
        }
    }
    Ok(report)
}

async fn import_offline(config: Config, plan: Vec<ImportUnit>, bar: &ProgressBar) -> Result<ImportReport, ServerError> {
    let platform = Platform::start(config, Arc::new(SystemClock)).await?;
    let result = async {
        let vault = crate::vault::open(&platform).await?;
        let who = Requester::system("vault-import");
        let mut report = ImportReport::default();
        for unit in plan {
            import_unit(&vault, &who, unit, &mut report, bar).await?;
        }
        Ok::<_, ServerError>(report)
    }
    .await;
    platform.shutdown().await;
    result
}

async fn import_unit(
    vault: &Vault,
    who: &Requester,
    unit: ImportUnit,
    report: &mut ImportReport,
    bar: &ProgressBar,
) -> Result<(), ServerError> {
    let name = file_name(&unit.path);
    bar.set_message(name.clone());
    let contents = unit.open().map_err(|e| fail(format!("{name}: {e}")))?;
    match contents {
        UnitContents::Bundle(bundle) => {
            let n = bundle.entries.len() as u64;
            let counts = vault.import_bundle(who, bundle).await.map_err(|e| fail(format!("{name}: {e}")))?;
            report.unresolved_conditional_references += counts.unresolved;
            for (t, k) in counts.by_type {
                *report.by_type.entry(t).or_default() += k;
                report.resources += k;
            }
            bar.inc(n);
        }
        UnitContents::Ndjson(entries) => {
            // Bulk data keeps its ids: each line is a PUT; chunks of 500
            // are one transaction each.
            let mut chunk = Vec::with_capacity(500);
            let mut entries = entries.peekable();
            while let Some(entry) = entries.next() {
                let entry = entry.map_err(|e| fail(format!("{name}: {e}")))?;
                chunk.push(entry);
                if chunk.len() == 500 || entries.peek().is_none() {
                    let bundle =
                        bundle::Bundle { kind: bundle::BundleKind::Transaction, entries: std::mem::take(&mut chunk) };
                    let n = bundle.entries.len() as u64;
                    let counts = vault.import_bundle(who, bundle).await.map_err(|e| fail(format!("{name}: {e}")))?;
                    for (t, k) in counts.by_type {
                        *report.by_type.entry(t).or_default() += k;
                        report.resources += k;
                    }
                    bar.inc(n);
                }
            }
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

async fn import_online(
    url: &str,
    token: &str,
    accept_invalid_certs: bool,
    plan: Vec<ImportUnit>,
    bar: &ProgressBar,
) -> Result<ImportReport, ServerError> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(accept_invalid_certs)
        .build()
        .map_err(|e| fail(format!("http client: {e}")))?;
    let endpoint = format!("{}/fhir", url.trim_end_matches('/'));
    let mut report = ImportReport::default();
    for unit in plan {
        let name = file_name(&unit.path);
        let n = unit.resources() as u64;
        let body: Value = match unit.open().map_err(|e| fail(format!("{name}: {e}")))? {
            // The file as written: the server parses and resolves it itself.
            UnitContents::Bundle(_) => {
                let bytes = std::fs::read(&unit.path).map_err(|e| fail(format!("{name}: {e}")))?;
                serde_json::from_slice(&bytes).map_err(|e| fail(format!("{name}: {e}")))?
            }
            UnitContents::Ndjson(entries) => {
                let mut list = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| fail(format!("{name}: {e}")))?;
                    let url = format!("{}/{}", entry.resource_type, entry.id.clone().unwrap_or_default());
                    list.push(json!({"resource": entry.resource, "request": {"method": "PUT", "url": url}}));
                }
                json!({"resourceType": "Bundle", "type": "transaction", "entry": list})
            }
        };
        let path = unit.path.clone();
        bar.set_message(name.clone());
        let response = client
            .post(&endpoint)
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .json(&body)
            .send()
            .await
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = answer.pointer("/issue/0/diagnostics").and_then(Value::as_str).unwrap_or("no detail");
            return Err(fail(format!("{}: the server answered {status}: {why}", path.display())));
        }
        // A batch answers per entry: every refusal is reported, none is lost.
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for entry in answer.get("entry").and_then(Value::as_array).into_iter().flatten() {
            let location = entry.pointer("/response/location").and_then(Value::as_str).unwrap_or_default();
            let status = entry.pointer("/response/status").and_then(Value::as_str).unwrap_or("no status");
            match (status.starts_with('2'), location.split('/').next().filter(|t| !t.is_empty())) {
                (true, Some(t)) => {
                    *report.by_type.entry(t.to_owned()).or_default() += 1;
                    report.resources += 1;
                }
                _ => {
                    let why = entry
                        .pointer("/response/outcome/issue/0/diagnostics")
                        .and_then(Value::as_str)
                        .map(|d| d.chars().take(160).collect::<String>())
                        .unwrap_or_default();
                    *refused.entry(format!("{status} {why}")).or_default() += 1;
                }
            }
        }
        bar.inc(n);
        if !refused.is_empty() {
            let total: u64 = refused.values().sum();
            let detail: Vec<String> = refused.iter().map(|(why, k)| format!("{k} × {why}")).collect();
            return Err(fail(format!(
                "{name}: the server refused {total} entries ({} stored before): {}",
                report.resources,
                detail.join("; ")
            )));
        }
    }
    Ok(report)
}

/// `caduceus vault rotate-kek (--data-dir DIR | --config FILE) [--retire-old]`
pub async fn rotate_kek(
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    retire_old: bool,
) -> Result<(), ServerError> {
    let config = match (data_dir, config) {
        (Some(dir), _) => Config::with_data_dir(dir),
        (_, Some(path)) => crate::config::load(&path)?,
        _ => return Err(fail("give --data-dir or --config")),
    };
    let platform = Platform::start(config, Arc::new(SystemClock)).await?;
    let result = async {
        let vault = crate::vault::open(&platform).await?;
        let (id, count) = vault.keyring().rotate(retire_old, platform.clock.now()).await.map_err(|e| fail(e.to_string()))?;
        println!("new key-encryption key {id}; {count} data keys re-wrapped");
        if retire_old {
            println!("older key-encryption key files were removed: backups taken before now can no longer be opened");
        } else {
            println!(
                "older key-encryption key files are kept in {} for backups taken before now; remove them with --retire-old once those backups have expired",
                platform.config.vault_key_dir().display()
            );
        }
        Ok::<_, ServerError>(())
    }
    .await;
    platform.shutdown().await;
    result
}

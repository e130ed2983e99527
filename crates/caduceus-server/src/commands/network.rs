//! `caduceus detect train|evaluate --model`, `caduceus network flows`,
//! `caduceus sensor files` and `caduceus simulate ransomware`: the flow
//! models, the network inputs and the ransomware sensor, without a server
//! (the sensor reports to one).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use caduceus_core::{Actor, ActorKind, Payload, Severity};
use caduceus_ml::{Dataset, LoadOptions, Model, ModelKind, TrainOptions};
use caduceus_sensor::{Report, Response, Sensor, SensorConfig, Verdict};
use serde_json::json;

/// How to read a labelled CSV (`--label-column`, `--normal-value`,
/// `--drop-columns`).
#[derive(Clone, Debug, Default)]
pub struct ColumnArgs {
    pub label_column: Option<String>,
    pub normal_values: Vec<String>,
    pub drop_columns: Vec<String>,
}

impl ColumnArgs {
    fn load_options(&self) -> LoadOptions {
        let mut opts = LoadOptions { label_column: self.label_column.clone(), ..LoadOptions::default() };
        if !self.normal_values.is_empty() {
            opts.normal_values = self.normal_values.clone();
        }
        if !self.drop_columns.is_empty() {
            opts.drop_columns = Some(self.drop_columns.iter().map(|c| c.trim().to_owned()).collect());
        }
        opts
    }
}

fn load_dataset(path: &Path, columns: &ColumnArgs) -> anyhow::Result<Dataset> {
    Dataset::load(path, &columns.load_options()).with_context(|| format!("cannot read the dataset {}", path.display()))
}

/// `caduceus detect train --dataset FILE --model OUT [--kind gbt|forest|best|online]`; `best`
/// trains `gbt` and `forest` and keeps the one with the higher validation F1.
pub fn train(dataset: &Path, out: &Path, kind: &str, columns: &ColumnArgs, json: bool) -> anyhow::Result<()> {
    let kind = match kind {
        "gbt" => Some(ModelKind::Gbt),
        "forest" => Some(ModelKind::Forest),
        "best" => None,
        "online" => Some(ModelKind::Online),
        other => bail!(
            "--kind is `gbt`, `forest`, `best` or `online`, not `{other}` (ONNX models are trained elsewhere \
             and loaded as they are)"
        ),
    };
    let ds = load_dataset(dataset, columns)?;
    eprintln!("{} rows, {} features, {} attacks", ds.rows(), ds.feature_names().len(), ds.attacks());
    let started = std::time::Instant::now();
    let opts = TrainOptions::default();
    let (model, report, candidates) = match kind {
        Some(kind) => {
            let (model, report) = caduceus_ml::train(&ds, kind, &opts)?;
            (model, report, Vec::new())
        }
        None => caduceus_ml::train_best(&ds, &opts)?,
    };
    let kind = model.kind();
    model.save(out).with_context(|| format!("cannot write the model to {}", out.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("model".into(), json!(out.display().to_string()));
            obj.insert("kind".into(), json!(kind.as_str()));
            obj.insert("train_seconds".into(), json!(seconds));
            if !candidates.is_empty() {
                obj.insert("candidates".into(), serde_json::to_value(&candidates)?);
            }
        }
        println!("{value}");
    } else {
        println!("model written to {} ({} model, trained in {seconds:.1} s)", out.display(), kind.as_str());
        for c in &candidates {
            println!("  {}: validation F1 {:.4}", c.model_kind, c.f1);
        }
        println!("validation slice of the training rows (the test split was not used):");
        println!("{}", report.to_table());
        println!("evaluate on the held-out test split with:");
        println!("  caduceus detect evaluate --model {} --dataset {}", out.display(), dataset.display());
    }
    Ok(())
}

/// `caduceus detect evaluate --model M --dataset FILE [--json]`.
pub fn evaluate(
    model: &Path,
    dataset: &Path,
    columns: &ColumnArgs,
    threshold: Option<f64>,
    json: bool,
) -> anyhow::Result<()> {
    let model = Model::load(model).with_context(|| format!("cannot load the model {}", model.display()))?;
    if threshold.is_some() {
        bail!(
            "--threshold applies to record-access logs; a model carries its own threshold, chosen on its validation rows"
        );
    }
    let ds = load_dataset(dataset, columns)?;
    let report = caduceus_ml::evaluate(&model, &ds)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.to_table());
    }
    Ok(())
}

/// `caduceus network flows --format F --input FILE [--model M] [--limit N]`:
/// every flow as a spine event's payload on one line.
pub fn flows(format: &str, input: &Path, model: Option<&Path>, limit: Option<usize>) -> anyhow::Result<()> {
    use caduceus_net::Flow;
    let model = model.map(Model::load).transpose().context("cannot load the model")?;
    let file = std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let reader = std::io::BufReader::new(file);
    let mut flows: Box<dyn Iterator<Item = anyhow::Result<Flow>>> = match format {
        "zeek" => Box::new(caduceus_net::zeek::ZeekReader::new(reader).map(|r| r.map_err(anyhow::Error::from))),
        "eve" => Box::new(caduceus_net::eve::EveReader::new(reader).filter_map(|r| match r {
            Ok(caduceus_net::eve::EveRecord::Flow(flow)) => Some(Ok(flow)),
            Ok(caduceus_net::eve::EveRecord::Alert(_)) => None,
            Err(e) => Some(Err(anyhow::Error::from(e))),
        })),
        "csv" => Box::new(
            caduceus_net::flowcsv::FlowCsvReader::new(reader).map(|r| r.map(|f| f.flow).map_err(anyhow::Error::from)),
        ),
        "pcap" => {
            let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
            let summary = caduceus_net::pcap::read_pcap(bytes.as_slice(), &caduceus_net::pcap::PcapOptions::default())?;
            eprintln!("{} packets, {} skipped, {} flows", summary.packets, summary.skipped, summary.flows.len());
            Box::new(summary.flows.into_iter().map(Ok))
        }
        other => bail!("--format is zeek, eve, pcap or csv, not `{other}`"),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut printed, mut bad) = (0usize, 0usize);
    for item in flows.by_ref() {
        if limit.is_some_and(|l| printed >= l) {
            break;
        }
        let flow = match item {
            Ok(flow) => flow,
            Err(e) => {
                bad += 1;
                if bad <= 10 {
                    eprintln!("skipped: {e}");
                }
                continue;
            }
        };
        let Payload::LogRecord { product, service, category, mut fields } = flow.to_payload(format) else {
            continue;
        };
        if let Some(model) = &model {
            let score = crate::network::score_flow(model, &flow);
            fields.insert("score".into(), json!(score));
        }
        let line = json!({"product": product, "service": service, "category": category, "fields": fields});
        writeln!(out, "{line}")?;
        printed += 1;
    }
    if bad > 0 {
        eprintln!("{bad} records skipped");
    }
    Ok(())
}

/// Arguments of `caduceus sensor files`.
#[derive(Debug)]
pub struct SensorArgs {
    pub watch: Vec<PathBuf>,
    pub server: Option<String>,
    pub token_file: Option<PathBuf>,
    pub insecure: bool,
    pub canaries: bool,
    pub no_block: bool,
    pub response: String,
    pub exit_on_alert: bool,
    pub json: bool,
}

/// `caduceus sensor files --watch DIR... [--server URL --token-file F]`:
/// run the ransomware sensor until interrupted, posting each report to the
/// server as a `file_event` log record (the built-in Sigma rules raise the
/// alert there). The response runs here, at once, whatever the server says.
pub async fn sensor_files(args: SensorArgs) -> anyhow::Result<()> {
    for dir in &args.watch {
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
    }
    let response: Response = args.response.parse().map_err(|e| anyhow::anyhow!("--response: {e}"))?;
    let client = match (&args.server, &args.token_file) {
        (Some(url), Some(token_file)) => {
            let token = std::fs::read_to_string(token_file)
                .with_context(|| format!("cannot read the token file {}", token_file.display()))?
                .trim()
                .to_owned();
            let http = reqwest::Client::builder()
                .danger_accept_invalid_certs(args.insecure)
                .timeout(Duration::from_secs(10))
                .build()?;
            Some((http, format!("{}/api/v1/events", url.trim_end_matches('/')), token))
        }
        _ => None,
    };
    let mut config = SensorConfig::new(args.watch.clone());
    config.canaries = args.canaries;
    config.block_judged = !args.no_block;
    // Canaries an unclean stop left behind are removed at the next start.
    let roots = args.watch.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(roots.as_bytes()).get(..8).unwrap_or_default())
    };
    config.canary_manifest = Some(std::env::temp_dir().join(format!("caduceus-sensor-canaries-{digest}.json")));
    config.response = response;
    let host = hostname();
    // Reports leave the sensor thread through a bounded channel; when the
    // server is slow the newest heartbeats are the ones dropped, never a
    // verdict (those wait).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Report>(1024);
    let handle = Sensor::start(config, move |report: &Report| {
        let urgent = report.verdict != Verdict::Heartbeat;
        if urgent {
            let _ = tx.blocking_send(report.clone());
        } else {
            let _ = tx.try_send(report.clone());
        }
    })?;
    eprintln!(
        "watching {} ({}{}{}), response: {}",
        args.watch.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        handle.mode(),
        if handle.gate_active() { ", open gate: judged processes are refused their opens" } else { "" },
        if args.canaries { format!(", {} canaries", handle.canary_paths().len()) } else { String::new() },
        args.response
    );
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut result = Ok(());
    loop {
        let report = tokio::select! {
            _ = &mut stop => break,
            report = rx.recv() => match report { Some(r) => r, None => break },
        };
        if args.json {
            println!("{}", report.to_json());
        } else if report.verdict != Verdict::Heartbeat {
            println!(
                "{}: score {:.2}, {} ({})",
                report.verdict.as_str(),
                report.score,
                report.reasons.join(", "),
                report.response.join("; ")
            );
        }
        if let Some((http, url, token)) = &client
            && let Err(e) = post_report(http, url, token, &host, &report).await
        {
            eprintln!("could not report to the server: {e}");
        }
        if args.exit_on_alert && report.verdict == Verdict::Ransomware {
            result = Ok(());
            break;
        }
    }
    let stats = tokio::task::spawn_blocking(move || handle.stop()).await?;
    eprintln!("sensor stopped: {stats:?}");
    result
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "sensor".into())
}

async fn post_report(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    host: &str,
    report: &Report,
) -> anyhow::Result<()> {
    let severity = match report.verdict {
        Verdict::Ransomware => Severity::Critical,
        Verdict::Suspicious => Severity::Medium,
        Verdict::Heartbeat => Severity::Informational,
    };
    let payload = Payload::LogRecord {
        product: Some("caduceus".into()),
        service: Some("file-sensor".into()),
        category: Some("file_event".into()),
        fields: report.to_fields(),
    };
    let body = json!({
        "severity_id": severity,
        "actor": Actor { kind: ActorKind::Device, uid: host.chars().take(256).collect() },
        "target": null,
        "message": format!("file sensor: {}", report.verdict.as_str()),
        "payload": payload,
    });
    let response = http.post(url).bearer_auth(token).json(&body).send().await?;
    if !response.status().is_success() {
        let status = response.status();
        let text: String = response.text().await.unwrap_or_default().chars().take(500).collect();
        bail!("{status}: {text}");
    }
    Ok(())
}

/// Arguments of `caduceus simulate ransomware`.
#[derive(Debug)]
pub struct RansomwareArgs {
    pub dir: PathBuf,
    pub style: String,
    pub benign: Option<String>,
    pub files: usize,
    pub interval_secs: Option<f64>,
    pub seed: u64,
}

/// `caduceus simulate ransomware --dir D [--style S | --benign W]`.
pub fn simulate_ransomware(args: &RansomwareArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if !caduceus_sensor::simulate::is_corpus(dir) {
        let bytes = caduceus_sensor::make_corpus(dir, args.files, args.seed)?;
        eprintln!("corpus of {} documents ({} KiB) written to {}", args.files, bytes / 1024, dir.display());
    }
    if let Some(workload) = &args.benign {
        let workload: caduceus_sensor::BenignWorkload =
            workload.parse().map_err(|e| anyhow::anyhow!("--benign: {e}"))?;
        let outcome = caduceus_sensor::run_benign(dir, workload, args.seed)?;
        println!(
            "{}: {} files written, {} renamed, {} deleted, {} KiB in {:.2} s",
            workload.as_str(),
            outcome.files_written,
            outcome.files_renamed,
            outcome.files_deleted,
            outcome.bytes_written / 1024,
            outcome.elapsed.as_secs_f64()
        );
        return Ok(());
    }
    let style: caduceus_sensor::Style = args.style.parse().map_err(|e| anyhow::anyhow!("--style: {e}"))?;
    let mut opts = caduceus_sensor::SimOptions { seed: args.seed, ..Default::default() };
    if let Some(secs) = args.interval_secs {
        if !(0.0..=3600.0).contains(&secs) {
            bail!("--interval-secs is between 0 and 3600");
        }
        opts.slow_interval = Duration::from_secs_f64(secs);
    }
    // Stopped by a kill (the sensor's response) like real ransomware; the
    // flag is for in-process measurement.
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = caduceus_sensor::simulate_ransomware(dir, style, &opts, &stop)?;
    println!(
        "{}: {} of {} files encrypted, {} KiB in {:.2} s{}",
        style.as_str(),
        outcome.files_done,
        outcome.files_total,
        outcome.bytes_written / 1024,
        outcome.elapsed.as_secs_f64(),
        if outcome.denied > 0 {
            format!("; {} files could not be opened (refused)", outcome.denied)
        } else {
            String::new()
        }
    );
    Ok(())
}

//! Caduceus benchmarks. `ledger` prints one JSON object on stdout;
//! `identity` prints a table, or one JSON object with `--json`; progress
//! goes to stderr.
//!
//! ```text
//! cargo run --release -p caduceus-bench -- ledger             # full, a few minutes
//! cargo run --release -p caduceus-bench -- ledger --quick     # under a minute
//! cargo run --release -p caduceus-bench -- identity           # full, about a minute
//! cargo run --release -p caduceus-bench -- identity --quick   # a few seconds (CI smoke)
//! cargo run --release -p caduceus-bench -- vault              # full, a few minutes
//! cargo run --release -p caduceus-bench -- vault --quick      # about a minute
//! cargo run --release -p caduceus-bench -- detect             # full, about a minute
//! cargo run --release -p caduceus-bench -- detect --quick     # about 15 seconds
//! cargo run --release -p caduceus-bench -- ml                 # full, several minutes
//! cargo run --release -p caduceus-bench -- ml --quick         # a few minutes
//! cargo run --release -p caduceus-bench -- devices            # full, about a minute
//! cargo run --release -p caduceus-bench -- devices --quick    # 1,000 devices
//! ```
//!
//! `devices` matches 10,000 devices (1,000,000 SBOM components) against every
//! shared CSAF and OSV advisory on 2 threads, against the target of issue 8;
//! it prints one JSON object and its module (`devices.rs`) says how.
//!
//! `ml` measures the flow models (ours beside scikit-learn and River on the
//! same split), their scoring speed and the ransomware sensor against the
//! targets of issue 7; it prints one JSON object and its module (`ml.rs`)
//! says how.
//!
//! `detect` measures Sigma detection on one core with the whole SigmaHQ
//! corpus loaded, through our engine and the full pipeline, against the
//! naive `sigma-rust` baseline in the same run, plus the record-access
//! analytics and memory, against the targets of issue 6; it prints one
//! JSON object and its module (`detect.rs`) says how.
//!
//! `vault` measures FHIR creates and reads with encryption, audit and
//! ledger sealing on and off, reads over HTTPS, and a Synthea import,
//! against the targets of issue 5; its module (`vault.rs`) says how.
//!
//! `identity` measures argon2id, whole sign-ins and token validation
//! against the targets of issue 4; its module (`identity.rs`) says how.
//!
//! `ledger` measures the durable ledger (`caduceus-ledger`) on real disk
//! (fresh directories under `/var/tmp`, removed afterwards) against the
//! in-memory `ct-merkle` crate, in one run. Keys of the report:
//!
//! - `quick`: whether the shortened run was asked for; `machine`: cores
//!   (`available_parallelism`), OS, architecture, and the disk's own
//!   `fdatasync` latency (64-byte write, then `fdatasync_*` timed), which
//!   bounds every durable figure.
//! - `durable_appends_per_s`: keyed by the number of concurrent tokio tasks
//!   ("1", "16", "256"), each looping `append(seal).await` for a fixed time
//!   (`point_s`) on a fresh ledger; acknowledged (fdatasync'd) appends over
//!   the time until the last writer returned.
//! - `durable_batched_appends_per_s`: the same at 256 writers, each appending
//!   batches of `batch_size` (1000, as immudb publishes) with `append_batch`.
//! - `ack_latency_p50_ms`, `ack_latency_p99_ms`: one writer alone, each
//!   `append(..).await` timed (`ack_latency_samples` of them, after a few
//!   untimed ones); `ack_latency_mean_ms` is their mean.
//! - `log_size`: leaves of the ledger built for the proof figures, with
//!   `append_batch` of `build_batch` seals (a few batches in flight);
//!   `build_appends_per_s` is that bulk build's rate.
//! - `inclusion_proof_us`, `consistency_proof_us`: mean time to generate one
//!   proof (not verify it) for a random index and tree size (random sizes
//!   `first < second` for consistency), over `proofs_timed` proofs each,
//!   after an untimed round of as many other random proofs (the first
//!   round after a build is slower: caches and page-table walks are cold).
//!   `*_at_log_size_us`: the same with the second size fixed at `log_size`,
//!   which is all the peer can do. `proofs_verified` of them were checked
//!   with `merkle::verify_*` (the run aborts on a failure).
//! - `verify_1m_s`: seconds for `caduceus_ledger::verify::verify_dir` on a
//!   closed 1,000,000-leaf ledger (records, every stored node, tree state).
//! - `peer`: `ct-merkle` in memory, not durable: `appends_per_s` keyed like
//!   ours ("1" is a plain loop, more writers share a tokio `Mutex`),
//!   `tree_size`, `build_appends_per_s` for building that tree from the
//!   ledger's own entries one push at a time, and proof generation times for
//!   random indexes against the whole tree (also after a warm-up round). Its proofs are checked against
//!   the ledger's roots and proofs (`proofs_verified`).

#![recursion_limit = "256"]

mod detect;
mod devices;
mod durable;
mod identity;
mod ml;
mod offline;
mod peer;
mod proofs;
mod util;
mod vault;

use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "caduceus-bench", about = "Caduceus benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The durable ledger against ct-merkle.
    Ledger {
        /// A shortened run (under a minute): shorter points, a 1M-leaf log.
        #[arg(long)]
        quick: bool,
    },
    /// Identity: argon2id, password and TOTP sign-ins, token validation.
    Identity {
        /// A shortened run (a few seconds), for CI.
        #[arg(long)]
        quick: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The patient-record vault: creates, reads, protection's cost, import.
    Vault {
        /// A shortened run (about a minute): fewer creates, 2 s read points,
        /// 5 Synthea bundles.
        #[arg(long)]
        quick: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Sigma detection through the SigmaHQ corpus against sigma-rust; prints
    /// one JSON object.
    Detect {
        /// A shortened run: 5,000 events, 0.5 s points, 100 naive events.
        #[arg(long)]
        quick: bool,
        /// A rule directory (repeatable); default: every `rules*` directory
        /// of the SigmaHQ checkout in the shared data.
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<std::path::PathBuf>,
        /// Distinct events generated (default 20,000; 5,000 with --quick).
        #[arg(long)]
        pool: Option<usize>,
        /// Seed of the event mix.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Flow models on UNSW-NB15, CIC-IDS2017 and TON_IoT beside
    /// scikit-learn's RandomForest and River's HalfSpaceTrees, scoring
    /// speed, and the ransomware sensor; prints one JSON object.
    Ml {
        /// A shortened run: one TON_IoT file, 3 trials, 0.5 s speed points.
        #[arg(long)]
        quick: bool,
        /// Do not make the Python virtualenv nor run the peers.
        #[arg(long)]
        skip_peers: bool,
    },
    /// Device inventory matching: 10,000 devices with 1,000,000 SBOM
    /// components against every shared CSAF and OSV advisory; prints one
    /// JSON object.
    Devices {
        /// A shortened run: 1,000 devices.
        #[arg(long)]
        quick: bool,
    },
}

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Duration of each throughput point.
    pub point: Duration,
    pub writer_counts: [usize; 3],
    /// Seals per `append_batch` in the batched throughput point.
    pub batch_size: usize,
    pub batched_writers: usize,
    pub latency_samples: usize,
    /// Leaves of the ledger (and peer tree) the proofs are taken from.
    pub log_size: u64,
    /// Seals per `append_batch` when building that ledger.
    pub build_batch: u64,
    /// Proofs timed per kind.
    pub proofs: usize,
    /// Every `verify_every`-th timed proof is verified.
    pub verify_every: usize,
    /// Leaves of the ledger verified offline.
    pub verify_size: u64,
    pub seed: u64,
}

impl Plan {
    fn new(quick: bool) -> Self {
        Self {
            quick,
            point: if quick { Duration::from_millis(1500) } else { Duration::from_secs(5) },
            writer_counts: [1, 16, 256],
            batch_size: 1000,
            batched_writers: 256,
            latency_samples: if quick { 500 } else { 2000 },
            log_size: if quick { 1_000_000 } else { 10_000_000 },
            build_batch: 65_536,
            proofs: 10_000,
            verify_every: 20,
            verify_size: 1_000_000,
            seed: 0x00ca_d0ce,
        }
    }
}

/// The allocator the `caduceus` binary uses, so the numbers are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ledger { quick } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(ledger(&Plan::new(quick)))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Identity { quick, json } => {
            let report = identity::run(&identity::Plan::new(quick))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Vault { quick, json } => {
            let report = vault::run(&vault::Plan::new(quick))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Ml { quick, skip_peers } => {
            let report = ml::run(&ml::Plan::new(quick, skip_peers))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Devices { quick } => {
            let report = devices::run(&devices::Plan::new(quick))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Detect { quick, rules, pool, seed } => {
            let mut plan = detect::Plan::new(quick);
            plan.rules = rules;
            plan.pool = pool.unwrap_or(plan.pool).max(1);
            plan.seed = seed.unwrap_or(plan.seed);
            let report = detect::run(&plan)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

async fn ledger(plan: &Plan) -> anyhow::Result<serde_json::Value> {
    let started = std::time::Instant::now();
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    util::progress(format!("ledger benchmark ({}), {cores} cores", if plan.quick { "quick" } else { "full" }));

    let disk = durable::fdatasync_latency(if plan.quick { 200 } else { 1000 }).await?;
    util::progress(format!(
        "raw fdatasync: p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms",
        disk.p50_ms, disk.p99_ms, disk.mean_ms
    ));

    let mut durable = serde_json::Map::new();
    for writers in plan.writer_counts {
        let rate = durable::appends_per_s(writers, 1, plan.point).await?;
        util::progress(format!("durable appends, {writers} writer(s): {rate:.0}/s"));
        durable.insert(writers.to_string(), json!(util::round(rate, 0)));
    }
    let batched = durable::appends_per_s(plan.batched_writers, plan.batch_size, plan.point).await?;
    util::progress(format!(
        "durable appends, {} writers in batches of {}: {batched:.0}/s",
        plan.batched_writers, plan.batch_size
    ));
    let latency = durable::ack_latency(plan.latency_samples).await?;
    util::progress(format!(
        "ack latency: p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms",
        latency.p50_ms, latency.p99_ms, latency.mean_ms
    ));

    let proof_figures = proofs::run(plan).await?;
    let peer_figures = peer::run(plan, &proof_figures.built).await?;
    let verify = if proof_figures.built.size == plan.verify_size {
        offline::verify(proof_figures.built).await?
    } else {
        drop(proof_figures.built.close().await?);
        let built = proofs::build(plan.verify_size, plan.build_batch, "verify").await?;
        offline::verify(built).await?
    };
    util::progress(format!("offline verification of {} leaves: {:.2} s", plan.verify_size, verify.seconds));
    let peer_appends = peer::appends_per_s(plan).await?;

    let report = json!({
        "benchmark": "ledger",
        "quick": plan.quick,
        "machine": {
            "cores": cores,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "fdatasync_p50_ms": util::round(disk.p50_ms, 3),
            "fdatasync_p99_ms": util::round(disk.p99_ms, 3),
            "fdatasync_mean_ms": util::round(disk.mean_ms, 3),
            "fdatasync_samples": disk.samples,
        },
        "point_s": plan.point.as_secs_f64(),
        "durable_appends_per_s": durable,
        "durable_batched_appends_per_s": { plan.batched_writers.to_string(): util::round(batched, 0) },
        "batch_size": plan.batch_size,
        "ack_latency_p50_ms": util::round(latency.p50_ms, 3),
        "ack_latency_p99_ms": util::round(latency.p99_ms, 3),
        "ack_latency_mean_ms": util::round(latency.mean_ms, 3),
        "ack_latency_samples": latency.samples,
        "log_size": proof_figures.log_size,
        "build_batch": plan.build_batch,
        "build_appends_per_s": util::round(proof_figures.build_appends_per_s, 0),
        "inclusion_proof_us": util::round(proof_figures.inclusion_us, 2),
        "consistency_proof_us": util::round(proof_figures.consistency_us, 2),
        "inclusion_proof_at_log_size_us": util::round(proof_figures.inclusion_at_log_size_us, 2),
        "consistency_proof_at_log_size_us": util::round(proof_figures.consistency_at_log_size_us, 2),
        "proofs_timed": plan.proofs,
        "proofs_verified": proof_figures.verified,
        "verify_1m_s": util::round(verify.seconds, 3),
        "peer": peer_figures.into_json(peer_appends),
        "total_s": util::round(started.elapsed().as_secs_f64(), 1),
    });
    Ok(report)
}

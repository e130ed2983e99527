//! The `caduceus` binary: argument parsing and start-up only. Each command
//! calls one function in `caduceus_server::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "caduceus", version, about = "Self-hosted security platform for hospitals and clinics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform from a configuration file.
    Serve {
        /// TOML configuration file (see docs/caduceus.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the platform on the embedded default with generated demo data.
    Demo {
        /// Where the demo keeps its state.
        #[arg(long, default_value = "./caduceus-data")]
        data_dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
    /// Administrative tasks on an installation.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Work on the tamper-evident ledger, offline.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// The patient-record vault: import FHIR data, rotate keys.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Detection: run Sigma rules over files, evaluate the record-access
    /// analytics, train and evaluate flow models.
    Detect {
        #[command(subcommand)]
        command: DetectCommand,
    },
    /// Generate data for evaluation.
    Simulate {
        #[command(subcommand)]
        command: SimulateCommand,
    },
    /// Sensors that run on a host and report to a Caduceus server.
    Sensor {
        #[command(subcommand)]
        command: SensorCommand,
    },
    /// Network inputs read offline: Zeek, Suricata EVE, pcap, flow CSV.
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Medical-device inventory: scan SBOMs and inventories against advisories offline,
    /// import an inventory into a server.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Security advisories (CSAF, OSV): import them into a server.
    Advisories {
        #[command(subcommand)]
        command: AdvisoriesCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// Match an SBOM (CycloneDX, SPDX or a Cargo.lock) or an inventory CSV against advisory
    /// files, offline, and print the findings. Exit status 3 with `--fail-on affected` when
    /// any finding is affected.
    Scan {
        /// A CycloneDX (JSON/XML) or SPDX (JSON/tag-value) SBOM, or a Cargo.lock.
        #[arg(long, required_unless_present = "inventory", conflicts_with = "inventory")]
        sbom: Option<PathBuf>,
        /// An inventory CSV with at least the columns id, manufacturer, model, version;
        /// each device is matched against CSAF product trees.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// An advisory file or directory: CSAF 2.0 (also CSAF VEX), OSV JSON or YAML
        /// (repeatable). A `.sha512` beside a document must verify.
        #[arg(long = "advisories", required = true)]
        advisories: Vec<PathBuf>,
        /// A CycloneDX VEX document (repeatable).
        #[arg(long = "vex")]
        vex: Vec<PathBuf>,
        /// An EPSS scores CSV (as FIRST publishes it, decompressed).
        #[arg(long)]
        epss: Option<PathBuf>,
        /// The CISA KEV catalogue (JSON or CSV).
        #[arg(long)]
        kev: Option<PathBuf>,
        /// `table`, `json` or `sarif`.
        #[arg(long, default_value = "table")]
        format: String,
        /// `affected`: exit with status 3 when any finding is affected.
        #[arg(long)]
        fail_on: Option<String>,
    },
    /// Import an inventory CSV into a server (`POST /api/v1/devices/import`).
    Import {
        /// The inventory CSV.
        #[arg(long)]
        file: PathBuf,
        /// The Caduceus server, e.g. https://caduceus.example:8443.
        #[arg(long)]
        server: String,
        /// A file holding the API token.
        #[arg(long)]
        token_file: PathBuf,
        /// Accept the server's self-signed certificate (a test install only).
        #[arg(long)]
        insecure: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AdvisoriesCommand {
    /// Send CSAF and OSV documents (files, directories, or a CSAF provider's ROLIE feed) to
    /// a server, verifying each `.sha512` and, with `--keyring`, each OpenPGP signature.
    Import {
        /// Advisory files or directories (searched recursively for .json, .yaml, .yml).
        paths: Vec<PathBuf>,
        /// A CSAF ROLIE feed: a file or an http(s) URL.
        #[arg(long)]
        rolie: Option<String>,
        /// Armored OpenPGP public keys; every document must then carry a `.asc` signature
        /// they verify.
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// The Caduceus server, e.g. https://caduceus.example:8443.
        #[arg(long)]
        server: String,
        /// A file holding the API token.
        #[arg(long)]
        token_file: PathBuf,
        /// Accept the server's self-signed certificate (a test install only).
        #[arg(long)]
        insecure: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DetectCommand {
    /// Run Sigma rules offline over events (a JSON file or NDJSON) and print,
    /// per event, the ids of the rules that fired.
    TestRules {
        /// A directory of Sigma rules (searched recursively) or one rule file (repeatable).
        #[arg(long = "rules", required = true)]
        rules: Vec<PathBuf>,
        /// The events: a JSON array, one JSON object, or NDJSON.
        #[arg(long)]
        events: PathBuf,
        /// Our field → Sigma field mapping overrides, `ours=theirs` (repeatable).
        #[arg(long = "map")]
        field_map: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a flow model on a labelled dataset (`--model M --dataset FILE`),
    /// or replay a labelled record-access log through the detection pipeline
    /// (`--input DIR`). Prints precision, recall, F1, ROC AUC and the
    /// confusion matrix.
    Evaluate {
        /// The record-access log directory (format: docs/design/ehr-access-log.md).
        #[arg(long, conflicts_with_all = ["model", "dataset"], required_unless_present = "model")]
        input: Option<PathBuf>,
        /// A model written by `detect train`, or an ONNX file.
        #[arg(long, requires = "dataset")]
        model: Option<PathBuf>,
        /// A labelled CSV (or a directory of CSVs with one header). The model's
        /// own training file is scored on its test split only.
        #[arg(long, requires = "model")]
        dataset: Option<PathBuf>,
        #[command(flatten)]
        columns: DatasetColumns,
        /// Score at or above which a row (or access) counts as an attack
        /// (default: the model's threshold; 0.5 for record accesses).
        #[arg(long)]
        threshold: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Train a flow model on the training split of a labelled dataset (the
    /// test split is never seen) and write it as a versioned model file.
    Train {
        /// A labelled CSV, or a directory of CSVs with one header. UNSW-NB15,
        /// CIC-IDS2017 and TON_IoT layouts are recognised from the header.
        #[arg(long)]
        dataset: PathBuf,
        /// Where to write the model.
        #[arg(long)]
        model: PathBuf,
        /// `best` (train `gbt` and `forest`, keep the one with the higher F1 on
        /// the validation slice, gbt on a tie), `gbt` (supervised
        /// gradient-boosted trees, the fastest to score), `forest` (a
        /// supervised random forest) or `online` (the unsupervised detector;
        /// labels are not used to fit it).
        #[arg(long, default_value = "best")]
        kind: String,
        #[command(flatten)]
        columns: DatasetColumns,
        #[arg(long)]
        json: bool,
    },
}

/// How to read a labelled CSV that is not in a known layout.
#[derive(Debug, clap::Args)]
struct DatasetColumns {
    /// The label column (default: recognised from the layout, else `label`).
    #[arg(long)]
    label_column: Option<String>,
    /// Label values that mean normal traffic, repeatable (default `0`,
    /// `normal`, `BENIGN`); any other value is an attack.
    #[arg(long = "normal-value")]
    normal_values: Vec<String>,
    /// Columns that must not be learned (identifiers, addresses,
    /// timestamps), comma-separated or repeated.
    #[arg(long = "drop-columns", value_delimiter = ',')]
    drop_columns: Vec<String>,
}

impl DatasetColumns {
    fn into_args(self) -> caduceus_server::commands::network::ColumnArgs {
        caduceus_server::commands::network::ColumnArgs {
            label_column: self.label_column,
            normal_values: self.normal_values,
            drop_columns: self.drop_columns,
        }
    }
}

#[derive(Debug, Subcommand)]
enum SensorCommand {
    /// Watch directories for ransomware (canaries, entropy, file types,
    /// rename bursts), report to a server and run the configured response.
    Files {
        /// A directory tree to watch (repeatable).
        #[arg(long = "watch", required = true)]
        watch: Vec<PathBuf>,
        /// The Caduceus server to report to, e.g. https://caduceus.example:8443.
        #[arg(long, requires = "token_file")]
        server: Option<String>,
        /// A file holding the API token used to report.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Accept the server's self-signed certificate (a test install only).
        #[arg(long)]
        insecure: bool,
        /// Place canary files in each watched directory.
        #[arg(long)]
        canaries: bool,
        /// Let a process judged to be ransomware go on opening files under
        /// the watched directories. By default (where the kernel gives
        /// fanotify permission events) its next open is refused at the
        /// verdict, and every open under the directories waits until the
        /// writes before it are scored (microseconds, 50 ms at most).
        #[arg(long)]
        no_block: bool,
        /// What to do on a ransomware verdict: `none`, `kill` (the writing
        /// process, where the kernel names it), or `command:PROGRAM` (run with
        /// the report as JSON on stdin, e.g. to isolate the share).
        #[arg(long, default_value = "none")]
        response: String,
        /// Stop after the first ransomware verdict (for tests and drills).
        #[arg(long)]
        exit_on_alert: bool,
        /// Print each report as one JSON line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Read flows from a file and print them as spine events (NDJSON), ready
    /// for `detect test-rules --events`.
    Flows {
        /// `zeek` (conn.log, TSV or JSON), `eve` (Suricata), `pcap` (pcap or
        /// pcapng) or `csv` (UNSW-NB15 / CIC-IDS2017 layout).
        #[arg(long)]
        format: String,
        #[arg(long)]
        input: PathBuf,
        /// Score each flow with this model and add `score` to the output.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print at most this many flows.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum SimulateCommand {
    /// Write a realistic hospital record-access log with labelled snooping.
    EhrAccess {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Days of activity (default 28).
        #[arg(long)]
        days: Option<u32>,
        /// Members of staff (default 400).
        #[arg(long)]
        staff: Option<usize>,
        /// Patients (default 20000).
        #[arg(long)]
        patients: Option<usize>,
        /// Fraction of accesses that are snooping (default 0.001).
        #[arg(long)]
        snoop_rate: Option<f64>,
        /// Only these scenario kinds (repeatable): vip, family, neighbour,
        /// coworker, self, department_mismatch, off_shift, search_no_action,
        /// volume_spike, break_glass_abuse.
        #[arg(long = "kind")]
        kinds: Vec<String>,
    },
    /// Encrypt a generated corpus of documents the way ransomware does (or
    /// run a benign heavy workload) in a directory, for measuring the file
    /// sensor. It only touches a corpus it created (a marker file guards it).
    Ransomware {
        /// The directory: a corpus is created in it when absent.
        #[arg(long)]
        dir: PathBuf,
        /// `in-place`, `copy-delete`, `rename`, `partial` or `slow`.
        #[arg(long, default_value = "in-place", conflicts_with = "benign")]
        style: String,
        /// Run a benign workload instead: `zip`, `git`, `backup` or `compile`.
        #[arg(long)]
        benign: Option<String>,
        /// Documents in the corpus.
        #[arg(long, default_value_t = 200)]
        files: usize,
        /// Seconds between files for the `slow` style.
        #[arg(long)]
        interval_secs: Option<f64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Import FHIR transaction/batch bundles and bulk-data NDJSON files, in
    /// any order, resolving `urn:uuid:` and conditional references.
    Import {
        /// The files (JSON bundles or NDJSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Import offline straight into this data directory (created if new).
        #[arg(long, group = "target")]
        data_dir: Option<PathBuf>,
        /// Import offline into the installation this configuration names.
        #[arg(long, group = "target")]
        config: Option<PathBuf>,
        /// Import through a running server's FHIR API.
        #[arg(long, group = "target", requires = "token")]
        server: Option<String>,
        /// The bearer token (session or API key) for `--server`.
        #[arg(long, env = "CADUCEUS_TOKEN")]
        token: Option<String>,
        /// Accept the server's self-signed certificate (the demo's).
        #[arg(long)]
        insecure: bool,
        /// Print one JSON object with the counts.
        #[arg(long)]
        json: bool,
    },
    /// Rotate the key-encryption key: a new key file, and every data key
    /// re-wrapped under it, while the server keeps running.
    RotateKek {
        #[arg(long, group = "target", required = true)]
        data_dir: Option<PathBuf>,
        #[arg(long, group = "target")]
        config: Option<PathBuf>,
        /// Remove the older key files afterwards (backups taken before can
        /// then no longer be opened).
        #[arg(long)]
        retire_old: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Recompute the whole tree from the stored entries and check every
    /// stored hash, the tree state and every checkpoint; report the first
    /// problem precisely. Run it on a stopped server or a copy.
    Verify {
        /// The data directory (or its `ledger` directory).
        #[arg(long)]
        data_dir: PathBuf,
        /// The log's published verifier key (or a file holding it); without
        /// it, the key file in the directory is trusted.
        #[arg(long)]
        key: Option<String>,
        /// The configuration naming the event store, to check every stored
        /// event against its seal (default: the SQLite database in the data
        /// directory, if there is one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check a C2SP tlog-proof bundle offline with the log's public key.
    VerifyProof {
        /// The bundle (from `GET /api/v1/ledger/events/SEQ/bundle`).
        #[arg(long)]
        proof: PathBuf,
        /// The log's verifier key, `name+keyid+base64key`, or a file holding it.
        #[arg(long)]
        key: String,
        /// The event's JSON: also check that the bundle seals this very event.
        #[arg(long)]
        event: Option<PathBuf>,
        /// The leaf hash, for a bundle without a seal in its extra data.
        #[arg(long)]
        leaf_hash: Option<String>,
        /// A witness's cosigner key (or file); repeat for each trusted witness.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned.
        #[arg(long, default_value_t = 0)]
        quorum: usize,
    },
    /// Print an inclusion proof (JSON) against the latest checkpoint.
    Prove {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, group = "entry", required = true)]
        index: Option<u64>,
        /// RFC 9162 leaf hash, hex or base64.
        #[arg(long, group = "entry")]
        leaf_hash: Option<String>,
        /// The spine sequence number of the sealed event.
        #[arg(long, group = "entry")]
        event_seq: Option<u64>,
        /// Tree size to prove against (default: the latest checkpoint's).
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Print a consistency proof (JSON) between two tree sizes.
    Consistency {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        first: u64,
        /// Default: the latest checkpoint's size.
        #[arg(long)]
        second: Option<u64>,
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Issue an admin API token and print it once.
    IssueToken {
        #[arg(long, short)]
        config: PathBuf,
        /// A label saying who or what the token is for.
        #[arg(long, default_value = "admin")]
        label: String,
        /// Revoke earlier tokens with the same label.
        #[arg(long)]
        replace: bool,
    },
    /// Create an account; with no `--password-stdin`, a strong password is
    /// generated and printed once.
    CreateUser {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        username: String,
        /// admin, security-analyst, auditor, clinician, nurse, registrar,
        /// device-service or patient; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// mimalloc rather than the system allocator: a fleet scan builds and drops hundreds of
/// thousands of findings (small strings and vectors) on several threads, where glibc's malloc
/// spent about 40 % of the devices benchmark in malloc, free and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use caduceus_server::commands;
    match cli.command {
        Command::Devices { command } => return run_devices(command).await,
        Command::Advisories { command } => run_advisories(command).await?,
        Command::Serve { config } => commands::serve(&config).await?,
        Command::Demo { data_dir, listen } => commands::demo(data_dir, listen).await?,
        Command::Admin { command: AdminCommand::IssueToken { config, label, replace } } => {
            commands::issue_token(&config, &label, replace).await?
        }
        Command::Admin {
            command: AdminCommand::CreateUser { config, username, roles, display_name, password_stdin },
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            commands::create_user(&config, &username, &display_name, &roles, password).await?
        }
        Command::Ledger { command } => run_ledger(command).await?,
        Command::Vault { command } => run_vault(command).await?,
        Command::Detect { command } => run_detect(command)?,
        Command::Sensor {
            command:
                SensorCommand::Files {
                    watch,
                    server,
                    token_file,
                    insecure,
                    canaries,
                    no_block,
                    response,
                    exit_on_alert,
                    json,
                },
        } => {
            commands::network::sensor_files(commands::network::SensorArgs {
                watch,
                server,
                token_file,
                insecure,
                canaries,
                no_block,
                response,
                exit_on_alert,
                json,
            })
            .await?
        }
        Command::Network { command: NetworkCommand::Flows { format, input, model, limit } } => {
            commands::network::flows(&format, &input, model.as_deref(), limit)?
        }
        Command::Simulate {
            command: SimulateCommand::Ransomware { dir, style, benign, files, interval_secs, seed },
        } => commands::network::simulate_ransomware(&commands::network::RansomwareArgs {
            dir,
            style,
            benign,
            files,
            interval_secs,
            seed,
        })?,
        Command::Simulate {
            command: SimulateCommand::EhrAccess { seed, out, days, staff, patients, snoop_rate, kinds },
        } => commands::detect::simulate_ehr_access(&commands::detect::SimulateArgs {
            seed,
            out,
            days,
            staff,
            patients,
            snoop_rate,
            kinds,
        })?,
        Command::Version => println!("{}", commands::version()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit status of `devices scan --fail-on affected` when a finding is affected (1 stays
/// for errors).
const EXIT_AFFECTED: u8 = 3;

async fn run_devices(command: DevicesCommand) -> anyhow::Result<ExitCode> {
    use caduceus_server::commands::devices;
    match command {
        DevicesCommand::Scan { sbom, inventory, advisories, vex, epss, kev, format, fail_on } => {
            let failed =
                devices::scan(&devices::ScanArgs { sbom, inventory, advisories, vex, epss, kev, format, fail_on })?;
            return Ok(if failed { ExitCode::from(EXIT_AFFECTED) } else { ExitCode::SUCCESS });
        }
        DevicesCommand::Import { file, server, token_file, insecure } => {
            devices::import_devices(&file, &server, &token_file, insecure).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_advisories(command: AdvisoriesCommand) -> anyhow::Result<()> {
    use caduceus_server::commands::devices;
    match command {
        AdvisoriesCommand::Import { paths, rolie, keyring, server, token_file, insecure } => {
            devices::import_advisories(&devices::AdvisoryImportArgs {
                paths,
                rolie,
                keyring,
                server,
                token_file,
                insecure,
            })
            .await
        }
    }
}

fn run_detect(command: DetectCommand) -> anyhow::Result<()> {
    use caduceus_server::commands::detect;
    match command {
        DetectCommand::TestRules { rules, events, field_map, json } => {
            let fired = detect::test_rules(&rules, &events, &field_map, json)?;
            if !fired {
                // Exit status 0 either way: no rule firing is an answer, not an error.
                eprintln!("no rule fired");
            }
        }
        DetectCommand::Evaluate { input: Some(input), threshold, json, .. } => {
            detect::evaluate(&input, threshold, json)?
        }
        DetectCommand::Evaluate { model: Some(model), dataset: Some(dataset), columns, threshold, json, .. } => {
            caduceus_server::commands::network::evaluate(&model, &dataset, &columns.into_args(), threshold, json)?
        }
        DetectCommand::Evaluate { .. } => {
            anyhow::bail!("give --input DIR (record-access log) or --model M --dataset FILE (flow model)")
        }
        DetectCommand::Train { dataset, model, kind, columns, json } => {
            caduceus_server::commands::network::train(&dataset, &model, &kind, &columns.into_args(), json)?
        }
    }
    Ok(())
}

async fn run_vault(command: VaultCommand) -> anyhow::Result<()> {
    use caduceus_server::commands::vault;
    match command {
        VaultCommand::Import { files, data_dir, config, server, token, insecure, json } => {
            let target = match (data_dir, config, server) {
                (Some(dir), _, _) => vault::ImportTarget::DataDir(dir),
                (_, Some(config), _) => vault::ImportTarget::Config(config),
                (_, _, Some(url)) => vault::ImportTarget::Server {
                    url,
                    token: token.ok_or_else(|| anyhow::anyhow!("--server needs --token"))?,
                    accept_invalid_certs: insecure,
                },
                _ => anyhow::bail!("give one of --data-dir, --config or --server"),
            };
            vault::import(&files, target, json).await?;
        }
        VaultCommand::RotateKek { data_dir, config, retire_old } => {
            vault::rotate_kek(data_dir, config, retire_old).await?;
        }
    }
    Ok(())
}

async fn run_ledger(command: LedgerCommand) -> anyhow::Result<()> {
    use caduceus_server::commands::ledger;
    match command {
        LedgerCommand::Verify { data_dir, key, config, json } => {
            ledger::verify(&data_dir, key.as_deref(), config.as_deref(), json).await?
        }
        LedgerCommand::VerifyProof { proof, key, event, leaf_hash, witnesses, quorum } => {
            ledger::verify_proof(&ledger::ProofCheck {
                proof: &proof,
                key: &key,
                event: event.as_deref(),
                leaf_hash: leaf_hash.as_deref(),
                witnesses: &witnesses,
                quorum,
            })?
        }
        LedgerCommand::Prove { data_dir, index, leaf_hash, event_seq, size, key } => {
            let entry = match (index, leaf_hash, event_seq) {
                (Some(i), _, _) => ledger::Entry::Index(i),
                (_, Some(h), _) => ledger::Entry::LeafHash(h),
                (_, _, Some(s)) => ledger::Entry::EventSeq(s),
                _ => anyhow::bail!("give one of --index, --leaf-hash, --event-seq"),
            };
            ledger::prove(&data_dir, entry, size, key.as_deref())?
        }
        LedgerCommand::Consistency { data_dir, first, second, key } => {
            ledger::consistency(&data_dir, first, second, key.as_deref())?
        }
    }
    Ok(())
}

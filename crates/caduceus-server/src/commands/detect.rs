//! `caduceus detect ...` and `caduceus simulate ...`: the detection engine
//! run over files, without a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use caduceus_detect::offline;
use caduceus_detect::sigma::{FieldMap, RuleSet};

/// Load rules from directories or single files; every rule that does not
/// load is reported on stderr with its file and line. Fails when nothing loads.
pub fn load_rules(paths: &[PathBuf]) -> anyhow::Result<RuleSet> {
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = paths.iter().cloned().partition(|p| p.is_dir());
    let (mut rules, report) = RuleSet::load_dirs(&dirs);
    let mut failed = report.errors.len();
    for error in &report.errors {
        eprintln!("rule not loaded: {error}");
    }
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        if let Err(error) = rules.add_yaml(&file.display().to_string(), &text) {
            eprintln!("rule not loaded: {error}");
            failed += 1;
        }
    }
    let loaded = rules.rules().count();
    if loaded == 0 {
        bail!(
            "no rule loaded from {} ({failed} failed)",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    eprintln!("{loaded} rules loaded, {failed} failed, {} correlations", rules.correlations().len());
    Ok(rules)
}

/// Parse `ours=theirs` field-map overrides.
pub fn field_map(overrides: &[String]) -> anyhow::Result<FieldMap> {
    let mut map = BTreeMap::new();
    for entry in overrides {
        let Some((ours, theirs)) = entry.split_once('=') else {
            bail!("--map takes ours=theirs, got `{entry}`");
        };
        map.insert(ours.trim().to_owned(), theirs.trim().to_owned());
    }
    Ok(FieldMap::with_overrides(&map))
}

/// `caduceus detect test-rules --rules DIR --events FILE [--json]`. Returns
/// whether any rule fired.
pub fn test_rules(rules: &[PathBuf], events: &Path, overrides: &[String], json: bool) -> anyhow::Result<bool> {
    let map = field_map(overrides)?;
    let rules = Arc::new(load_rules(rules)?);
    let values = offline::read_events(events)?;
    let results = offline::test_rules(rules, &values, &map);
    let fired = results.iter().any(|r| !r.rules.is_empty());
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for result in &results {
            match (&result.error, result.rules.is_empty()) {
                (Some(error), _) => println!("event {}: not examined: {error}", result.event),
                (None, true) => println!("event {}: -", result.event),
                (None, false) => println!("event {}: {}", result.event, result.rules.join(" ")),
            }
        }
    }
    Ok(fired)
}

/// `caduceus simulate ehr-access` options; unset ones take the simulator's defaults.
#[derive(Debug, Clone)]
pub struct SimulateArgs {
    pub seed: u64,
    pub out: PathBuf,
    pub days: Option<u32>,
    pub staff: Option<usize>,
    pub patients: Option<usize>,
    pub snoop_rate: Option<f64>,
    pub kinds: Vec<String>,
}

/// `caduceus simulate ehr-access --seed N --out DIR`
pub fn simulate_ehr_access(args: &SimulateArgs) -> anyhow::Result<()> {
    use caduceus_detect::simulate::{self, SimOptions, SnoopKind};
    let defaults = SimOptions::default();
    let kinds = if args.kinds.is_empty() {
        defaults.kinds.clone()
    } else {
        args.kinds
            .iter()
            .map(|k| SnoopKind::parse(k).ok_or_else(|| anyhow::anyhow!("unknown scenario kind `{k}`")))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let options = SimOptions {
        seed: args.seed,
        days: args.days.unwrap_or(defaults.days),
        staff: args.staff.unwrap_or(defaults.staff),
        patients: args.patients.unwrap_or(defaults.patients),
        snoop_rate: args.snoop_rate.unwrap_or(defaults.snoop_rate),
        kinds,
        ..defaults
    };
    let output = simulate::simulate(&options)?;
    output.write(&args.out)?;
    println!("{}", serde_json::to_string_pretty(&output.summary)?);
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `caduceus detect evaluate --input DIR [--json]`: replay the log through
/// the detection engine (the built-in Sigma rules and the record-access
/// analytics, as the server runs them), then score against the labels.
pub fn evaluate(input: &Path, threshold: Option<f64>, json: bool) -> anyhow::Result<()> {
    use caduceus_detect::ehr::{Analytics, EhrSettings};
    use caduceus_detect::evaluate::{EvalInput, EvalOptions, evaluate_with};
    use caduceus_detect::pipeline::Engine;

    let mut options = EvalOptions::default();
    if let Some(threshold) = threshold {
        if !(0.0..=1.0).contains(&threshold) {
            bail!("--threshold must be between 0 and 1");
        }
        options.settings = EhrSettings::with_threshold(threshold);
    }
    let data = EvalInput::load(input, &options)?;
    let analytics = Analytics::new(data.directory(), options.settings.clone());
    let rules = Arc::new(caduceus_detect::builtin::rules());
    let mut engine = Engine::new(rules, Some(analytics), FieldMap::default());
    // The labels are read only once every access has been scored.
    let report = evaluate_with(&data, &mut engine, options.settings.alert_threshold, &options.limits)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

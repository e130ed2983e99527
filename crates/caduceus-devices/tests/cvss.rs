//! CVSS parsing and scoring: published examples, then every vector in the shared CSAF data.

use std::path::{Path, PathBuf};

use caduceus_devices::cvss::{Cvss, Severity, fuzz_cvss};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn data_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    if !dir.is_dir() {
        return Err(
            format!("shared data directory {} is missing (clone ../shared beside the repo)", dir.display()).into()
        );
    }
    Ok(dir)
}

fn score(vector: &str) -> Result<f64, Box<dyn std::error::Error>> {
    Ok(Cvss::parse(vector)?.base_score())
}

fn assert_score(vector: &str, expected: f64) -> TestResult {
    let got = score(vector)?;
    if (got - expected).abs() > 1e-9 {
        return Err(format!("{vector}: expected {expected}, got {got}").into());
    }
    Ok(())
}

// NVD-published CVSS 3.1 base scores of well-known vectors.
#[test]
fn v31_known_scores() -> TestResult {
    // CVE-2021-44228 (Log4Shell).
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0)?;
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8)?;
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8)?;
    assert_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5)?;
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5)?;
    assert_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8)?;
    // Scope changed: reflected and stored cross-site scripting.
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1)?;
    assert_score("CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N", 5.4)?;
    assert_score("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9)?;
    // No impact scores 0.
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0)?;
    // Any order is accepted for 3.x.
    assert_score("CVSS:3.1/S:C/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H", 10.0)?;
    let c = Cvss::parse("CVSS:3.1/S:C/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H")?;
    assert_eq!(c.vector(), "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H");
    assert_eq!(c.version(), "3.1");
    assert_eq!(c.severity(), Severity::Critical);
    assert!(c.attack_vector_network());
    assert_eq!(c.temporal_score(), None);
    assert_eq!(c.environmental_score(), None);
    Ok(())
}

// 3.x Roundup rounds up, not to nearest; 3.1's integer Roundup (Appendix A) and 3.0's plain
// ceiling differ when binary floating point lands just above a tenth.
#[test]
fn v3_rounding() -> TestResult {
    // Impact 5.873 + exploitability 2.835 = 8.708: rounded up to 8.8.
    assert_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8)?;
    // Temporal 10.0 * RC:U 0.92 = 9.200000000000001 in floating point: 3.1 gives 9.2, while
    // 3.0's Roundup (ceil(x * 10) / 10, as FIRST's 3.0 calculator computes it) gives 9.3.
    let t31 = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/RC:U")?.temporal_score();
    assert_eq!(t31, Some(9.2));
    let t30 = Cvss::parse("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/RC:U")?.temporal_score();
    assert_eq!(t30, Some(9.3));
    assert_eq!(Cvss::parse("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H")?.version(), "3.0");
    Ok(())
}

#[test]
fn v3_temporal_and_environmental() -> TestResult {
    // Temporal: 9.8 * E:P 0.94 * RL:O 0.95 * RC:C 1 = 8.75 -> 8.8.
    let c = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C")?;
    assert_eq!(c.base_score(), 9.8);
    assert_eq!(c.temporal_score(), Some(8.8));
    assert_eq!(c.environmental_score(), None);
    // Environmental with everything X is the base score.
    let c = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/CR:X/MAV:X")?;
    assert_eq!(c.environmental_score(), None, "X values are not defined metrics");
    // Modified attack vector local on a network vector: same as the local base vector.
    let env = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/MAV:L")?;
    assert_eq!(env.environmental_score(), Some(score("CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")?));
    assert!(!env.attack_vector_network());
    // All impacts modified to None: 0.
    let none = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/MC:N/MI:N/MA:N")?;
    assert_eq!(none.environmental_score(), Some(0.0));
    assert_eq!(none.score(), 0.0);
    Ok(())
}

// CVSS 2.0 guide examples and NVD scores.
#[test]
fn v2_scores() -> TestResult {
    assert_score("AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0)?;
    assert_score("AV:N/AC:M/Au:N/C:P/I:P/A:P", 6.8)?;
    assert_score("(AV:N/AC:L/Au:N/C:P/I:P/A:P)", 7.5)?;
    assert_score("AV:N/AC:L/Au:N/C:N/I:N/A:P", 5.0)?;
    assert_score("AV:L/AC:L/Au:N/C:C/I:C/A:C", 7.2)?;
    assert_score("AV:N/AC:M/Au:N/C:N/I:P/A:N", 4.3)?;
    // Guide section 3.3.1, CVE-2002-0392: base 7.8, temporal 6.4.
    let c = Cvss::parse("AV:N/AC:L/Au:N/C:N/I:N/A:C/E:F/RL:OF/RC:C")?;
    assert_eq!(c.base_score(), 7.8);
    assert_eq!(c.temporal_score(), Some(6.4));
    assert_eq!(c.version(), "2.0");
    assert_eq!(c.severity(), Severity::High);
    // Guide section 3.3.2, CVE-2003-0818: base 10.0, temporal 8.3.
    let c = Cvss::parse("AV:N/AC:L/Au:N/C:C/I:C/A:C/E:F/RL:OF/RC:C")?;
    assert_eq!(c.temporal_score(), Some(8.3));
    // Guide section 3.3.3, CVE-2003-0062: base 6.2, temporal 4.9.
    let c = Cvss::parse("AV:L/AC:H/Au:N/C:C/I:C/A:C/E:POC/RL:OF/RC:C")?;
    assert_eq!(c.base_score(), 6.2);
    assert_eq!(c.temporal_score(), Some(4.9));
    assert_eq!(Cvss::parse("AV:N/AC:L/Au:N/C:N/I:N/A:N")?.severity(), Severity::Low);
    let c = Cvss::parse("(A:P/AV:N/AC:L/Au:N/C:P/I:P/E:ND)")?;
    assert_eq!(c.vector(), "AV:N/AC:L/Au:N/C:P/I:P/A:P");
    assert_eq!(c.temporal_score(), None, "ND is not defined");
    assert!(c.attack_vector_network());
    Ok(())
}

// CVSS 4.0 scores from FIRST's calculator (as NVD and the CSAF 2.1 TC publish them).
#[test]
fn v4_scores() -> TestResult {
    assert_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3)?;
    assert_score("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.5)?;
    assert_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 10.0)?;
    assert_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0.0)?;
    // CSAF 2.1 TC test 6.1.9 (valid examples).
    assert_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:P", 9.3)?;
    assert_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N", 5.3)?;
    assert_score("CVSS:4.0/AV:L/AC:L/AT:P/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", 5.7)?;
    assert_score("CVSS:4.0/AV:N/AC:H/AT:P/PR:N/UI:A/VC:L/VI:N/VA:N/SC:L/SI:N/SA:N", 2.1)?;
    // The calculator's documented example (cvss40.js): E:A with MAV:A gives 8.7.
    assert_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:L/SC:N/SI:N/SA:N/E:A/MAV:A", 8.7)?;
    // Environmental metrics (CSAF 2.1 TC 6.1.8 valid example).
    let c = Cvss::parse(
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:P/MAV:A/MPR:L/MUI:P/MVI:N/MVA:N",
    )?;
    assert_eq!(c.base_score(), 5.4);
    assert_eq!(c.severity(), Severity::Medium);
    assert!(!c.attack_vector_network(), "MAV:A overrides AV:N");
    let Cvss::V4(v4) = &c else { return Err("not 4.0".into()) };
    assert_eq!(v4.nomenclature(), "CVSS-BTE");
    // FIRST's JSON schema convention: baseScore 10.0 beside the vector's own 5.4.
    assert_eq!(v4.base_only_score(), 10.0);
    // NVD spells out every metric with X; same score, normalised away.
    let nvd = "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:X/CR:X/IR:X/AR:X/MAV:X/MAC:X/MAT:X/MPR:X/MUI:X/MVC:X/MVI:X/MVA:X/MSC:X/MSI:X/MSA:X/S:X/AU:X/R:X/V:X/RE:X/U:X";
    let c = Cvss::parse(nvd)?;
    assert_eq!(c.base_score(), 8.5);
    assert_eq!(c.vector(), "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N");
    // Supplemental metrics are kept but do not change the score.
    let c = Cvss::parse("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/S:P/AU:Y/U:Red")?;
    assert_eq!(c.base_score(), 9.3);
    assert!(c.vector().ends_with("/S:P/AU:Y/U:Red"));
    // Safety on the subsequent system (MSI:S) raises EQ4 to its top class.
    let safety = score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MSI:S")?;
    assert!(safety > 9.3, "MSI:S scored {safety}");
    Ok(())
}

#[test]
fn malformed_vectors_are_rejected() -> TestResult {
    let bad = [
        ("", "empty"),
        ("CVSS:3.1/", "no metrics"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", "missing A"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:H", "duplicate"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1", "unknown metric"),
        ("CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "bad value"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/", "trailing slash"),
        ("CVSS:3.1/av:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "lower case"),
        ("CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "unknown version"),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N", "missing SA"),
        ("CVSS:4.0/AC:L/AV:N/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "4.0 out of order"),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:S/SA:N", "S only in MSI"),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MAV:N/E:A", "E after MAV"),
        ("AV:N/AC:L/Au:N/C:P/I:P", "v2 missing A"),
        ("(AV:N/AC:L/Au:N/C:P/I:P/A:P", "unbalanced"),
        ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "3.x without prefix"),
    ];
    for (vector, why) in bad {
        if Cvss::parse(vector).is_ok() {
            return Err(format!("accepted {vector:?} ({why})").into());
        }
    }
    // Errors name the problem and do not echo long input.
    let long = format!("CVSS:3.1/AV:N/{}", "X".repeat(500));
    let err = Cvss::parse(&long).err().ok_or("accepted long junk")?.to_string();
    assert!(err.len() < 300, "{err}");
    let err = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:H").err().ok_or("dup")?.to_string();
    assert!(err.contains("more than once"), "{err}");
    let err =
        Cvss::parse("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N").err().ok_or("missing")?.to_string();
    assert!(err.contains("SA"), "{err}");
    assert!(Cvss::parse(&"A".repeat(5000)).is_err());
    Ok(())
}

#[test]
fn fuzz_entry_never_panics() {
    for input in [
        &b""[..],
        b"CVSS:4.0/",
        b"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MSI:S/MSA:S/MVC:N/MVI:N/MVA:N",
        b"(",
        b"()",
        b"CVSS2#",
        b"\xff\xfe",
        b"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/MS:U/MPR:H/CR:L/E:U",
    ] {
        fuzz_cvss(input);
    }
}

/// Every 4.0 vector whose metrics take all combinations of a few values scores in [0, 10]
/// and never panics; the score never rises when a base metric gets less severe.
#[test]
fn v4_exhaustive_base_space_is_sane() -> TestResult {
    let mut count = 0usize;
    for av in ["N", "A", "L", "P"] {
        for ac in ["L", "H"] {
            for at in ["N", "P"] {
                for pr in ["N", "L", "H"] {
                    for ui in ["N", "P", "A"] {
                        for vc in ["H", "L", "N"] {
                            for vi in ["H", "L", "N"] {
                                for sc in ["H", "N"] {
                                    let v = format!(
                                        "CVSS:4.0/AV:{av}/AC:{ac}/AT:{at}/PR:{pr}/UI:{ui}/VC:{vc}/VI:{vi}/VA:L/SC:{sc}/SI:N/SA:N"
                                    );
                                    let s = score(&v)?;
                                    if !(0.0..=10.0).contains(&s) {
                                        return Err(format!("{v} scored {s}").into());
                                    }
                                    count += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(count, 4 * 2 * 2 * 3 * 3 * 3 * 3 * 2);
    Ok(())
}

/// One CVSS object found in a CSAF document.
struct Found {
    file: String,
    key: &'static str,
    vector: String,
    base: Option<f64>,
    temporal: Option<f64>,
    environmental: Option<f64>,
}

fn collect(value: &serde_json::Value, file: &str, out: &mut Vec<Found>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = match k.as_str() {
                    "cvss_v2" => Some("cvss_v2"),
                    "cvss_v3" => Some("cvss_v3"),
                    "cvss_v4" => Some("cvss_v4"),
                    _ => None,
                };
                match (key, v.get("vectorString").and_then(|s| s.as_str())) {
                    (Some(key), Some(vector)) => out.push(Found {
                        file: file.to_string(),
                        key,
                        vector: vector.to_string(),
                        base: v.get("baseScore").and_then(|s| s.as_f64()),
                        temporal: v.get("temporalScore").and_then(|s| s.as_f64()),
                        environmental: v.get("environmentalScore").and_then(|s| s.as_f64()),
                    }),
                    _ => collect(v, file, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, file, out)),
        _ => {}
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn vectors_under(dirs: &[PathBuf]) -> Result<Vec<Found>, Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(format!("{} is missing", dir.display()).into());
        }
        json_files(dir, &mut files)?;
    }
    files.sort();
    let mut found = Vec::new();
    for path in &files {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(path)?) else {
            continue; // Deliberately broken JSON in test corpora; the CSAF tests cover those.
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        collect(&doc, &name, &mut found);
    }
    Ok(found)
}

/// Compare our scores with a document's; returns (agreeing, disagreement descriptions).
fn compare(found: &[Found]) -> (usize, Vec<String>) {
    let mut agree = 0;
    let mut disagree = Vec::new();
    for f in found {
        let Some(doc_base) = f.base else {
            disagree.push(format!("{} {}: {} has no baseScore", f.file, f.key, f.vector));
            continue;
        };
        match Cvss::parse(&f.vector) {
            Err(e) => disagree.push(format!("{} {}: {e}", f.file, f.key)),
            Ok(c) => {
                let mut ok = (c.base_score() - doc_base).abs() < 1e-9;
                let mut detail = format!("base {} vs document {doc_base}", c.base_score());
                if let (Some(doc_t), Some(ours)) = (f.temporal, c.temporal_score()) {
                    ok &= (ours - doc_t).abs() < 1e-9;
                    detail.push_str(&format!(", temporal {ours} vs {doc_t}"));
                }
                if let (Some(doc_e), Some(ours)) = (f.environmental, c.environmental_score()) {
                    ok &= (ours - doc_e).abs() < 1e-9;
                    detail.push_str(&format!(", environmental {ours} vs {doc_e}"));
                }
                if ok {
                    agree += 1;
                } else {
                    disagree.push(format!("{} {} {}: {detail}", f.file, f.key, f.vector));
                }
            }
        }
    }
    (agree, disagree)
}

/// Every CVSS vector in CISA's CSAF advisories parses and scores as the document says.
#[test]
fn cisa_csaf_scores_agree() -> TestResult {
    let data = data_dir()?;
    let dirs: Vec<PathBuf> = ["icsma", "icsa-sample", "it-va"].iter().map(|d| data.join("cisa-csaf").join(d)).collect();
    let found = vectors_under(&dirs)?;
    let (agree, disagree) = compare(&found);
    let v3 = found.iter().filter(|f| f.key == "cvss_v3").count();
    println!("CISA CSAF: {} vectors ({v3} cvss_v3), {agree} agree", found.len());
    for d in &disagree {
        println!("  disagree: {d}");
    }
    assert!(found.len() > 1000, "expected over 1000 vectors, found {}", found.len());
    assert!(disagree.is_empty(), "{} of {} disagree", disagree.len(), found.len());
    Ok(())
}

/// The OASIS CSAF 2.0 and 2.1 examples.
#[test]
fn oasis_csaf_example_scores_agree() -> TestResult {
    let data = data_dir()?;
    let base = data.join("csaf-oasis/oasis-tcs-csaf");
    let found = vectors_under(&[base.join("csaf_2.0/examples"), base.join("csaf_2.1/examples")])?;
    let (agree, disagree) = compare(&found);
    println!("OASIS examples: {} vectors, {agree} agree", found.len());
    for d in &disagree {
        println!("  disagree: {d}");
    }
    assert!(!found.is_empty());
    assert!(disagree.is_empty(), "{} of {} disagree", disagree.len(), found.len());
    Ok(())
}

/// CSAF mandatory test 6.1.9 "Invalid CVSS computation": the TC's valid examples
/// (`-6-1-09-1x`) agree with our scores, and each invalid one (`-6-1-09-0x`) has a score we
/// disagree with.
#[test]
fn csaf_tc_invalid_cvss_computation() -> TestResult {
    let data = data_dir()?;
    let base = data.join("csaf-oasis/oasis-tcs-csaf");
    let mut valid_checked = 0;
    let mut invalid_checked = 0;
    for version in ["csaf_2.0", "csaf_2.1"] {
        let dir = base.join(version).join("test/validator/data/mandatory");
        let mut files = Vec::new();
        json_files(&dir, &mut files)?;
        files.sort();
        for path in files {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(case) =
                name.strip_suffix(".json").and_then(|n| n.rsplit_once("-6-1-09-")).map(|(_, c)| c.to_string())
            else {
                continue;
            };
            let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            let mut found = Vec::new();
            collect(&doc, &name, &mut found);
            let (_, disagree) = compare(&found);
            if case.starts_with('0') {
                invalid_checked += 1;
                if disagree.is_empty() {
                    return Err(format!("{name}: the TC marks it invalid but every score agrees").into());
                }
            } else {
                valid_checked += 1;
                if !disagree.is_empty() {
                    return Err(format!("{name}: {disagree:?}").into());
                }
            }
        }
    }
    println!("6.1.9: {valid_checked} valid and {invalid_checked} invalid test documents checked");
    assert!(valid_checked > 0 && invalid_checked > 0);
    Ok(())
}

/// Every CVSS vector anywhere in the CSAF TC test data and the OSV data parses, except in
/// the TC's deliberately invalid examples.
#[test]
fn corpus_vectors_parse() -> TestResult {
    let data = data_dir()?;
    let found = vectors_under(&[data.join("csaf-oasis/oasis-tcs-csaf")])?;
    let mut failures = Vec::new();
    let mut rejected_on_purpose = 0;
    for f in &found {
        if let Err(e) = Cvss::parse(&f.vector) {
            // The TC's failing examples of a mandatory test (`-6-1-NN-0x`) may be broken on
            // purpose (6.1.7 uses `CVSS:3.2`, `CVSS:3.4`).
            let deliberate = f.file.rsplit_once("-6-1-").is_some_and(|(_, case)| case.get(3..4) == Some("0"));
            if deliberate {
                rejected_on_purpose += 1;
            } else {
                failures.push(format!("{}: {e}", f.file));
            }
        }
    }
    // OSV severity vectors.
    let mut osv_files = Vec::new();
    json_files(&data.join("osv"), &mut osv_files)?;
    let mut osv_vectors = 0;
    for path in osv_files {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path)?) else { continue };
        let severities = doc.get("severity").and_then(|s| s.as_array()).cloned().unwrap_or_default();
        for s in severities {
            if let Some(v) = s.get("score").and_then(|v| v.as_str())
                && v.starts_with("CVSS:")
            {
                osv_vectors += 1;
                if let Err(e) = Cvss::parse(v) {
                    failures.push(format!("{}: {e}", path.display()));
                }
            }
        }
    }
    println!(
        "TC test data: {} vectors ({rejected_on_purpose} deliberately invalid rejected); OSV: {osv_vectors} vectors; {} fail",
        found.len(),
        failures.len()
    );
    for f in &failures {
        println!("  {f}");
    }
    // Informational: how the TC's own scores compare (many test documents carry wrong
    // scores on purpose, or scores that other tests ignore).
    for key in ["cvss_v2", "cvss_v3", "cvss_v4"] {
        let of_key: Vec<Found> = found
            .iter()
            .filter(|f| f.key == key)
            .map(|f| Found {
                file: f.file.clone(),
                key: f.key,
                vector: f.vector.clone(),
                base: f.base,
                temporal: f.temporal,
                environmental: f.environmental,
            })
            .collect();
        let (agree, disagree) = compare(&of_key);
        println!("TC test data {key}: {} vectors, {agree} agree", of_key.len());
        for d in disagree {
            println!("  differs: {d}");
        }
    }
    assert!(osv_vectors > 0);
    assert!(failures.is_empty(), "{} vectors fail to parse", failures.len());
    Ok(())
}

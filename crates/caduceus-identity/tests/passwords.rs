//! Passwords per NIST SP 800-63B "reject common and breached passwords":
//! the common-password policy (zxcvbn's embedded list), the offline Have I
//! Been Pwned list in both its layouts, and the QR codes that carry
//! enrolment URIs, decoded again by an independent reader (rqrr).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::Path;

use caduceus_identity::breached::{BreachedError, BreachedList};
use caduceus_identity::password::{PasswordError, check_policy};
use caduceus_identity::qr;
use sha1::{Digest, Sha1};

// ----- common passwords ----------------------------------------------------

/// Entries of at least 12 characters from zxcvbn 3's "passwords" list
/// (with their ranks there), long enough to pass the length rule.
const LISTED: [&str; 10] = [
    "password1234",   // 11383
    "leavemealone",   // 2903
    "qwerty123456",   // 1850
    "1qaz2wsx3edc",   // 1000
    "sonyericsson",   // 4356
    "finalfantasy",   // 6531
    "justinbieber",   // 7051
    "whosyourdaddy",  // 10496
    "iseedeadpeople", // 12746
    "jamesbond007",   // 12887
];

#[test]
fn listed_passwords_are_refused_as_common_in_any_case_or_l33t_spelling() {
    for listed in LISTED {
        let upper = listed.to_uppercase();
        let alternating: String =
            listed.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
        for candidate in [listed, upper.as_str(), alternating.as_str()] {
            assert_eq!(check_policy(candidate, &[]), Err(PasswordError::Common), "{candidate}");
        }
    }
    // l33t spellings that zxcvbn un-substitutes, with odd capitals too.
    // zxcvbn breaks ties between equal readings in hash order, so repeat.
    for spelled in ["p@ssw0rd1234", "P@SSW0RD1234", "Le@v3M3@L0N3", "fin@lf@nt@$y", "JU$TINBI3B3R"] {
        for _ in 0..10 {
            assert_eq!(check_policy(spelled, &[]), Err(PasswordError::Common), "{spelled}");
        }
    }
}

#[test]
fn listed_passwords_are_refused_even_when_the_strength_estimate_passes() {
    // Odd capitals and substitutions lift zxcvbn's estimate to 3 or 4, the
    // policy's pass mark, but an attacker's list has these words anyway.
    for disguised in ["IsEeDeAdPeOpLe", "ChIcK3NwInG101", "D3ViLmAyCrY4", "QaZwSxEdCrFvTgB"] {
        let score = u8::from(zxcvbn::zxcvbn(disguised, &[]).score());
        assert!(score >= 3, "{disguised} scores only {score}: not the case this test is for");
        for _ in 0..10 {
            assert_eq!(check_policy(disguised, &[]), Err(PasswordError::Common), "{disguised}");
        }
    }
}

#[test]
fn strong_passphrases_pass_and_other_rules_still_hold() {
    for strong in ["tangerine orbit kettle mosaic", "Wharf-lantern-47-quibble", "my 3 cats dislike opera at dawn"] {
        assert_eq!(check_policy(strong, &[]), Ok(()), "{strong}");
    }
    assert_eq!(check_policy("short", &[]), Err(PasswordError::TooShort));
    assert_eq!(check_policy(&"x".repeat(129), &[]), Err(PasswordError::TooLong));
    assert!(matches!(check_policy("asdfghjkl1234", &[]), Err(PasswordError::Guessable { .. })));
    // A password built from what the user is known by is guessable, not common.
    let personal = check_policy("margaret.hale1985", &["margaret.hale", "margaret", "hale"]);
    assert!(matches!(personal, Err(PasswordError::Guessable { .. })), "{personal:?}");
    // Reversed, a listed password is not itself on the list; the estimate decides.
    assert!(matches!(check_policy("4321drowssap", &[]), Err(PasswordError::Guessable { .. })));
}

#[test]
fn refusals_never_repeat_the_password() {
    let common = check_policy("password1234", &[]).unwrap_err().to_string();
    assert_eq!(common, "this password is on a list of commonly used passwords: use a longer phrase of unrelated words");
    for refused in LISTED.into_iter().chain(["P@SSW0RD1234", "IsEeDeAdPeOpLe", "asdfghjkl1234", "aaaaaaaaaaaaaaaa"]) {
        let message = check_policy(refused, &[]).unwrap_err().to_string().to_lowercase();
        assert!(!message.contains(&refused.to_lowercase()), "{refused}: {message}");
    }
    assert!(!PasswordError::Breached.to_string().contains("password1234"));
}

// ----- offline breached-password list --------------------------------------

fn sha1_hex(password: &str) -> String {
    Sha1::digest(password.as_bytes()).iter().map(|b| format!("{b:02X}")).collect()
}

/// An entry of a test list: the password, its SHA-1 and a count.
struct Entry {
    password: String,
    hash: String,
    count: u64,
}

/// Real SHA-1s of known passwords among thousands of fillers (the SHA-1s of
/// "filler N", themselves passwords the test can look up), sorted by hash.
fn entries(fillers: usize) -> Vec<Entry> {
    let mut entries: Vec<Entry> = ["password1234", "correct horse battery staple", "Tr0ub4dor&3", "hunter2"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..fillers).map(|i| format!("filler {i}")))
        .enumerate()
        .map(|(i, password)| Entry { hash: sha1_hex(&password), password, count: 1000 + i as u64 * 7 })
        .collect();
    entries.sort_by(|a, b| a.hash.cmp(&b.hash));
    entries
}

fn write_sorted(path: &Path, entries: &[Entry], ending: &str, trailing: bool) {
    let mut text: String = entries.iter().map(|e| format!("{}:{}{ending}", e.hash, e.count)).collect();
    if !trailing {
        text.truncate(text.len() - ending.len());
    }
    fs::write(path, text).unwrap();
}

#[test]
fn a_sorted_file_is_searched_by_bisection_with_lf_or_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let all = entries(6000);
    // Leave out the lowest and highest hash: they are then lookups before
    // the first line and after the last.
    let (below, rest) = all.split_first().unwrap();
    let (above, listed) = rest.split_last().unwrap();
    for (ending, trailing) in [("\n", true), ("\r\n", true), ("\n", false), ("\r\n", false)] {
        let path = dir.path().join("pwned-passwords-sha1-ordered-by-hash.txt");
        write_sorted(&path, listed, ending, trailing);
        let list = BreachedList::open(&path).unwrap();
        for entry in listed {
            assert_eq!(list.count(&entry.password).unwrap(), Some(entry.count), "{} {ending:?}", entry.password);
        }
        let (first, last) = (listed.first().unwrap(), listed.last().unwrap());
        assert_eq!(list.count(&first.password).unwrap(), Some(first.count), "first line");
        assert_eq!(list.count(&last.password).unwrap(), Some(last.count), "last line");
        assert_eq!(list.count(&below.password).unwrap(), None, "before the first line");
        assert_eq!(list.count(&above.password).unwrap(), None, "after the last line");
        for i in 0..500 {
            assert_eq!(list.count(&format!("absent {i}")).unwrap(), None);
        }
        assert!(list.count("password1234").unwrap().is_some());
    }
}

#[test]
fn tiny_sorted_files_and_odd_but_valid_details() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.txt");
    let all = entries(3);
    for n in 1..=all.len() {
        write_sorted(&path, &all[..n], "\r\n", true);
        let list = BreachedList::open(&path).unwrap();
        for (i, entry) in all.iter().enumerate() {
            assert_eq!(list.count(&entry.password).unwrap(), (i < n).then_some(entry.count), "{n} lines, entry {i}");
        }
    }
    // Lower-case hex, a byte-order mark and a padding line (count 0).
    let text = format!("\u{feff}{}:0\n{}:5\n", all[0].hash, all[1].hash.to_lowercase());
    fs::write(&path, text).unwrap();
    let list = BreachedList::open(&path).unwrap();
    assert_eq!(list.count(&all[0].password).unwrap(), None, "padding counts as absent");
    assert_eq!(list.count(&all[1].password).unwrap(), Some(5));
}

/// Write a range directory: `00000.txt` and, for each password, its
/// prefix's file with the password's suffix among `fillers` made-up
/// suffixes (so bisection inside a range file is exercised too).
fn write_ranges(dir: &Path, present: &[(&str, u64)], absent: &[&str], fillers: usize) {
    let mut files: std::collections::BTreeMap<String, Vec<(String, u64)>> = Default::default();
    files.entry("00000".into()).or_default().push(("1A2B3C4D5E6F708192A3B4C5D6E7F8091A2".into(), 3));
    for (password, count) in present {
        let hash = sha1_hex(password);
        files.entry(hash[..5].to_owned()).or_default().push((hash[5..].to_owned(), *count));
    }
    for password in absent {
        files.entry(sha1_hex(password)[..5].to_owned()).or_default();
    }
    for (prefix, lines) in &mut files {
        for i in 0..fillers {
            lines.push((sha1_hex(&format!("{prefix} filler {i}"))[..35].to_owned(), i as u64 + 1));
        }
        lines.sort();
        let text: String = lines.iter().map(|(suffix, count)| format!("{suffix}:{count}\r\n")).collect();
        fs::write(dir.join(format!("{prefix}.txt")), text).unwrap();
    }
}

#[test]
fn a_directory_of_range_files_is_detected_and_searched() {
    let dir = tempfile::tempdir().unwrap();
    let present = [("password1234", 1791), ("correct horse battery staple", 384), ("hunter2", 28_000_000_000)];
    let absent = ["tangerine orbit kettle mosaic", "Wharf-lantern-47-quibble"];
    write_ranges(dir.path(), &present, &absent, 2000);
    let list = BreachedList::open(dir.path()).unwrap();
    for (password, count) in present {
        assert_eq!(list.count(password).unwrap(), Some(count), "{password}");
    }
    for password in absent {
        assert_eq!(list.count(password).unwrap(), None, "{password}");
    }
    // A prefix whose file is missing means an incomplete download: an
    // error, not "absent", and the error does not name the file.
    let missing = list.count("a password whose range file is missing").unwrap_err();
    assert!(matches!(missing, BreachedError::MissingRange { .. }), "{missing}");
    let prefix = &sha1_hex("a password whose range file is missing")[..5];
    assert!(!missing.to_string().contains(prefix), "{missing}");
    // A damaged range file is an error that does not name the file either.
    let prefix = &sha1_hex("hunter2")[..5];
    fs::write(dir.path().join(format!("{prefix}.txt")), "not a range file\r\n").unwrap();
    let damaged = list.count("hunter2").unwrap_err();
    assert!(matches!(damaged, BreachedError::Malformed { .. }), "{damaged}");
    assert!(!damaged.to_string().contains(prefix), "{damaged}");
}

#[test]
fn malformed_lists_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.txt");
    let good: Vec<Entry> = entries(50);
    let line = |e: &Entry| format!("{}:{}\r\n", e.hash, e.count);
    let ntlm = "00000000DD7F2A1C68A35673713783CA:4\r\n00000001E225B908BAC31C56DB04D892:1\r\n".to_owned();
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("only line breaks", "\r\n\r\n".into()),
        ("not the format", "hello world\nthis is not a breach list\n".into()),
        ("no count", format!("{}\r\n", good[0].hash)),
        ("bad count", format!("{}:many\r\n", good[0].hash)),
        ("NTLM hashes", ntlm),
        ("unsorted", [line(&good[1]), line(&good[0]), line(&good[2])].concat()),
        ("truncated download", format!("{}{}", line(&good[0]), &good[1].hash[..17])),
        ("last line out of order", good[1..].iter().map(line).chain([line(&good[0])]).collect()),
        ("a range file on its own", format!("{}:3\r\n", &good[0].hash[5..])),
        ("a huge first line", "A".repeat(10_000)),
    ];
    for (what, text) in cases {
        fs::write(&path, &text).unwrap();
        match BreachedList::open(&path) {
            Err(BreachedError::Malformed { reason, .. }) => {
                if what == "NTLM hashes" {
                    assert!(reason.contains("NTLM"), "{reason}");
                }
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Bad lines in the middle pass `open` (it reads only the ends) and
    // surface as errors from the lookups that reach them.
    let mut text: String = good[..25].iter().map(line).collect();
    text.push_str(&"F".repeat(300));
    text.push_str("\r\n");
    text.push_str("\r\nnot a line\r\n");
    text.extend(good[25..].iter().map(line));
    fs::write(&path, &text).unwrap();
    let list = BreachedList::open(&path).unwrap();
    let mut errors = 0;
    for entry in &good {
        match list.count(&entry.password) {
            Ok(count) => assert_eq!(count, Some(entry.count)),
            Err(BreachedError::Malformed { .. }) => errors += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(errors > 0, "no lookup reached the bad lines");
    let missing = BreachedList::open(dir.path().join("no such file")).unwrap_err();
    assert!(matches!(missing, BreachedError::Io { .. }), "{missing}");
    // A directory that is not a range download.
    let empty_dir = dir.path().join("empty");
    fs::create_dir(&empty_dir).unwrap();
    assert!(matches!(BreachedList::open(&empty_dir), Err(BreachedError::Malformed { .. })));
}

// ----- QR codes --------------------------------------------------------------

const ENROLMENT: &str =
    "otpauth://totp/Caduceus:alice.smith?secret=JBSWY3DPEHPK3PXP&issuer=Caduceus&algorithm=SHA1&digits=6&period=30";

/// The module grid of an SVG from `qr::svg`: its side in modules (from the
/// view box) and the dark modules (from the path's runs `Mx yhNv1h-Nz`).
fn modules(svg: &str) -> (usize, Vec<bool>) {
    let side: usize = svg.split("viewBox=\"0 0 ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let path = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
    let mut dark = vec![false; side * side];
    for run in path.split('M').filter(|r| !r.is_empty()) {
        let (xy, rest) = run.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        let (n, rest) = rest.split_once("v1h-").unwrap();
        let n: usize = n.parse().unwrap();
        assert_eq!(rest, format!("{n}z"), "unexpected path run {run}");
        for dx in 0..n {
            dark[y * side + x + dx] = true;
        }
    }
    (side, dark)
}

/// Draw the grid at 4 pixels a module and read it with rqrr.
fn decode(svg: &str) -> (rqrr::MetaData, String) {
    let (side, dark) = modules(svg);
    let scale = 4;
    let px = side * scale;
    let luma = |x: usize, y: usize| if dark[(y / scale) * side + x / scale] { 0 } else { 255 };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(px, px, luma);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().unwrap()
}

#[test]
fn qr_codes_decode_to_their_text_at_level_m_with_a_quiet_zone() {
    let long = format!("{ENROLMENT}&image={}", "https%3A%2F%2Fcaduceus.example%2Flogo.png".repeat(20));
    for text in [ENROLMENT, "otpauth://totp/Caduceus:%C3%A9mile?secret=GEZDGNBVGY3TQOJQ", &long] {
        let svg = qr::svg(text).unwrap();
        let (meta, decoded) = decode(&svg);
        assert_eq!(decoded, text);
        assert_eq!(meta.ecc_level, 0, "format bits 00 are level M");
        // The quiet zone: four light modules all round.
        let (side, dark) = modules(&svg);
        for i in 0..side {
            for edge in 0..4 {
                assert!(!dark[edge * side + i] && !dark[(side - 1 - edge) * side + i], "row {edge} or its mirror");
                assert!(!dark[i * side + edge] && !dark[i * side + side - 1 - edge], "column {edge} or its mirror");
            }
        }
    }
}

#[test]
fn qr_svg_is_compact_deterministic_and_sized_by_its_text() {
    let svg = qr::svg(ENROLMENT).unwrap();
    assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" "#), "{svg}");
    assert!(svg.ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert!(svg.contains(r##"fill="#fff""##) && svg.contains(r##"fill="#000""##));
    assert_eq!(svg, qr::svg(ENROLMENT).unwrap(), "same text, same SVG");
    assert!(svg.len() < 8 * 1024, "{} bytes", svg.len());
    // The secret is in the modules only, never as text.
    assert!(!svg.contains("JBSWY3DPEHPK3PXP") && !svg.contains("alice"));
    let width =
        |svg: &str| -> usize { svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap() };
    let small = qr::svg("otpauth://totp/x?secret=JBSWY3DP").unwrap();
    let large = qr::svg(&ENROLMENT.repeat(4)).unwrap();
    assert!(width(&small) < width(&svg) && width(&svg) < width(&large));
    assert!((150..=400).contains(&width(&svg)), "an enrolment code is {} px", width(&svg));
    assert!(matches!(qr::svg(&"x".repeat(qr::MAX_INPUT + 1)), Err(qr::QrError::TooLong { .. })));
    assert!(qr::svg(&"x".repeat(qr::MAX_INPUT)).is_ok());
}

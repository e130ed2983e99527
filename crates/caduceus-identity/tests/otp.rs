#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! HOTP and TOTP against the RFC 4226 and RFC 6238 vectors in
//! `../shared/data/otp-vectors` (missing data fails), and against a real
//! client, pyotp, when `.ci/run` provides it.

use std::path::PathBuf;

use caduceus_identity::otp::{Algorithm, Totp, hotp};

fn vectors(name: &str) -> Vec<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/otp-vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("test vectors {}: {e}", path.display()));
    text.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

#[test]
fn every_rfc4226_hotp_vector() {
    let rows = vectors("rfc4226_hotp_vectors.csv");
    assert_eq!(rows.len(), 10);
    for row in rows {
        let counter: u64 = row[0].parse().unwrap();
        let expected: u32 = row[4].parse().unwrap();
        assert_eq!(hotp(Algorithm::Sha1, b"12345678901234567890", counter, 6), expected, "counter {counter}");
    }
}

#[test]
fn every_rfc6238_totp_vector() {
    let rows = vectors("rfc6238_totp_vectors.csv");
    assert_eq!(rows.len(), 18);
    for row in rows {
        let time: u64 = row[0].parse().unwrap();
        // Appendix A's seeds: 20, 32 and 64 bytes for SHA-1, -256 and -512.
        let (algorithm, seed): (_, &[u8]) = match row[4].as_str() {
            "SHA1" => (Algorithm::Sha1, b"12345678901234567890"),
            "SHA256" => (Algorithm::Sha256, b"12345678901234567890123456789012"),
            "SHA512" => (Algorithm::Sha512, b"1234567890123456789012345678901234567890123456789012345678901234"),
            other => panic!("unknown mode {other}"),
        };
        let totp = Totp::new(algorithm, seed.to_vec(), 8, 30).unwrap();
        let step = totp.step(time);
        assert_eq!(step, u64::from_str_radix(&row[2], 16).unwrap(), "T at {time}");
        assert_eq!(totp.format(totp.code_at_step(step)), row[3], "{} at {time}", row[4]);
        assert_eq!(totp.verify(&row[3], time, None), Ok(step));
    }
}

/// pyotp, a real client, reads our enrolment URI and its codes verify here;
/// ours verify there. Needs `TEST_PYTHON` (a Python with pyotp), which
/// `.ci/run` sets; without it the test says so loudly and stops.
#[test]
fn interoperates_with_pyotp() {
    let Ok(python) = std::env::var("TEST_PYTHON") else {
        if std::env::var("TEST_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
            panic!("TEST_REQUIRE_PYTHON=1 but TEST_PYTHON is not set");
        }
        eprintln!("\n*** SKIPPED: pyotp interoperability: TEST_PYTHON is not set. ***\n");
        return;
    };
    for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
        let totp = Totp::new(algorithm, Totp::generate().secret().to_vec(), 6, 30).unwrap();
        let uri = totp.uri("St Brigid's", "nurse@hospital.example");
        let now = 1_795_000_000u64;
        let script = "import pyotp, sys\n\
                      t = pyotp.parse_uri(sys.argv[1])\n\
                      now = int(sys.argv[2])\n\
                      print(t.at(now))\n\
                      print(t.verify(sys.argv[3], for_time=now))\n\
                      print(t.issuer, t.name, t.digest().name)\n";
        let ours = totp.format(totp.code_at_step(totp.step(now)));
        let output =
            std::process::Command::new(&python).args(["-c", script, &uri, &now.to_string(), &ours]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(totp.verify(lines[0], now, None), Ok(totp.step(now)), "pyotp's code for {algorithm:?}");
        assert_eq!(lines[1], "True", "pyotp accepts our code for {algorithm:?}");
        assert!(lines[2].starts_with("St Brigid's nurse@hospital.example"), "{}", lines[2]);
    }
}

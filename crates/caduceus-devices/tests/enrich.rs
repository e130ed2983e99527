//! EPSS and KEV loading, from small files written here in the published formats.

use caduceus_devices::enrich::{Enrichment, fuzz_enrich};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const EPSS_CSV: &str = "#model_version:v2023.03.01,score_date:2024-10-24T00:00:00+0000\n\
cve,epss,percentile\n\
CVE-2021-44228,0.97565,0.99992\n\
CVE-2017-0144,0.97547,0.99986\n\
CVE-2024-12345,0.00043,0.09612\n\
CVE-1999-0001,0.01012,0.83425\n";

const KEV_JSON: &str = r#"{
    "title": "CISA Catalog of Known Exploited Vulnerabilities",
    "catalogVersion": "2024.10.24",
    "dateReleased": "2024-10-24T17:59:36.2285Z",
    "count": 2,
    "vulnerabilities": [
        {
            "cveID": "CVE-2021-44228",
            "vendorProject": "Apache",
            "product": "Log4j2",
            "vulnerabilityName": "Apache Log4j2 Remote Code Execution Vulnerability",
            "dateAdded": "2021-12-10",
            "shortDescription": "Apache Log4j2 contains a vulnerability where JNDI features do not protect against attacker-controlled JNDI-related endpoints, allowing for remote code execution.",
            "requiredAction": "For all affected software assets for which updates exist, the only acceptable remediation actions are: 1) Apply updates; OR 2) remove affected assets from agency networks.",
            "dueDate": "2021-12-24",
            "knownRansomwareCampaignUse": "Known",
            "notes": "https://nvd.nist.gov/vuln/detail/CVE-2021-44228",
            "cwes": ["CWE-20", "CWE-400", "CWE-502"]
        },
        {
            "cveID": "CVE-2019-10953",
            "vendorProject": "ABB, Phoenix Contact, Schneider Electric, Siemens, WAGO",
            "product": "Programmable Logic Controllers",
            "vulnerabilityName": "Multiple Vendors PLC Resource Exhaustion",
            "dateAdded": "2022-03-25",
            "shortDescription": "Controllers are vulnerable to a denial-of-service attack due to a flooding attack.",
            "requiredAction": "Apply updates per vendor instructions.",
            "dueDate": "2022-04-15",
            "knownRansomwareCampaignUse": "Unknown",
            "notes": "",
            "cwes": ["CWE-400"]
        }
    ]
}"#;

const KEV_CSV: &str = "\u{feff}cveID,vendorProject,product,vulnerabilityName,dateAdded,shortDescription,requiredAction,dueDate,knownRansomwareCampaignUse,notes,cwes\r\n\
CVE-2017-0144,Microsoft,SMBv1,Microsoft SMBv1 Remote Code Execution Vulnerability,2022-02-10,\"The SMBv1 server in Microsoft Windows allows remote attackers to execute arbitrary code via crafted packets, aka \"\"Windows SMB Remote Code Execution Vulnerability.\"\"\",Apply updates per vendor instructions.,2022-08-10,Known,https://nvd.nist.gov/vuln/detail/CVE-2017-0144,CWE-20\r\n\
CVE-2014-0160,OpenSSL,OpenSSL,OpenSSL Information Disclosure Vulnerability,2022-05-04,The TLS and DTLS implementations in OpenSSL do not properly handle Heartbeat Extension packets.,Apply updates per vendor instructions.,2022-05-25,Unknown,,CWE-125\r\n";

#[test]
fn epss_csv_as_published() -> TestResult {
    let mut e = Enrichment::new();
    assert_eq!(e.load_epss_csv(EPSS_CSV.as_bytes())?, 4);
    let Some(log4j) = e.epss("CVE-2021-44228") else { return Err("log4j missing".into()) };
    assert_eq!(log4j.score, 0.97565);
    assert_eq!(log4j.percentile, 0.99992);
    assert_eq!(e.epss("cve-2024-12345").map(|s| s.score), Some(0.00043), "ids are case-insensitive");
    assert!(e.epss("CVE-2000-0000").is_none());
    assert!(e.epss("not a cve").is_none());
    assert_eq!(e.epss_model_version(), Some("v2023.03.01"));
    assert_eq!(e.epss_score_date(), Some("2024-10-24T00:00:00+0000"));
    // Without the comment line, as older files were published.
    let mut e = Enrichment::new();
    assert_eq!(e.load_epss_csv(b"cve,epss,percentile\nCVE-2020-0001,0.5,0.9\n")?, 1);
    Ok(())
}

#[test]
fn epss_rejects_bad_rows() {
    let bad: [&[u8]; 6] = [
        b"cve,epss,percentile\nCVE-2021-44228,1.5,0.9\n",
        b"cve,epss,percentile\nCVE-2021-44228,-0.1,0.9\n",
        b"cve,epss,percentile\nCVE-2021-44228,NaN,0.9\n",
        b"cve,epss,percentile\nCVE-21-44228,0.1,0.9\n",
        b"cve,epss,percentile\nCVE-2021-123,0.1,0.9\n",
        b"cve,score\nCVE-2021-44228,0.1\n",
    ];
    for input in bad {
        let mut e = Enrichment::new();
        assert!(e.load_epss_csv(input).is_err(), "accepted {:?}", String::from_utf8_lossy(input));
        assert_eq!(e.epss_len(), 0, "a rejected file loads nothing");
    }
    let mut e = Enrichment::new();
    let err = e.load_epss_csv(b"cve,epss,percentile\nCVE-2021-0001,0.1,0.2\nCVE-2021-0002,2,0.2\n").err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("row 2"), "{msg}");
}

#[test]
fn kev_json_as_published() -> TestResult {
    let mut e = Enrichment::new();
    assert_eq!(e.load_kev_json(KEV_JSON.as_bytes())?, 2);
    let Some(log4j) = e.kev("CVE-2021-44228") else { return Err("log4j missing".into()) };
    assert_eq!(log4j.vendor, "Apache");
    assert_eq!(log4j.product, "Log4j2");
    assert_eq!(log4j.date_added, "2021-12-10");
    assert_eq!(log4j.due_date.as_deref(), Some("2021-12-24"));
    assert!(log4j.known_ransomware);
    assert!(log4j.required_action.starts_with("For all affected software"));
    let Some(plc) = e.kev("CVE-2019-10953") else { return Err("PLC entry missing".into()) };
    assert!(!plc.known_ransomware);
    assert_eq!(e.kev_catalog_version(), Some("2024.10.24"));
    assert!(e.kev("CVE-2017-0144").is_none());
    Ok(())
}

#[test]
fn kev_csv_as_published() -> TestResult {
    let mut e = Enrichment::new();
    assert_eq!(e.load_kev_csv(KEV_CSV.as_bytes())?, 2);
    let Some(smb) = e.kev("CVE-2017-0144") else { return Err("SMB entry missing".into()) };
    assert_eq!(smb.vendor, "Microsoft");
    assert_eq!(smb.product, "SMBv1");
    assert!(smb.known_ransomware);
    assert_eq!(smb.due_date.as_deref(), Some("2022-08-10"));
    let Some(heartbleed) = e.kev("CVE-2014-0160") else { return Err("Heartbleed missing".into()) };
    assert!(!heartbleed.known_ransomware);
    Ok(())
}

#[test]
fn kev_rejects_bad_entries() {
    let mut e = Enrichment::new();
    assert!(e.load_kev_json(br#"{"vulnerabilities":[{"cveID":"CVE-2021-1","dateAdded":"2021-01-01"}]}"#).is_err());
    assert!(e.load_kev_json(br#"{"vulnerabilities":[{"cveID":"CVE-2021-0001","dateAdded":"01/02/2021"}]}"#).is_err());
    assert!(
        e.load_kev_json(
            br#"{"vulnerabilities":[{"cveID":"CVE-2021-0001","dateAdded":"2021-01-01","dueDate":"soon"}]}"#
        )
        .is_err()
    );
    assert!(e.load_kev_json(b"[]").is_err());
    assert!(e.load_kev_csv(b"cve,date\nCVE-2021-0001,2021-01-01\n").is_err());
    assert_eq!(e.kev_len(), 0);
    // A minimal valid entry: optional fields absent.
    assert!(matches!(
        e.load_kev_json(br#"{"vulnerabilities":[{"cveID":"CVE-2021-0001","dateAdded":"2021-01-01"}]}"#),
        Ok(1)
    ));
}

#[test]
fn load_file_by_extension_and_content() -> TestResult {
    let dir = tempfile::tempdir()?;
    let epss = dir.path().join("epss_scores-2024-10-24.csv");
    let kev_json = dir.path().join("known_exploited_vulnerabilities.json");
    let kev_csv = dir.path().join("known_exploited_vulnerabilities.csv");
    let gz = dir.path().join("epss_scores-2024-10-24.csv.gz");
    std::fs::write(&epss, EPSS_CSV)?;
    std::fs::write(&kev_json, KEV_JSON)?;
    std::fs::write(&kev_csv, KEV_CSV)?;
    std::fs::write(&gz, [0x1f, 0x8b, 0x08, 0x00])?;
    let mut e = Enrichment::new();
    assert_eq!(e.load_file(&epss)?, 4);
    assert_eq!(e.load_file(&kev_json)?, 2);
    assert_eq!(e.load_file(&kev_csv)?, 2);
    assert_eq!(e.kev_len(), 4);
    assert_eq!(e.epss_len(), 4);
    let err = e.load_file(&gz).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("decompress"), "{err}");
    assert!(e.load_file(&dir.path().join("missing.csv")).is_err());
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "a,b\n1,2\n")?;
    assert!(e.load_file(&other).is_err());
    Ok(())
}

#[test]
fn fuzz_entry_never_panics() {
    for input in [
        &b""[..],
        b"#",
        b"#model_version",
        b"\xef\xbb\xbf",
        b"cve,epss,percentile\n\"unterminated",
        b"{\"vulnerabilities\":[{}]}",
        b"\xff\xfe\x00",
        EPSS_CSV.as_bytes(),
        KEV_JSON.as_bytes(),
        KEV_CSV.as_bytes(),
    ] {
        fuzz_enrich(input);
    }
}

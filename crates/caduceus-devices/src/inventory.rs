//! The device inventory: what a hospital owns, where it is, what it does clinically, and how
//! the network knows it. Devices come from the API, from an inventory CSV, or are confirmed
//! from the "unknown devices" the network inputs saw.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{DevicesError, Result, check_size};

/// How much harm the device's failure could do to a patient. Ordered from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// Keeps a patient alive: ventilators, infusion pumps on critical drugs, pacemaker programmers.
    LifeSustaining,
    /// Delivers therapy: infusion pumps, dialysis, radiotherapy.
    Therapeutic,
    /// Informs diagnosis: imaging modalities, patient monitors, lab analysers.
    Diagnostic,
    /// No clinical function: printers, badge readers, building systems.
    NonClinical,
    /// Not yet classified. Weighted as therapeutic until someone says otherwise.
    #[default]
    Unknown,
}

impl Criticality {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LifeSustaining => "life_sustaining",
            Self::Therapeutic => "therapeutic",
            Self::Diagnostic => "diagnostic",
            Self::NonClinical => "non_clinical",
            Self::Unknown => "unknown",
        }
    }

    /// Accepts the snake_case names and common spellings (`life-sustaining`, `Life Sustaining`).
    pub fn parse(text: &str) -> Option<Self> {
        let key: String =
            text.trim().chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
        Some(match key.as_str() {
            "lifesustaining" | "lifesupport" | "lifecritical" => Self::LifeSustaining,
            "therapeutic" | "therapy" => Self::Therapeutic,
            "diagnostic" | "diagnosis" | "monitoring" => Self::Diagnostic,
            "nonclinical" | "none" => Self::NonClinical,
            "" | "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

/// One device in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The hospital's own asset id (letters, digits and `._:-`, up to 128).
    pub id: String,
    pub manufacturer: String,
    pub model: String,
    #[serde(default)]
    pub serial: Option<String>,
    /// Firmware or software version, as the manufacturer writes it.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// DICOM application entity title.
    #[serde(default)]
    pub ae_title: Option<String>,
    /// HL7 v2 sending application (MSH-3).
    #[serde(default)]
    pub hl7_application: Option<String>,
    /// What it does, in the clinic's words ("infusion pump", "CT scanner").
    #[serde(default)]
    pub clinical_function: Option<String>,
    #[serde(default)]
    pub criticality: Criticality,
    /// Who answers for it (a department or a person's role, not a patient).
    #[serde(default)]
    pub owner: Option<String>,
    /// `YYYY-MM-DD`: when the manufacturer stops shipping fixes.
    #[serde(default)]
    pub end_of_support: Option<String>,
    /// The network segment it belongs in, as CIDR (`10.20.0.0/16`). Traffic to peers outside
    /// it counts as exposure.
    #[serde(default)]
    pub segment: Option<String>,
}

const MAX_ID: usize = 128;
const MAX_FIELD: usize = 256;

impl Device {
    /// Check every field; the error names the field, never echoes long values.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| DevicesError::Value {
            kind: field,
            value: String::new(),
            reason: reason.to_owned(),
        };
        if self.id.is_empty() || self.id.len() > MAX_ID {
            return Err(bad("id", "must be 1 to 128 characters"));
        }
        if !self.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')) {
            return Err(bad("id", "may hold only letters, digits and . _ : -"));
        }
        if self.manufacturer.trim().is_empty() {
            return Err(bad("manufacturer", "is required"));
        }
        if self.model.trim().is_empty() {
            return Err(bad("model", "is required"));
        }
        let texts = [
            ("manufacturer", Some(&self.manufacturer)),
            ("model", Some(&self.model)),
            ("serial", self.serial.as_ref()),
            ("version", self.version.as_ref()),
            ("location", self.location.as_ref()),
            ("hostname", self.hostname.as_ref()),
            ("ae_title", self.ae_title.as_ref()),
            ("hl7_application", self.hl7_application.as_ref()),
            ("clinical_function", self.clinical_function.as_ref()),
            ("owner", self.owner.as_ref()),
        ];
        for (field, value) in texts {
            if let Some(value) = value {
                if value.chars().count() > MAX_FIELD {
                    return Err(bad(field, "is longer than 256 characters"));
                }
                if value.chars().any(char::is_control) {
                    return Err(bad(field, "holds control characters"));
                }
            }
        }
        if let Some(mac) = &self.mac
            && normalise_mac(mac).is_none()
        {
            return Err(bad("mac", "is not a MAC address (six hex pairs)"));
        }
        if let Some(ip) = &self.ip
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(bad("ip", "is not an IPv4 or IPv6 address"));
        }
        if let Some(date) = &self.end_of_support
            && parse_date(date).is_none()
        {
            return Err(bad("end_of_support", "is not a date (YYYY-MM-DD)"));
        }
        if let Some(segment) = &self.segment
            && Cidr::parse(segment).is_none()
        {
            return Err(bad("segment", "is not CIDR (10.20.0.0/16)"));
        }
        Ok(())
    }

    /// Store empty optional text as `None`, MACs as lowercase colon-separated.
    pub fn normalise(mut self) -> Self {
        for field in [
            &mut self.serial,
            &mut self.version,
            &mut self.location,
            &mut self.mac,
            &mut self.ip,
            &mut self.hostname,
            &mut self.ae_title,
            &mut self.hl7_application,
            &mut self.clinical_function,
            &mut self.owner,
            &mut self.end_of_support,
            &mut self.segment,
        ] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            } else if let Some(v) = field {
                *v = v.trim().to_owned();
            }
        }
        self.id = self.id.trim().to_owned();
        self.manufacturer = self.manufacturer.trim().to_owned();
        self.model = self.model.trim().to_owned();
        if let Some(mac) = self.mac.as_deref().and_then(normalise_mac) {
            self.mac = Some(mac);
        }
        self
    }

    /// Has the end of support passed on `today` (`YYYY-MM-DD`)?
    pub fn out_of_support(&self, today: (i32, u8, u8)) -> bool {
        self.end_of_support.as_deref().and_then(parse_date).is_some_and(|eos| eos <= today)
    }
}

/// `aa:bb:cc:dd:ee:ff` from any of `AA-BB-...`, `aabb.ccdd.eeff` or `aabbccddeeff`.
pub fn normalise_mac(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).filter_map(|i| lower.get(i * 2..i * 2 + 2)).collect();
    Some(pairs.join(":"))
}

/// `(year, month, day)` of a `YYYY-MM-DD` date (a trailing time is ignored).
pub fn parse_date(text: &str) -> Option<(i32, u8, u8)> {
    let date = text.trim().get(..10)?;
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some((year, month, day))
}

/// An IPv4 or IPv6 network, for "is this peer inside the device's segment".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let network: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Largest inventory CSV accepted.
pub const MAX_CSV_BYTES: usize = 32 * 1024 * 1024;
/// Most rows in one inventory CSV.
pub const MAX_CSV_ROWS: usize = 200_000;

/// The result of reading an inventory CSV: every row valid, or none taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvImport {
    pub devices: Vec<Device>,
    /// Header columns that are not inventory fields (ignored, listed so typos show).
    pub ignored_columns: Vec<String>,
}

/// One row that could not be read, by line number (1 is the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// Read an inventory CSV with a header row. Required columns: `id`, `manufacturer`, `model`
/// (with `vendor`, `product`, `firmware`... accepted as synonyms, see [`column_field`]);
/// `version` is read when present. If any row is invalid, nothing is taken and every bad row
/// (up to 50) is listed, so that an import never half-happens.
pub fn read_csv(bytes: &[u8]) -> std::result::Result<CsvImport, Vec<RowError>> {
    if let Err(e) = check_size("inventory CSV", bytes, MAX_CSV_BYTES) {
        return Err(vec![RowError { line: 0, reason: e.to_string() }]);
    }
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(bytes);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![RowError { line: 1, reason: csv_reason(&e) }]),
    };
    let mut fields = Vec::new();
    let mut ignored = Vec::new();
    for header in headers.iter() {
        let field = column_field(header.trim_start_matches('\u{feff}'));
        if field.is_none() {
            ignored.push(header.chars().take(64).collect());
        }
        fields.push(field);
    }
    for required in ["id", "manufacturer", "model"] {
        if !fields.contains(&Some(required)) {
            return Err(vec![RowError { line: 1, reason: format!("the header has no `{required}` column") }]);
        }
    }
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                errors.push(RowError { line, reason: csv_reason(&e) });
                if errors.len() >= 50 {
                    break;
                }
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        if devices.len() + errors.len() >= MAX_CSV_ROWS {
            errors.push(RowError { line, reason: format!("more than {MAX_CSV_ROWS} rows") });
            break;
        }
        match device_from_row(&fields, &record) {
            Ok(device) if !seen.insert(device.id.clone()) => {
                errors.push(RowError { line, reason: "the id is used by an earlier row".into() })
            }
            Ok(device) => devices.push(device),
            Err(reason) => errors.push(RowError { line, reason }),
        }
        if errors.len() >= 50 {
            break;
        }
    }
    if errors.is_empty() { Ok(CsvImport { devices, ignored_columns: ignored }) } else { Err(errors) }
}

fn csv_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
        _ => "malformed CSV".into(),
    }
}

/// Which inventory field a CSV column holds (case, spaces and punctuation ignored).
pub fn column_field(header: &str) -> Option<&'static str> {
    let key: String = header.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    Some(match key.as_str() {
        "id" | "deviceid" | "assetid" | "assettag" => "id",
        "manufacturer" | "vendor" | "make" => "manufacturer",
        "model" | "product" | "modelname" | "productname" => "model",
        "serial" | "serialnumber" | "sn" => "serial",
        "version" | "firmware" | "firmwareversion" | "softwareversion" | "swversion" | "fwversion" => "version",
        "location" | "site" | "room" => "location",
        "mac" | "macaddress" => "mac",
        "ip" | "ipaddress" | "address" => "ip",
        "hostname" | "host" => "hostname",
        "aetitle" | "dicomaetitle" | "ae" => "ae_title",
        "hl7application" | "hl7app" | "sendingapplication" => "hl7_application",
        "clinicalfunction" | "function" | "devicetype" | "type" => "clinical_function",
        "criticality" | "clinicalcriticality" => "criticality",
        "owner" | "department" => "owner",
        "endofsupport" | "eos" | "endoflife" | "eol" => "end_of_support",
        "segment" | "networksegment" | "subnet" | "vlan" => "segment",
        _ => return None,
    })
}

fn device_from_row(fields: &[Option<&'static str>], record: &csv::StringRecord) -> std::result::Result<Device, String> {
    let mut device = Device::default();
    for (field, value) in fields.iter().zip(record.iter()) {
        let Some(field) = field else { continue };
        let text = Some(value.to_owned());
        match *field {
            "id" => device.id = value.to_owned(),
            "manufacturer" => device.manufacturer = value.to_owned(),
            "model" => device.model = value.to_owned(),
            "serial" => device.serial = text,
            "version" => device.version = text,
            "location" => device.location = text,
            "mac" => device.mac = text,
            "ip" => device.ip = text,
            "hostname" => device.hostname = text,
            "ae_title" => device.ae_title = text,
            "hl7_application" => device.hl7_application = text,
            "clinical_function" => device.clinical_function = text,
            "criticality" => {
                device.criticality = Criticality::parse(value).ok_or_else(|| {
                    "criticality must be life_sustaining, therapeutic, diagnostic, non_clinical or unknown".to_owned()
                })?
            }
            "owner" => device.owner = text,
            "end_of_support" => device.end_of_support = text,
            "segment" => device.segment = text,
            _ => {}
        }
    }
    let device = device.normalise();
    device.validate().map_err(|e| e.to_string())?;
    Ok(device)
}

/// Fuzz entry point: read an inventory CSV; the result is dropped.
pub fn fuzz_inventory(data: &[u8]) {
    let _ = read_csv(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn csv_with_synonyms_and_extra_columns() -> TestResult {
        let csv = "Asset ID,Vendor,Product,Firmware Version,IP Address,Criticality,End of support,Notes\n\
                   pump-1,BD,Alaris 8015,9.33,10.1.2.3,life-sustaining,2024-12-31,bay 4\n\
                   mon-2,Philips,IntelliVue MX40,B.06.75,,diagnostic,,\n";
        let import = read_csv(csv.as_bytes()).map_err(|e| format!("{e:?}"))?;
        assert_eq!(import.devices.len(), 2);
        assert_eq!(import.ignored_columns, vec!["Notes".to_owned()]);
        let pump = import.devices.first().cloned().unwrap_or_default();
        assert_eq!(pump.criticality, Criticality::LifeSustaining);
        assert_eq!(pump.version.as_deref(), Some("9.33"));
        assert!(pump.out_of_support((2025, 1, 1)));
        assert!(!pump.out_of_support((2024, 6, 1)));
        Ok(())
    }

    #[test]
    fn a_bad_row_rejects_the_whole_file_with_line_numbers() -> TestResult {
        let csv = "id,manufacturer,model,version,ip\na,B,C,1,10.0.0.1\nb,B,C,1,not-an-ip\na,B,C,2,\n";
        let Err(errors) = read_csv(csv.as_bytes()) else { return Err("accepted".into()) };
        assert_eq!(errors.len(), 2);
        assert_eq!(errors.first().map(|e| e.line), Some(3));
        assert_eq!(errors.get(1).map(|e| e.line), Some(4));
        let Err(errors) = read_csv(b"id,model\nx,y\n") else { return Err("accepted".into()) };
        assert!(errors.first().is_some_and(|e| e.reason.contains("manufacturer")));
        Ok(())
    }

    #[test]
    fn cidr_and_mac() -> TestResult {
        let net = Cidr::parse("10.20.0.0/16").ok_or("cidr")?;
        assert!(net.contains("10.20.255.1".parse()?));
        assert!(!net.contains("10.21.0.1".parse()?));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert_eq!(normalise_mac("00-1B-63-84-45-E6").as_deref(), Some("00:1b:63:84:45:e6"));
        assert_eq!(normalise_mac("001b.6384.45e6").as_deref(), Some("00:1b:63:84:45:e6"));
        assert_eq!(normalise_mac("00:1b:63"), None);
        Ok(())
    }
}

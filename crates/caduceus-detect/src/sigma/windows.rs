//! Windows event logs in evtx-JSON form (`{"Event":{"System":..,
//! "EventData":..}}`, as evtx_dump and Hayabusa write them): the Sigma log
//! source derived from the channel and event id, the way pySigma's Windows
//! and Sysmon pipelines map them, and the fields named as Sigma rules name
//! them. Knows nothing about rules.

use serde_json::{Map, Value};

use super::event::{Builder, Event};

/// Channel (lowercase) → Sigma service(s), after pySigma's
/// `windows_logsource_mapping` plus the services SigmaHQ rules name that it
/// lacks (`ldap`, `iis-configuration`, the SMB connectivity logs).
const CHANNELS: &[(&str, &[&str])] = &[
    ("security", &["security"]),
    ("application", &["application"]),
    ("system", &["system"]),
    ("microsoft-windows-sysmon/operational", &["sysmon"]),
    ("microsoft-windows-powershell/operational", &["powershell"]),
    ("powershellcore/operational", &["powershell"]),
    ("windows powershell", &["powershell-classic"]),
    ("microsoft-windows-taskscheduler/operational", &["taskscheduler"]),
    ("microsoft-windows-wmi-activity/operational", &["wmi"]),
    ("dns server", &["dns-server"]),
    ("microsoft-windows-dns-server/audit", &["dns-server-audit"]),
    ("microsoft-windows-dns-server/analytical", &["dns-server-analytic"]),
    ("microsoft-windows-driverframeworks-usermode/operational", &["driver-framework"]),
    ("microsoft-windows-ntlm/operational", &["ntlm"]),
    ("microsoft-windows-dhcp-server/operational", &["dhcp"]),
    ("msexchange management", &["msexchange-management"]),
    ("microsoft-windows-applocker/msi and script", &["applocker"]),
    ("microsoft-windows-applocker/exe and dll", &["applocker"]),
    ("microsoft-windows-applocker/packaged app-deployment", &["applocker"]),
    ("microsoft-windows-applocker/packaged app-execution", &["applocker"]),
    ("microsoft-windows-printservice/admin", &["printservice-admin"]),
    ("microsoft-windows-printservice/operational", &["printservice-operational"]),
    ("microsoft-windows-codeintegrity/operational", &["codeintegrity-operational"]),
    ("microsoft-windows-smbclient/security", &["smbclient-security"]),
    ("microsoft-windows-smbclient/connectivity", &["smbclient-connectivity"]),
    ("microsoft-windows-smbserver/connectivity", &["smbserver-connectivity"]),
    ("microsoft-windows-windows firewall with advanced security/firewall", &["firewall-as"]),
    ("microsoft-windows-bits-client/operational", &["bits-client"]),
    ("microsoft-windows-windows defender/operational", &["windefend"]),
    ("microsoft-windows-terminalservices-localsessionmanager/operational", &["terminalservices-localsessionmanager"]),
    ("microsoft-servicebus-client", &["microsoft-servicebus-client"]),
    ("microsoft-windows-ldap-client/debug", &["ldap_debug", "ldap"]),
    ("microsoft-windows-security-mitigations/kernel mode", &["security-mitigations"]),
    ("microsoft-windows-security-mitigations/user mode", &["security-mitigations"]),
    ("microsoft-windows-diagnosis-scripted/operational", &["diagnosis-scripted"]),
    ("microsoft-windows-shell-core/operational", &["shell-core"]),
    ("openssh/operational", &["openssh"]),
    ("microsoft-windows-bitlocker/bitlocker management", &["bitlocker"]),
    ("microsoft-windows-vhdmp/operational", &["vhdmp"]),
    ("microsoft-windows-appxdeploymentserver/operational", &["appxdeployment-server"]),
    ("microsoft-windows-lsa/operational", &["lsa-server"]),
    ("microsoft-windows-appxpackaging/operational", &["appxpackaging-om"]),
    ("microsoft-windows-dns client events/operational", &["dns-client"]),
    ("microsoft-windows-appmodel-runtime/admin", &["appmodel-runtime"]),
    ("microsoft-windows-capi2/operational", &["capi2"]),
    (
        "microsoft-windows-certificateservicesclient-lifecycle-system/operational",
        &["certificateservicesclient-lifecycle-system"],
    ),
    ("microsoft-iis-configuration/operational", &["iis-configuration"]),
];

/// Sysmon event id → generic categories (pySigma's Sysmon pipeline, read
/// backwards: a rule of category `registry_add` becomes "EventID 12", so
/// every event 12 belongs to it, and 26, file deletions only logged, also to
/// `file_delete`).
fn sysmon_categories(id: u64) -> &'static [&'static str] {
    match id {
        1 => &["process_creation"],
        2 => &["file_change"],
        3 => &["network_connection"],
        4 | 16 => &["sysmon_status"],
        5 => &["process_termination"],
        6 => &["driver_load"],
        7 => &["image_load"],
        8 => &["create_remote_thread"],
        9 => &["raw_access_thread"],
        10 => &["process_access"],
        11 => &["file_event"],
        12 => &["registry_add", "registry_delete", "registry_event"],
        13 => &["registry_set", "registry_event"],
        14 => &["registry_rename", "registry_event"],
        15 => &["create_stream_hash"],
        17 | 18 => &["pipe_created"],
        19..=21 => &["wmi_event"],
        22 => &["dns_query"],
        23 => &["file_delete"],
        24 => &["clipboard_capture"],
        25 => &["process_tampering"],
        26 => &["file_delete_detected", "file_delete"],
        27 => &["file_block_executable"],
        28 => &["file_block_shredding"],
        29 => &["file_executable_detected"],
        255 => &["sysmon_error"],
        _ => &[],
    }
}

/// Categories of the built-in logs (pySigma's Windows pipeline: PowerShell
/// 4103/4104 and the classic 400/600/800; Security 4688 from its audit
/// pipeline).
fn builtin_categories(service: &str, id: u64) -> &'static [&'static str] {
    match (service, id) {
        ("sysmon", id) => sysmon_categories(id),
        ("security", 4688) => &["process_creation"],
        ("powershell", 4103) => &["ps_module"],
        ("powershell", 4104) => &["ps_script"],
        ("powershell-classic", 400) => &["ps_classic_start"],
        ("powershell-classic", 600) => &["ps_classic_provider_start"],
        ("powershell-classic", 800) => &["ps_classic_script"],
        _ => &[],
    }
}

/// The Sigma service(s) of a channel; an unknown channel keeps its own
/// name, lowercased, so that no rule of a known service claims it.
pub(crate) fn channel_services(channel: &str) -> Vec<String> {
    let folded = channel.trim().to_lowercase();
    match CHANNELS.iter().find(|(c, _)| *c == folded) {
        Some((_, services)) => services.iter().map(|s| (*s).to_owned()).collect(),
        None if folded.is_empty() => Vec::new(),
        None => vec![folded],
    }
}

fn scalar_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(o) => o.get("#text").and_then(scalar_u64),
        _ => None,
    }
}

/// System section: scalars by name, XML attributes as `Tag_Attribute`
/// (`Provider_Name`, `Security_UserID`, `Execution_ProcessID`), element text
/// by the tag name (`EventID` from `{"#text": 4688, ...}`).
fn system_fields(b: &mut Builder, system: &Map<String, Value>) {
    let mut name = String::new();
    for (key, value) in system {
        match value {
            Value::Object(obj) => {
                if let Some(text) = obj.get("#text") {
                    b.push_json(key, text);
                }
                if let Some(Value::Object(attrs)) = obj.get("#attributes") {
                    for (attr, v) in attrs {
                        name.clear();
                        name.push_str(key);
                        name.push('_');
                        name.push_str(attr);
                        b.push_json(&name, v);
                    }
                }
            }
            Value::Array(_) => {}
            scalar => b.push_json(key, scalar),
        }
    }
}

/// `<Data Name="x">v</Data>` in its JSON forms: a map of names (evtx_dump),
/// or `Data` as a list of `{"#attributes":{"Name":..},"#text":..}` or of
/// bare strings (classic PowerShell), which stay under `Data`.
fn event_data(b: &mut Builder, data: &Map<String, Value>) {
    for (key, value) in data {
        if key == "#attributes" {
            continue;
        }
        if key == "Data" {
            let items: &[Value] = match value {
                Value::Array(items) => items,
                other => std::slice::from_ref(other),
            };
            for item in items {
                named_data(b, item);
            }
            continue;
        }
        match value {
            Value::Object(obj) if obj.contains_key("#text") => {
                if let Some(text) = obj.get("#text") {
                    b.push_json(key, text);
                }
            }
            Value::Object(_) => leaves(b, value, 1),
            Value::Array(items) => {
                for item in items {
                    b.push_json(key, item);
                }
            }
            scalar => b.push_json(key, scalar),
        }
    }
}

fn named_data(b: &mut Builder, item: &Value) {
    if let Value::Object(obj) = item {
        let name = obj.get("#attributes").and_then(|a| a.get("Name")).and_then(Value::as_str);
        let text = obj.get("#text").unwrap_or(&Value::Null);
        match name {
            Some(name) => b.push_json(name, text),
            None => b.push_json("Data", text),
        }
    } else {
        b.push_json("Data", item);
    }
}

/// UserData and nested EventData: every leaf by its own key (Sigma rules
/// name `Operation`, not `UserData.Operation_ClientFailure.Operation`).
fn leaves(b: &mut Builder, value: &Value, depth: usize) {
    if depth > 16 {
        return;
    }
    if let Value::Object(obj) = value {
        for (key, v) in obj {
            if key == "#attributes" {
                continue;
            }
            match v {
                Value::Object(_) => leaves(b, v, depth + 1),
                Value::Array(items) => {
                    for item in items {
                        match item {
                            Value::Object(_) => leaves(b, item, depth + 1),
                            scalar => b.push_json(key, scalar),
                        }
                    }
                }
                scalar => b.push_json(key, scalar),
            }
        }
    }
}

/// See [`Event::from_evtx_json`].
pub(crate) fn from_evtx_json(value: &Value) -> Option<Event> {
    let event = match value.get("Event") {
        Some(inner) if inner.is_object() => inner,
        _ => value,
    };
    let system = event.get("System")?.as_object()?;
    let mut b = Builder::default();
    system_fields(&mut b, system);
    if let Some(Value::Object(data)) = event.get("EventData") {
        event_data(&mut b, data);
    }
    if let Some(user) = event.get("UserData") {
        leaves(&mut b, user, 0);
    }
    let channel = system.get("Channel").and_then(Value::as_str).unwrap_or_default();
    let services = channel_services(channel);
    let id = system.get("EventID").and_then(scalar_u64);
    let mut categories: Vec<&str> = Vec::new();
    if let Some(id) = id {
        for service in &services {
            categories.extend_from_slice(builtin_categories(service, id));
        }
    }
    if categories.contains(&"process_creation") && services.iter().any(|s| s == "security") {
        // The Security log names them differently (pySigma's audit pipeline).
        b.alias("NewProcessName", "Image");
        b.alias("ParentProcessName", "ParentImage");
        b.alias("SubjectLogonId", "LogonId");
    }
    let services: Vec<&str> = services.iter().map(String::as_str).collect();
    Some(b.finish(Some("windows"), &services, &categories))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::FieldLookup;
    use serde_json::json;

    #[test]
    fn sysmon_registry_event_has_all_its_categories() {
        let ev = Event::from_evtx_json(&json!({"Event": {
            "System": {"EventID": 13, "Channel": "Microsoft-Windows-Sysmon/Operational",
                       "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}}, "Computer": "pc1",
                       "Security": {"#attributes": {"UserID": "S-1-5-18"}}},
            "EventData": {"TargetObject": "HKLM\\Software\\x", "Details": "DWORD (0x00000001)"}
        }}))
        .unwrap();
        assert_eq!(ev.categories().collect::<Vec<_>>(), ["registry_set", "registry_event"]);
        assert_eq!(ev.services().collect::<Vec<_>>(), ["sysmon"]);
        assert_eq!(ev.field("Provider_Name").as_deref(), Some("Microsoft-Windows-Sysmon"));
        assert_eq!(ev.field("Security_UserID").as_deref(), Some("S-1-5-18"));
        assert_eq!(ev.field("EventID").as_deref(), Some("13"));
        assert_eq!(ev.field("Computer").as_deref(), Some("pc1"));
    }

    #[test]
    fn security_4688_is_process_creation_with_sigma_names() {
        let ev = Event::from_evtx_json(&json!({"Event": {
            "System": {"EventID": {"#text": 4688, "#attributes": {"Qualifiers": 0}}, "Channel": "Security"},
            "EventData": {"Data": [
                {"#attributes": {"Name": "NewProcessName"}, "#text": "C:\\Windows\\System32\\whoami.exe"},
                {"#attributes": {"Name": "ParentProcessName"}, "#text": "C:\\Windows\\System32\\cmd.exe"}
            ]}
        }}))
        .unwrap();
        assert_eq!(ev.categories().collect::<Vec<_>>(), ["process_creation"]);
        assert_eq!(ev.field("Image").as_deref(), Some("C:\\Windows\\System32\\whoami.exe"));
        assert_eq!(ev.field("ParentImage").as_deref(), Some("C:\\Windows\\System32\\cmd.exe"));
        assert_eq!(ev.field("EventID").as_deref(), Some("4688"));
    }

    #[test]
    fn user_data_leaves_and_classic_data() {
        let ev = Event::from_evtx_json(&json!({"Event": {
            "System": {"EventID": 400, "Channel": "Windows PowerShell"},
            "EventData": {"Data": ["Available", "HostApplication=powershell.exe -nop"]},
            "UserData": {"Op": {"#attributes": {"xmlns": "x"}, "Operation": "Start"}}
        }}))
        .unwrap();
        assert_eq!(ev.categories().collect::<Vec<_>>(), ["ps_classic_start"]);
        assert_eq!(ev.values_named("data").len(), 2);
        assert_eq!(ev.field("Operation").as_deref(), Some("Start"));
        assert!(Event::from_evtx_json(&json!({"Event": {"EventData": {}}})).is_none());
    }
}

//! Outside input to identity: a WebAuthn client's assertion JSON (from any
//! browser, before the user is known) and an offline breached-password file
//! (downloaded, possibly truncated or damaged). Neither may panic, and a
//! made-up assertion must never be accepted.
#![no_main]

use caduceus_identity::breached::BreachedList;
use caduceus_identity::passkeys::Passkeys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    if selector % 2 == 0 {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
        let origin = url::Url::parse("https://caduceus.example").expect("a valid URL");
        let passkeys = Passkeys::new("caduceus.example", &origin, "Caduceus").expect("a valid relying party");
        let _ = passkeys.identify(&value);
        let (_, ceremony) = passkeys.start_discoverable().expect("a ceremony starts");
        assert!(passkeys.finish_discoverable(&value, ceremony, &[]).is_err());
    } else {
        let dir = std::env::temp_dir().join(format!("caduceus-fuzz-breached-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("pwned.txt");
        if std::fs::write(&path, rest).is_err() {
            return;
        }
        if let Ok(list) = BreachedList::open(&path) {
            let _ = list.count("correct horse battery staple");
            let _ = list.count("password1234");
        }
    }
});

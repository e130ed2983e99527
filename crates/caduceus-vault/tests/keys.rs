//! Envelope encryption: round trips, associated-data binding, tampering,
//! KEK rotation, crypto-shredding, the KEK file, and hostile encodings.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::os::unix::fs::PermissionsExt;

use caduceus_vault::keys::{DataKey, Kek, KeyError, WrappedKey, resource_aad};

const RECORD: &[u8] = br#"{"resourceType":"Patient","id":"p-1","name":[{"family":"Okonkwo","given":["Adaeze"]}],"birthDate":"1961-03-14"}"#;

fn kek(dir: &tempfile::TempDir, name: &str) -> Kek {
    Kek::load_or_create(&dir.path().join(name)).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn round_trip_through_wrap_and_seal() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek(&dir, "kek");
    let dek = DataKey::generate().unwrap();
    let aad = resource_aad("Patient", "p-1", 1);
    let sealed = dek.seal(RECORD, &aad).unwrap();
    assert_eq!(sealed[0], 1, "version byte");

    let stored = kek.wrap(&dek).unwrap().to_bytes();
    drop(dek);
    let wrapped = WrappedKey::from_bytes(&stored).unwrap();
    assert_eq!(wrapped.kek_id(), kek.id());
    let dek = kek.unwrap(&wrapped).unwrap();
    assert_eq!(dek.open(&sealed, &aad).unwrap(), RECORD);
    assert_eq!(kek.id().to_string().len(), 16, "8 bytes as hex");
}

#[test]
fn sealing_twice_gives_different_ciphertexts() {
    let dek = DataKey::generate().unwrap();
    let aad = resource_aad("Patient", "p-1", 1);
    assert_ne!(dek.seal(RECORD, &aad).unwrap(), dek.seal(RECORD, &aad).unwrap(), "fresh nonces");
}

#[test]
fn associated_data_binds_type_id_and_version() {
    let dek = DataKey::generate().unwrap();
    let sealed = dek.seal(RECORD, &resource_aad("Patient", "p-1", 1)).unwrap();
    assert!(dek.open(&sealed, &resource_aad("Patient", "p-1", 1)).is_ok());
    for aad in [
        resource_aad("Patient", "p-1", 2),
        resource_aad("Patient", "p-2", 1),
        resource_aad("Observation", "p-1", 1),
        resource_aad("Patientp", "-1", 1),
        Vec::new(),
    ] {
        assert!(matches!(dek.open(&sealed, &aad), Err(KeyError::Decrypt)));
    }
}

#[test]
fn any_tampered_byte_is_refused() {
    let dek = DataKey::generate().unwrap();
    let aad = resource_aad("Patient", "p-1", 1);
    let sealed = dek.seal(RECORD, &aad).unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(dek.open(&bad, &aad).is_err(), "flipping byte {i} went unnoticed");
    }

    let dir = tempfile::tempdir().unwrap();
    let kek = kek(&dir, "kek");
    let wrapped = kek.wrap(&dek).unwrap().to_bytes();
    for i in 0..wrapped.len() {
        let mut bad = wrapped.clone();
        bad[i] ^= 0x01;
        let unwrapped = WrappedKey::from_bytes(&bad).and_then(|w| kek.unwrap(&w));
        assert!(unwrapped.is_err(), "flipping wrapped byte {i} went unnoticed");
    }
}

#[test]
fn a_different_kek_does_not_unwrap() {
    let dir = tempfile::tempdir().unwrap();
    let (kek_a, kek_b) = (kek(&dir, "a"), kek(&dir, "b"));
    assert_ne!(kek_a.id(), kek_b.id());
    let wrapped = kek_a.wrap(&DataKey::generate().unwrap()).unwrap();
    assert!(matches!(kek_b.unwrap(&wrapped), Err(KeyError::WrongKek { .. })));
    // Even with the id forged to match, the AEAD refuses it.
    let mut forged = wrapped.to_bytes();
    forged[1..9].copy_from_slice(&kek_b.id().0);
    assert!(matches!(kek_b.unwrap(&WrappedKey::from_bytes(&forged).unwrap()), Err(KeyError::Decrypt)));
}

#[test]
fn rewrap_moves_the_data_key_to_the_new_kek() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (kek(&dir, "old"), kek(&dir, "new"));
    let dek = DataKey::generate().unwrap();
    let aad = resource_aad("Observation", "o-7", 3);
    let sealed = dek.seal(RECORD, &aad).unwrap();
    let wrapped = old.wrap(&dek).unwrap();
    drop(dek);

    let rewrapped = old.rewrap(&new, &wrapped).unwrap();
    assert_eq!(rewrapped.kek_id(), new.id());
    assert!(old.unwrap(&rewrapped).is_err(), "the old kek no longer unwraps");
    assert_eq!(new.unwrap(&rewrapped).unwrap().open(&sealed, &aad).unwrap(), RECORD, "the data still opens");
    assert!(new.rewrap(&old, &wrapped).is_err(), "rewrap needs the kek that wrapped it");
}

#[test]
fn deleting_the_wrapped_data_key_shreds_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek(&dir, "kek");
    let aad = resource_aad("Patient", "p-1", 1);
    let dek = DataKey::generate().unwrap();
    let sealed: Vec<Vec<u8>> = (0..4).map(|_| dek.seal(RECORD, &aad).unwrap()).collect();
    let stored_dek = kek.wrap(&dek).unwrap().to_bytes();
    drop(dek);
    drop(stored_dek); // the erasure: the only copy of the data key is gone

    for s in &sealed {
        // The stored bytes hold none of the record, not even a fragment.
        for fragment in [&b"Okonkwo"[..], b"Adaeze", b"1961-03-14", b"resourceType", RECORD] {
            assert!(!contains(s, fragment));
        }
        // Neither the KEK (which never touched the data) nor any other key opens it.
        assert!(DataKey::generate().unwrap().open(s, &aad).is_err());
        assert!(WrappedKey::from_bytes(s).and_then(|w| kek.unwrap(&w)).is_err());
    }
}

#[test]
fn kek_file_is_private_stable_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.kek");
    let created = Kek::load_or_create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");

    let reloaded = Kek::load_or_create(&path).unwrap();
    assert_eq!(reloaded.id(), created.id());
    let wrapped = created.wrap(&DataKey::generate().unwrap()).unwrap();
    assert!(reloaded.unwrap(&wrapped).is_ok(), "the same key, not just the same id");
    assert_eq!(Kek::load(&path).unwrap().id(), created.id());
    assert!(!format!("{created:?}").contains(&std::fs::read_to_string(&path).unwrap()[22..86]));

    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let refused = Kek::load_or_create(&path);
        assert!(matches!(refused, Err(KeyError::KeyFilePermissions { .. })), "mode {mode:o}");
        assert!(refused.unwrap_err().to_string().contains("chmod 600"));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Kek::load(&path).is_ok());
}

#[test]
fn malformed_kek_files_are_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let short = format!("caduceus vault kek v1\n{}\n", "ab".repeat(31));
    let long = format!("caduceus vault kek v1\n{}\n", "ab".repeat(33));
    let not_hex = format!("caduceus vault kek v1\n{}\n", "zz".repeat(32));
    let no_header = format!("{}\n", "ab".repeat(32));
    let raw = vec![7u8; 32];
    for (i, contents) in
        [short.into_bytes(), long.into_bytes(), not_hex.into_bytes(), no_header.into_bytes(), raw, Vec::new()]
            .into_iter()
            .enumerate()
    {
        let path = dir.path().join(format!("bad-{i}.kek"));
        std::fs::write(&path, &contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Kek::load_or_create(&path), Err(KeyError::KeyFileMalformed { .. })), "case {i}");
        assert_eq!(std::fs::read(&path).unwrap(), contents, "a bad key file is never overwritten");
    }
    assert!(Kek::load(&dir.path().join("missing.kek")).is_err(), "load alone never creates");
    assert!(Kek::load_or_create(dir.path()).is_err(), "a directory is not a key file");
}

/// A small deterministic generator, so failures reproduce.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn hostile_encodings_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek(&dir, "kek");
    let dek = DataKey::generate().unwrap();
    let wrapped = kek.wrap(&dek).unwrap().to_bytes();
    let sealed = dek.seal(RECORD, b"aad").unwrap();

    for len in 0..wrapped.len() {
        assert!(WrappedKey::from_bytes(&wrapped[..len]).is_err(), "truncated to {len}");
    }
    let mut longer = wrapped.clone();
    longer.push(0);
    assert!(WrappedKey::from_bytes(&longer).is_err());
    let mut v2 = wrapped.clone();
    v2[0] = 2;
    assert!(matches!(WrappedKey::from_bytes(&v2), Err(KeyError::UnsupportedVersion { version: 2, .. })));
    for len in 0..sealed.len() {
        assert!(dek.open(&sealed[..len], b"aad").is_err(), "truncated to {len}");
    }

    let mut state = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2000 {
        let len = usize::try_from(xorshift(&mut state) % 160).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state).to_le_bytes()[0]).collect();
        if round % 2 == 0 && !bytes.is_empty() {
            bytes[0] = 1; // get past the version check
        }
        if let Ok(w) = WrappedKey::from_bytes(&bytes) {
            assert_eq!(w.to_bytes(), bytes, "decoding is exact");
            assert!(kek.unwrap(&w).is_err());
        }
        assert!(dek.open(&bytes, b"aad").is_err());
    }
}

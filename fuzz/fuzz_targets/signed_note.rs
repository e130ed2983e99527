//! Signed notes, checkpoints and tlog-proof bundles arrive from partner
//! logs, witnesses and patients checking their records:
//! parsing must never panic, what parses must re-encode to the same bytes,
//! and verification against a fixed key must never succeed on input the
//! fuzzer made up.
#![no_main]

use caduceus_ledger::checkpoint::Checkpoint;
use caduceus_ledger::note::{NoteSigner, SignedNote};
use caduceus_ledger::proof::TlogProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(checkpoint) = Checkpoint::parse(text)
    {
        assert_eq!(Checkpoint::parse(&checkpoint.to_text()).as_ref(), Ok(&checkpoint));
    }
    if let Ok(bundle) = TlogProof::parse(data) {
        assert_eq!(TlogProof::parse(bundle.encode().as_bytes()).as_ref(), Ok(&bundle));
    }
    let Ok(note) = SignedNote::parse(data) else { return };
    assert_eq!(note.encode().as_bytes(), data);
    let signer = NoteSigner::from_seed("fuzz.example/log", &[42; 32]).expect("valid name");
    assert!(note.verify(&[signer.verifier()]).is_err());
});

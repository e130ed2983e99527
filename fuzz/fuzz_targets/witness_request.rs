//! tlog-witness `add-checkpoint` bodies arrive from any log on the network:
//! parsing must never panic and must re-encode to the same bytes; the
//! witness must never cosign what the fuzzer made up; and once the fuzzer's
//! checkpoint is validly signed by its log, whatever the witness cosigns
//! must verify and become the witness's state.
#![no_main]

use caduceus_ledger::Hash;
use caduceus_ledger::checkpoint::Checkpoint;
use caduceus_ledger::cosignature::CosignatureSigner;
use caduceus_ledger::merkle;
use caduceus_ledger::note::NoteSigner;
use caduceus_ledger::witness::{
    AddCheckpointRequest, LogState, MemoryWitnessState, Witness, WitnessStateStore, parse_cosignature_response,
};
use libfuzzer_sys::fuzz_target;

/// A log the witness has not cosigned yet (requests from `old 0`).
const FRESH: &str = "fuzz.example/fresh";
/// A log the witness cosigned at size 3 of [`leaves`] (requests from
/// `old 3`, with consistency proofs). The seeds in
/// `fuzz/seeds/witness_request/` are signed by these two logs' keys.
const GROWN: &str = "fuzz.example/grown";
const NOW: u64 = 1_800_000_000;

/// The grown log's leaves: leaf hashes of 0, 1, 2... as u64 big-endian.
fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect()
}

fuzz_target!(|data: &[u8]| {
    let fresh = NoteSigner::from_seed(FRESH, &[42; 32]).expect("valid name");
    let grown = NoteSigner::from_seed(GROWN, &[44; 32]).expect("valid name");
    let cosigner = CosignatureSigner::from_seed("fuzz.example/witness", &[43; 32]).expect("valid name");
    let verifier = cosigner.verifier();
    let mut state = MemoryWitnessState::new();
    state.store(GROWN, LogState { size: 3, root: merkle::root(&leaves(3)) }).expect("in memory");
    let logs = vec![(FRESH.to_owned(), fresh.verifier()), (GROWN.to_owned(), grown.verifier())];
    let witness = Witness::new(cosigner, logs, Box::new(state));

    let parsed = AddCheckpointRequest::parse(data);
    let answer = witness.add_checkpoint(data, NOW);
    let Ok(request) = parsed else {
        assert!(answer.is_err(), "an unparsable request was cosigned");
        return;
    };
    assert_eq!(request.encode().as_bytes(), data);
    if let Ok(body) = &answer {
        // Only the seeds' own signatures get here.
        parse_cosignature_response(body.as_bytes(), &verifier, &request.checkpoint.text).expect("a valid cosignature");
        return;
    }

    // The same request, validly signed by its log: every later check runs.
    let Ok(checkpoint) = Checkpoint::parse(&request.checkpoint.text) else { return };
    let log = if checkpoint.origin == GROWN { &grown } else { &fresh };
    let Ok(note) = log.sign(&request.checkpoint.text) else { return };
    let signed = AddCheckpointRequest { checkpoint: note, ..request };
    if let Ok(body) = witness.add_checkpoint(signed.encode().as_bytes(), NOW) {
        parse_cosignature_response(body.as_bytes(), &verifier, &signed.checkpoint.text).expect("a valid cosignature");
        // The witness now holds the new size: asked again from the same old
        // size, it conflicts unless the size did not change.
        let again = witness.add_checkpoint(signed.encode().as_bytes(), NOW);
        assert_eq!(again.is_ok(), signed.old_size == checkpoint.size, "{again:?}");
    }
});

//! The C2SP tlog-witness `add-checkpoint` protocol end to end, through the
//! crate's public API only: a small log signs checkpoints and proves
//! consistency, a witness checks and cosigns them, the log reads the answers.
//! Every state backend runs the same scenarios (`backend_tests!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Barrier;

use caduceus_ledger::Hash;
use caduceus_ledger::checkpoint::Checkpoint;
use caduceus_ledger::cosignature::{CosignatureSigner, CosignatureVerifier, verify_cosigned};
use caduceus_ledger::merkle;
use caduceus_ledger::note::{NoteSigner, SignedNote};
use caduceus_ledger::witness::{
    AddCheckpointRequest, FileWitnessState, MemoryWitnessState, SIZE_CONTENT_TYPE, Witness, WitnessRejection,
    WitnessStateStore, parse_conflict_size, parse_cosignature_response,
};

const ORIGIN: &str = "hospital.example/caduceus";
const NOW: u64 = 1_800_000_000;

/// A log: leaves, a signing key, checkpoints and consistency proofs.
struct Log {
    leaves: Vec<Hash>,
    signer: NoteSigner,
}

impl Log {
    /// A log of `size` leaves; `flavour` changes every leaf (a fork).
    fn new(size: u64, flavour: &str) -> Self {
        let leaves = (0..size).map(|i| merkle::leaf_hash(format!("{flavour} event {i}").as_bytes())).collect();
        Self { leaves, signer: NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap() }
    }

    fn checkpoint_text(&self, size: u64) -> String {
        let leaves = &self.leaves[..usize::try_from(size).unwrap()];
        Checkpoint { origin: ORIGIN.into(), size, root: merkle::root(leaves), extensions: vec![] }.to_text()
    }

    fn checkpoint(&self, size: u64) -> SignedNote {
        self.signer.sign(&self.checkpoint_text(size)).unwrap()
    }

    /// The request from `old` to `new`, with the proof this log computes.
    fn request(&self, old: u64, new: u64) -> Vec<u8> {
        let leaves = &self.leaves[..usize::try_from(new).unwrap()];
        let proof = merkle::consistency_proof(leaves, old).unwrap();
        AddCheckpointRequest { old_size: old, proof, checkpoint: self.checkpoint(new) }.encode().into_bytes()
    }
}

fn witness_signer() -> CosignatureSigner {
    CosignatureSigner::from_seed("witness.partner.example", &[9; 32]).unwrap()
}

fn witness(state: Box<dyn WitnessStateStore>) -> Witness {
    Witness::new(witness_signer(), vec![(ORIGIN.into(), Log::new(0, "").signer.verifier())], state)
}

/// Submit and check the answer as the log would: the cosignature verifies
/// and, added to the checkpoint, meets a one-witness policy.
fn accepted(witness: &Witness, log: &Log, old: u64, new: u64) {
    let body = witness.add_checkpoint(&log.request(old, new), NOW).unwrap_or_else(|e| panic!("{old}->{new}: {e}"));
    let verifier = CosignatureVerifier::parse(&witness.verifier_key()).unwrap();
    let text = log.checkpoint_text(new);
    let cosignature = parse_cosignature_response(body.as_bytes(), &verifier, &text).unwrap();
    let mut note = log.checkpoint(new);
    note.signatures.push(cosignature);
    let note = SignedNote::parse(note.encode().as_bytes()).unwrap();
    let verified = verify_cosigned(&note, &[log.signer.verifier()], &[verifier], 1).unwrap();
    assert_eq!(verified[0].timestamp, NOW);
}

fn refused(witness: &Witness, body: &[u8]) -> WitnessRejection {
    witness.add_checkpoint(body, NOW).expect_err("the witness cosigned")
}

fn first_checkpoint_then_growth(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(40, "honest");
    accepted(&witness, &log, 0, 5);
    accepted(&witness, &log, 5, 8);
    accepted(&witness, &log, 8, 21);
    // The same checkpoint again is cosigned again.
    accepted(&witness, &log, 21, 21);
    accepted(&witness, &log, 21, 40);
}

fn an_empty_log(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(3, "honest");
    let wrong_root = Checkpoint { origin: ORIGIN.into(), size: 0, root: [1; 32], extensions: vec![] };
    let request = AddCheckpointRequest {
        old_size: 0,
        proof: vec![],
        checkpoint: log.signer.sign(&wrong_root.to_text()).unwrap(),
    };
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 422);
    accepted(&witness, &log, 0, 0);
    accepted(&witness, &log, 0, 3);
}

fn a_stale_old_size_conflicts(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(9, "honest");
    accepted(&witness, &log, 0, 5);
    for old in [0, 3, 6] {
        let rejection = refused(&witness, &log.request(old, 9));
        assert_eq!(rejection.status(), 409, "{rejection}");
        assert_eq!(rejection.content_type(), SIZE_CONTENT_TYPE);
        assert_eq!(rejection.body(), "5\n");
        assert_eq!(parse_conflict_size(rejection.body().as_bytes()), Ok(5));
    }
    // Told the size, the log retries from it.
    accepted(&witness, &log, 5, 9);
}

fn a_rewritten_history_is_refused(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let honest = Log::new(16, "honest");
    let fork = Log::new(16, "fork");
    accepted(&witness, &honest, 0, 5);
    // Same size, another root.
    let rejection = refused(&witness, &fork.request(5, 5));
    assert_eq!(rejection.status(), 422, "{rejection}");
    // A larger tree that does not extend the cosigned one, with the proof
    // from the fork's own tree of 5.
    let rejection = refused(&witness, &fork.request(5, 9));
    assert_eq!(rejection.status(), 422, "{rejection}");
    // The honest proof does not help a forked checkpoint either.
    let mut request = AddCheckpointRequest::parse(&honest.request(5, 9)).unwrap();
    request.checkpoint = fork.checkpoint(9);
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 422);
    // A bad proof for an honest checkpoint.
    let mut request = AddCheckpointRequest::parse(&honest.request(5, 9)).unwrap();
    request.proof[0][0] ^= 1;
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 422);
    request.proof.pop();
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 422);
    // Nothing of that moved the witness.
    accepted(&witness, &honest, 5, 16);
}

fn a_proof_from_the_empty_tree_is_refused(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(8, "honest");
    let mut request = AddCheckpointRequest::parse(&log.request(0, 8)).unwrap();
    request.proof = merkle::consistency_proof(&log.leaves, 4).unwrap();
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 422);
    accepted(&witness, &log, 0, 8);
}

fn unknown_logs_and_bad_signatures(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(8, "honest");
    // Another origin, even validly signed by its own key.
    let stranger = NoteSigner::from_seed("other.example/log", &[3; 32]).unwrap();
    let text = log.checkpoint_text(8).replace(ORIGIN, "other.example/log");
    let request = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: stranger.sign(&text).unwrap() };
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 404);
    // Our origin signed by another key with the log's name: no known signature.
    let impostor = NoteSigner::from_seed(ORIGIN, &[4; 32]).unwrap();
    let request = AddCheckpointRequest {
        old_size: 0,
        proof: vec![],
        checkpoint: impostor.sign(&log.checkpoint_text(8)).unwrap(),
    };
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 403);
    // The log's key, a broken signature.
    let mut request = AddCheckpointRequest::parse(&log.request(0, 8)).unwrap();
    request.checkpoint.signatures[0].signature[0] ^= 1;
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 403);
    // A valid signature on another text.
    let mut request = AddCheckpointRequest::parse(&log.request(0, 8)).unwrap();
    request.checkpoint.text = log.checkpoint_text(7);
    assert_eq!(refused(&witness, request.encode().as_bytes()).status(), 403);
    // Unknown signatures are ignored next to the log's.
    let mut request = AddCheckpointRequest::parse(&log.request(0, 8)).unwrap();
    request.checkpoint.signatures.insert(0, impostor.sign(&log.checkpoint_text(8)).unwrap().signatures[0].clone());
    request.checkpoint.signatures.push(witness_signer().cosign(&log.checkpoint_text(8), 1).unwrap());
    assert!(witness.add_checkpoint(request.encode().as_bytes(), NOW).is_ok());
}

fn malformed_requests(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(8, "honest");
    let good = String::from_utf8(log.request(0, 8)).unwrap();
    for bad in [
        String::new(),
        "old 0\n".into(),
        good.replace("old 0\n", "old 00\n"),
        good.replace("old 0\n", "old 0\r\n"),
        good.replace("old 0\n", ""),
        good.replacen("\n\n", "\nAAAA\n\n", 1),
        good.replace(&log.checkpoint_text(8), &log.checkpoint_text(8).replace("\n8\n", "\n08\n")),
        good.trim_end().into(),
    ] {
        let rejection = refused(&witness, bad.as_bytes());
        assert_eq!(rejection.status(), 400, "{bad:?}: {rejection}");
    }
    // 64 proof lines: malformed however good the rest.
    let many =
        good.replacen("old 0\n", &format!("old 0\n{}", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n".repeat(64)), 1);
    assert_eq!(refused(&witness, many.as_bytes()).status(), 400);
    // The old size after the checkpoint's.
    let after = good.replace("old 0\n", "old 9\n");
    assert_eq!(refused(&witness, after.as_bytes()).status(), 400);
    assert_eq!(refused(&witness, &vec![b'a'; 2 * 1024 * 1024]).status(), 413);
    // The witness refuses to cosign without a real time.
    assert_eq!(witness.add_checkpoint(good.as_bytes(), 0).unwrap_err().status(), 500);
    accepted(&witness, &log, 0, 8);
}

/// Racing requests from the same old state: exactly one wins, the others
/// are told the winner's size.
fn racing_requests_one_wins(state: Box<dyn WitnessStateStore>) {
    let witness = witness(state);
    let log = Log::new(16, "honest");
    accepted(&witness, &log, 0, 4);
    let sizes: Vec<u64> = (5..=12).collect();
    let barrier = Barrier::new(sizes.len());
    let results: Vec<(u64, Result<String, WitnessRejection>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = sizes
            .iter()
            .map(|&size| {
                let (witness, log, barrier) = (&witness, &log, &barrier);
                scope.spawn(move || {
                    let body = log.request(4, size);
                    barrier.wait();
                    (size, witness.add_checkpoint(&body, NOW))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<u64> = results.iter().filter(|(_, r)| r.is_ok()).map(|(size, _)| *size).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, result) in &results {
        if let Err(rejection) = result {
            assert_eq!(rejection.status(), 409, "{rejection}");
            assert_eq!(rejection.body(), format!("{}\n", winners[0]));
        }
    }
    accepted(&witness, &log, winners[0], 16);
}

macro_rules! backend_tests {
    ($backend:ident, $make:ident) => {
        mod $backend {
            use super::*;

            #[test]
            fn first_checkpoint_then_growth() {
                let (_dir, state) = $make();
                super::first_checkpoint_then_growth(state);
            }
            #[test]
            fn an_empty_log() {
                let (_dir, state) = $make();
                super::an_empty_log(state);
            }
            #[test]
            fn a_stale_old_size_conflicts() {
                let (_dir, state) = $make();
                super::a_stale_old_size_conflicts(state);
            }
            #[test]
            fn a_rewritten_history_is_refused() {
                let (_dir, state) = $make();
                super::a_rewritten_history_is_refused(state);
            }
            #[test]
            fn a_proof_from_the_empty_tree_is_refused() {
                let (_dir, state) = $make();
                super::a_proof_from_the_empty_tree_is_refused(state);
            }
            #[test]
            fn unknown_logs_and_bad_signatures() {
                let (_dir, state) = $make();
                super::unknown_logs_and_bad_signatures(state);
            }
            #[test]
            fn malformed_requests() {
                let (_dir, state) = $make();
                super::malformed_requests(state);
            }
            #[test]
            fn racing_requests_one_wins() {
                let (_dir, state) = $make();
                super::racing_requests_one_wins(state);
            }
        }
    };
}

/// A backend: its state store, and the directory to delete after the test.
type Backend = (Option<tempfile::TempDir>, Box<dyn WitnessStateStore>);

fn memory_backend() -> Backend {
    (None, Box::new(MemoryWitnessState::new()))
}

fn file_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let state = FileWitnessState::open(dir.path()).unwrap();
    (Some(dir), Box::new(state))
}

backend_tests!(memory, memory_backend);
backend_tests!(file, file_backend);

#[test]
fn the_file_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(9, "honest");
    {
        let witness = witness(Box::new(FileWitnessState::open(dir.path()).unwrap()));
        accepted(&witness, &log, 0, 5);
    }
    let witness = witness(Box::new(FileWitnessState::open(dir.path()).unwrap()));
    let rejection = refused(&witness, &log.request(0, 9));
    assert_eq!((rejection.status(), rejection.body()), (409, "5\n".to_owned()));
    // The stored root is checked too: a fork of size 5 is still refused.
    assert_eq!(refused(&witness, &Log::new(9, "fork").request(5, 9)).status(), 422);
    accepted(&witness, &log, 5, 9);
}

//! Offline verification of a closed ledger directory with the ledger's own
//! verifier, `caduceus_ledger::verify::verify_dir`: every record's checksum,
//! the whole tree recomputed and compared with every stored node, and the
//! tree state (a benchmark ledger has no checkpoint history to check).

use std::time::Instant;

use caduceus_ledger::verify::verify_dir;

use crate::proofs::Built;
use crate::util;

pub struct Verified {
    pub seconds: f64,
}

/// Close the ledger, then time the verification of its directory. The
/// directory is removed afterwards.
pub async fn verify(built: Built) -> anyhow::Result<Verified> {
    let closed = built.close().await?;
    tokio::task::spawn_blocking(move || {
        util::progress(format!("verifying the closed {}-leaf ledger offline", closed.size));
        let start = Instant::now();
        let report = verify_dir(closed.dir.path(), None)?;
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.entries == closed.size && report.root == closed.root,
            "verify_dir saw {} entries, not the {} the ledger closed with (or another root)",
            report.entries,
            closed.size
        );
        drop(closed);
        Ok(Verified { seconds })
    })
    .await?
}

//! RFC 9162 §2 Merkle trees over SHA-256: leaf and node hashing with domain
//! separation, the tree head, inclusion and consistency proofs (generation
//! and verification).
//!
//! Written here rather than taken from `ct-merkle`: the ledger needs proofs
//! over a tree it stores itself (tiles, interior hashes on disk), where
//! `ct-merkle` owns an in-memory tree. The algorithms follow RFC 9162
//! §2.1.3–2.1.4 step by step and are checked against the transparency-dev
//! test vectors.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node, or a tree head.
pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree sizes {first} and {second} are not in order")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// A hash as people paste it: 64 hex digits or standard base64.
pub fn parse_hash(text: &str) -> Option<Hash> {
    use base64::Engine;
    let text = text.trim();
    let bytes = if text.len() == 64 {
        (0..32).map(|i| text.get(2 * i..2 * i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    };
    bytes.and_then(|b: Vec<u8>| Hash::try_from(b).ok())
}

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash (MTH) of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [only] => *only,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    let m = usize::try_from(index).ok().filter(|m| *m < leaves.len());
    let Some(m) = m else { return Err(ProofError::IndexOutOfRange { index, size }) };
    let mut proof = Vec::new();
    path(m, leaves, &mut proof);
    Ok(proof)
}

/// PATH(m, D[n]), appended to `out` bottom-up.
fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        path(m, left, out);
        out.push(root(right));
    } else {
        path(m - k, right, out);
        out.push(root(left));
    }
}

/// The consistency proof between the first `first` leaves and all of
/// `leaves` (RFC 9162 §2.1.4.1). Empty when `first` is 0 or the whole tree.
pub fn consistency_proof(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, ProofError> {
    let second = leaves.len() as u64;
    let m = usize::try_from(first).ok().filter(|m| *m <= leaves.len());
    let Some(m) = m else { return Err(ProofError::SizesOutOfOrder { first, second }) };
    let mut proof = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut proof);
    }
    Ok(proof)
}

/// SUBPROOF(m, D[n], b), appended to `out` bottom-up.
fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    if m == leaves.len() {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(m, left, complete, out);
        out.push(root(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root(left));
    }
}

/// Verify that `leaf` is at `index` in the tree of `size` leaves with head
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verify that the tree of `second` leaves with head `second_root` extends
/// the tree of `first` leaves with head `first_root` (RFC 9162 §2.1.4.2).
/// Roots are compared as bytes, so a root of the wrong length simply fails
/// (or, for equal sizes, must equal the other byte for byte).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &[u8],
    second_root: &[u8],
    proof: &[Hash],
) -> Result<(), ProofError> {
    if second < first {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == 0 {
        // Every tree extends the empty one, so such a proof proves nothing;
        // like transparency-dev, refuse it rather than accept anything.
        return Err(ProofError::EmptyFirstTree);
    }
    if first == second {
        // Nothing to prove beyond equality.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let Some((head, rest)) = proof.split_first() else { return Err(ProofError::WrongLength) };
    // If `first` is a power of two, its root is the proof's implicit start.
    let (start, path) = if first.is_power_of_two() {
        let Ok(first_hash) = <&Hash>::try_from(first_root) else { return Err(ProofError::RootMismatch) };
        (first_hash, proof)
    } else {
        (head, rest)
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in path {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr.as_slice() != first_root || sr.as_slice() != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            root(&[]),
            [
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27,
                0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
            ]
        );
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
    }

    proptest! {
        #[test]
        fn every_inclusion_proof_verifies_and_every_mutation_fails(
            n in 1usize..200, pick in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8
        ) {
            let leaves = leaves(n);
            let head = root(&leaves);
            let index = pick.index(n);
            let proof = inclusion_proof(&leaves, index as u64).unwrap();
            prop_assert!(verify_inclusion(index as u64, n as u64, &leaves[index], &proof, &head).is_ok());
            // Any flipped bit in the proof, leaf or root is caught.
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let at = flip.index(bad.len());
                bad[at][usize::from(bit) % 32] ^= 1 << bit;
                prop_assert!(verify_inclusion(index as u64, n as u64, &leaves[index], &bad, &head).is_err());
                prop_assert!(verify_inclusion(index as u64, n as u64, &leaves[index], &proof[1..], &head).is_err());
            }
            let mut bad_leaf = leaves[index];
            bad_leaf[0] ^= 1 << bit;
            prop_assert!(verify_inclusion(index as u64, n as u64, &bad_leaf, &proof, &head).is_err());
            if n > 1 {
                let other = (index + 1) % n;
                prop_assert!(verify_inclusion(other as u64, n as u64, &leaves[index], &proof, &head).is_err());
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_every_mutation_fails(
            n in 1usize..200, pick in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8
        ) {
            let leaves = leaves(n);
            let m = 1 + pick.index(n);
            let (first_root, second_root) = (root(&leaves[..m]), root(&leaves));
            let proof = consistency_proof(&leaves, m as u64).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &first_root, &second_root, &proof).is_ok());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let at = flip.index(bad.len());
                bad[at][usize::from(bit) % 32] ^= 1 << bit;
                prop_assert!(verify_consistency(m as u64, n as u64, &first_root, &second_root, &bad).is_err());
                prop_assert!(verify_consistency(m as u64, n as u64, &first_root, &second_root, &proof[1..]).is_err());
            }
            if m > 0 && m < n {
                let mut wrong = second_root;
                wrong[31] ^= 1;
                prop_assert!(verify_consistency(m as u64, n as u64, &first_root, &wrong, &proof).is_err());
                let mut wrong = first_root;
                wrong[0] ^= 1;
                prop_assert!(verify_consistency(m as u64, n as u64, &wrong, &second_root, &proof).is_err());
            }
        }
    }
}

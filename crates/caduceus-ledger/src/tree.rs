//! The stored tree: where each node lives, how any tree size's head and
//! proofs are computed from stored complete subtrees, and the frontier that
//! appends leaves.
//!
//! Every complete subtree (a node at `level` covering leaves
//! `index << level .. (index + 1) << level`) is stored once, in post-order:
//! appending leaf `n` writes its hash and then every subtree it completes.
//! A tree of `size` leaves thus occupies exactly [`node_count`]`(size)` slots,
//! the file only ever grows, and node positions are pure arithmetic.
//!
//! The proofs follow RFC 9162 §2.1.3.1 (PATH) and §2.1.4.1 (SUBPROOF) on leaf
//! ranges instead of slices; a test checks them against `merkle`'s slice
//! versions, which pass the transparency-dev vectors.

use crate::merkle::{self, Hash, ProofError};

/// Where complete subtree hashes come from (a file, or memory in tests).
pub trait NodeSource {
    type Error: From<ProofError>;
    /// The hash of the complete subtree at `level` and `index`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Number of stored nodes for a tree of `size` leaves: `2·size − popcount(size)`.
pub fn node_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// Post-order position of the node at `level` and `index`.
pub fn node_position(level: u32, index: u64) -> u64 {
    // The node is completed by the leaf that brings the tree to `end` leaves;
    // that leaf writes the nodes of levels 0 ..= trailing_zeros(end) in order,
    // the last of them at node_count(end) − 1.
    let end = (index + 1) << level;
    node_count(end) - 1 - (u64::from(end.trailing_zeros()) - u64::from(level))
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `start .. end`, where the range is one that RFC 9162's
/// recursion produces: `start` is a multiple of the largest power of two
/// not above the range's length, so it splits into complete subtrees.
pub fn range_hash<S: NodeSource>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let len = end.saturating_sub(start);
    if len == 0 {
        return Ok(merkle::empty_root());
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        return source.node(level, start >> level);
    }
    if len == 1 {
        return Err(ProofError::IndexOutOfRange { index: start, size: end }.into());
    }
    let k = split_point(len);
    let left = range_hash(source, start, start + k)?;
    let right = range_hash(source, start + k, end)?;
    Ok(merkle::node_hash(&left, &right))
}

/// The head of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    range_hash(source, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<S: NodeSource>(source: &S, index: u64, size: u64) -> Result<Vec<Hash>, S::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::with_capacity(64);
    path(source, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// PATH(m, D[start .. start + n]), bottom-up.
fn path<S: NodeSource>(source: &S, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Result<(), S::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(source, m, start, k, out)?;
        out.push(range_hash(source, start + k, start + n)?);
    } else {
        path(source, m - k, start + k, n - k, out)?;
        out.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `first` and `second` leaves.
pub fn consistency_proof<S: NodeSource>(source: &S, first: u64, second: u64) -> Result<Vec<Hash>, S::Error> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second }.into());
    }
    let mut proof = Vec::with_capacity(64);
    if first > 0 && first < second {
        subproof(source, first, 0, second, true, &mut proof)?;
    }
    Ok(proof)
}

/// SUBPROOF(m, D[start .. start + n], complete), bottom-up.
fn subproof<S: NodeSource>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !complete {
            out.push(range_hash(source, start, start + n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(source, m, start, k, complete, out)?;
        out.push(range_hash(source, start + k, start + n)?);
    } else {
        subproof(source, m - k, start + k, n - k, false, out)?;
        out.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// The right edge of the tree: the roots of its maximal complete subtrees,
/// largest first. Appending a leaf merges equal-sized subtrees, which is
/// exactly the post-order sequence of new nodes to store.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, read from stored nodes.
    pub fn load<S: NodeSource>(source: &S, size: u64) -> Result<Self, S::Error> {
        let mut stack = Vec::with_capacity(64);
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                stack.push((level, source.node(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Self { size, stack })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash; `store` receives it and every node it completes,
    /// in post-order.
    pub fn push(&mut self, leaf: Hash, mut store: impl FnMut(&Hash)) {
        store(&leaf);
        let mut node = (0u32, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, merkle::node_hash(&left, &node.1));
            store(&node.1);
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The tree head.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else { return merkle::empty_root() };
        for (_, left) in nodes {
            acc = merkle::node_hash(left, &acc);
        }
        acc
    }
}

/// Nodes held in memory in post-order: for tests, the verifier, and the
/// benchmark's peer checks.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    nodes: Vec<Hash>,
}

impl MemoryTree {
    pub fn push(&mut self, leaf: Hash) {
        let nodes = &mut self.nodes;
        self.frontier.push(leaf, |h| nodes.push(*h));
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// All stored nodes, in post-order.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }
}

impl NodeSource for MemoryTree {
    type Error = ProofError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let missing = ProofError::IndexOutOfRange { index, size: self.size() >> level };
        if level >= 64 || index >= self.size() >> level {
            return Err(missing);
        }
        let position = usize::try_from(node_position(level, index)).map_err(|_| missing.clone())?;
        self.nodes.get(position).copied().ok_or(missing)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect()
    }

    fn tree(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::default();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    #[test]
    fn positions_follow_post_order() {
        // Leaves 0,1 then their parent; leaf 2; leaf 3, parent (1,1), root (2,0).
        let expected = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)];
        for (position, (level, index)) in expected.into_iter().enumerate() {
            assert_eq!(node_position(level, index), position as u64);
        }
        for size in 0..2000u64 {
            assert_eq!(tree(&leaves(size)).nodes().len() as u64, node_count(size));
        }
    }

    #[test]
    fn stored_nodes_are_where_positions_say() {
        let ls = leaves(300);
        let t = tree(&ls);
        for level in 0..9u32 {
            for index in 0..(300u64 >> level) {
                let start = (index << level) as usize;
                let expected = merkle::root(&ls[start..start + (1 << level)]);
                assert_eq!(t.node(level, index).unwrap(), expected);
            }
        }
    }

    proptest! {
        #[test]
        fn roots_and_proofs_match_the_slice_versions(size in 1u64..600, a in 0u64..600, b in 0u64..600) {
            let ls = leaves(size);
            let t = tree(&ls);
            prop_assert_eq!(t.root(), merkle::root(&ls));
            let (first, second) = (a % (size + 1), b % (size + 1));
            let (first, second) = (first.min(second), first.max(second));
            prop_assert_eq!(root(&t, second).unwrap(), merkle::root(&ls[..second as usize]));
            let index = a % size;
            prop_assert_eq!(inclusion_proof(&t, index, size).unwrap(), merkle::inclusion_proof(&ls, index).unwrap());
            if second > 0 {
                let sub = &ls[..second as usize];
                prop_assert_eq!(
                    consistency_proof(&t, first, second).unwrap(),
                    merkle::consistency_proof(sub, first).unwrap()
                );
            }
        }
    }

    #[test]
    fn out_of_range_requests_fail() {
        let t = tree(&leaves(10));
        assert!(inclusion_proof(&t, 10, 10).is_err());
        assert!(consistency_proof(&t, 5, 4).is_err());
        assert!(root(&t, 11).is_err());
    }
}

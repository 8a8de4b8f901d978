//! The tree over a log whose oldest leaves were removed by retention: the
//! removed prefix is kept as its RFC 6962 compact range (the roots of the
//! perfect subtrees that make up leaves `[0, size)`, largest first), which is
//! all that roots, inclusion proofs for later leaves and consistency proofs
//! from later sizes ever need of it.
//!
//! Why that suffices: in an RFC 6962 tree every subtree that lies entirely
//! inside the prefix and is reached from a node that does not is one of the
//! compact range's subtrees (its start shares the prefix size's high bits), so
//! `subtree` never needs a removed leaf; if it ever did, it answers `None`.

use sha2::{Digest as _, Sha256};

use super::{Hash, node_hash, root, split};

/// Is a removed prefix of the tree: its size and its compact range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix {
    /// Holds how many leaves were removed.
    pub size: u64,
    /// Holds the roots of the perfect subtrees covering `[0, size)`, largest first.
    pub nodes: Vec<Hash>,
}

impl Prefix {
    /// Returns the prefix grown by `leaves` (the compact range of `size + n` leaves).
    #[must_use]
    pub fn extend(&self, leaves: &[Hash]) -> Self {
        let mut stack: Vec<(u64, Hash)> =
            self.spans().map(|(_, size, hash)| (size, hash)).collect();
        for leaf in leaves {
            stack.push((1, *leaf));
            while let [.., (left_size, left), (right_size, right)] = stack[..] {
                if left_size != right_size {
                    break;
                }
                stack.truncate(stack.len() - 2);
                stack.push((left_size * 2, node_hash(&left, &right)));
            }
        }
        Self {
            size: self.size + leaves.len() as u64,
            nodes: stack.into_iter().map(|(_, hash)| hash).collect(),
        }
    }

    /// Returns the tree hash of the prefix followed by `leaves`.
    pub fn root(&self, leaves: &[Hash]) -> Option<Hash> {
        let total = self.size + leaves.len() as u64;
        if total == 0 {
            return Some(Sha256::digest([]).into());
        }
        self.subtree(leaves, 0, total)
    }

    /// Returns the audit path of leaf `index` (at or after the prefix) in the tree
    /// of the prefix followed by `leaves`.
    pub fn inclusion_proof(&self, leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
        let total = self.size + leaves.len() as u64;
        if index < self.size || index >= total {
            return None;
        }
        let mut path = Vec::new();
        self.path(leaves, index, 0, total, &mut path)?;
        Some(path)
    }

    /// Returns the consistency proof from `old_size` (at least the prefix) to
    /// the tree of the prefix followed by `leaves`.
    pub fn consistency_proof(&self, leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
        let total = self.size + leaves.len() as u64;
        if old_size == 0 || old_size < self.size || old_size > total {
            return None;
        }
        let mut proof = Vec::new();
        self.subproof(leaves, old_size, 0, total, true, &mut proof)?;
        Some(proof)
    }

    /// Yields each compact-range node as (start, size, hash).
    fn spans(&self) -> impl Iterator<Item = (u64, u64, Hash)> + '_ {
        let mut start = 0;
        let sizes = (0..64)
            .rev()
            .map(|bit| 1u64 << bit)
            .filter(|size| self.size & size != 0);
        sizes.zip(self.nodes.iter()).map(move |(size, hash)| {
            let span = (start, size, *hash);
            start += size;
            span
        })
    }

    fn subtree(&self, leaves: &[Hash], lo: u64, hi: u64) -> Option<Hash> {
        if hi <= self.size {
            // A whole span is kept; a part of one is removed for good.
            if let Some((start, size, hash)) = self
                .spans()
                .find(|(start, size, _)| *start <= lo && hi <= start + size)
            {
                return (start == lo && start + size == hi).then_some(hash);
            }
        }
        if lo >= self.size {
            let from = usize::try_from(lo - self.size).ok()?;
            let to = usize::try_from(hi - self.size).ok()?;
            return Some(root(leaves.get(from..to)?));
        }
        let k = split(usize::try_from(hi - lo).ok()?) as u64;
        Some(node_hash(
            &self.subtree(leaves, lo, lo + k)?,
            &self.subtree(leaves, lo + k, hi)?,
        ))
    }

    fn path(
        &self,
        leaves: &[Hash],
        index: u64,
        lo: u64,
        hi: u64,
        path: &mut Vec<Hash>,
    ) -> Option<()> {
        if hi - lo <= 1 {
            return Some(());
        }
        let k = split(usize::try_from(hi - lo).ok()?) as u64;
        if index < lo + k {
            self.path(leaves, index, lo, lo + k, path)?;
            path.push(self.subtree(leaves, lo + k, hi)?);
        } else {
            self.path(leaves, index, lo + k, hi, path)?;
            path.push(self.subtree(leaves, lo, lo + k)?);
        }
        Some(())
    }

    fn subproof(
        &self,
        leaves: &[Hash],
        m: u64,
        lo: u64,
        hi: u64,
        complete: bool,
        proof: &mut Vec<Hash>,
    ) -> Option<()> {
        if m == hi - lo {
            if !complete {
                proof.push(self.subtree(leaves, lo, hi)?);
            }
            return Some(());
        }
        let k = split(usize::try_from(hi - lo).ok()?) as u64;
        if m <= k {
            self.subproof(leaves, m, lo, lo + k, complete, proof)?;
            proof.push(self.subtree(leaves, lo + k, hi)?);
        } else {
            self.subproof(leaves, m - k, lo + k, hi, false, proof)?;
            proof.push(self.subtree(leaves, lo, lo + k)?);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn a_pruned_tree_proves_exactly_what_the_full_tree_proves() {
        for total in 1..25u64 {
            let all = leaves(total);
            for pruned in 0..=total {
                let cut = pruned as usize;
                let prefix = Prefix::default().extend(&all[..cut]);
                assert_eq!(prefix.size, pruned);
                assert_eq!(prefix.nodes.len(), pruned.count_ones() as usize);
                let rest = &all[cut..];
                assert_eq!(prefix.root(rest), Some(root(&all)), "{total} {pruned}");
                for index in pruned..total {
                    assert_eq!(
                        prefix.inclusion_proof(rest, index),
                        inclusion_proof(&all, index as usize),
                        "inclusion {index} of {total}, pruned {pruned}"
                    );
                }
                for old in pruned.max(1)..=total {
                    assert_eq!(
                        prefix.consistency_proof(rest, old),
                        consistency_proof(&all, old as usize),
                        "consistency {old}→{total}, pruned {pruned}"
                    );
                }
            }
        }
    }

    #[test]
    fn extending_in_steps_equals_extending_at_once() {
        let all = leaves(23);
        let stepwise = Prefix::default()
            .extend(&all[..5])
            .extend(&all[5..17])
            .extend(&all[17..]);
        assert_eq!(stepwise, Prefix::default().extend(&all));
        assert_eq!(stepwise.root(&[]), Some(root(&all)));
    }

    #[test]
    fn a_removed_leaf_cannot_be_proven() {
        let all = leaves(9);
        let prefix = Prefix::default().extend(&all[..6]);
        assert_eq!(prefix.inclusion_proof(&all[6..], 5), None);
        assert_eq!(prefix.consistency_proof(&all[6..], 5), None);
    }
}

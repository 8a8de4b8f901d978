use super::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect()
}

#[test]
fn empty_tree_hash_is_sha256_of_nothing() {
    let expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let hex: String = root(&[]).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
}

#[test]
fn rfc6962_leaf_hash_of_empty_input() {
    // RFC 6962 test vector: the leaf hash of the empty string.
    let hex: String = leaf_hash(b"").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
}

#[test]
fn every_inclusion_proof_verifies_and_a_wrong_leaf_does_not() {
    for size in 1..=33 {
        let tree = leaves(size);
        let tree_root = root(&tree);
        for index in 0..size {
            let path = inclusion_proof(&tree, index).unwrap();
            assert!(
                verify_inclusion(&tree[index], index as u64, size as u64, &path, &tree_root),
                "size {size} index {index}"
            );
            let wrong = leaf_hash(b"other");
            assert!(!verify_inclusion(
                &wrong,
                index as u64,
                size as u64,
                &path,
                &tree_root
            ));
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_a_rewritten_prefix_does_not() {
    for new_size in 1..=20 {
        let tree = leaves(new_size);
        let new_root = root(&tree);
        for old_size in 1..=new_size {
            let proof = consistency_proof(&tree, old_size).unwrap();
            let old_root = root(&tree[..old_size]);
            assert!(
                verify_consistency(
                    old_size as u64,
                    new_size as u64,
                    &proof,
                    &old_root,
                    &new_root
                ),
                "{old_size} -> {new_size}"
            );
            let mut forked = tree[..old_size].to_vec();
            forked[0] = leaf_hash(b"forged");
            let forged_root = root(&forked);
            assert!(!verify_consistency(
                old_size as u64,
                new_size as u64,
                &proof,
                &forged_root,
                &new_root
            ));
        }
    }
}

//! Which partition of which namespace a key belongs to: the rule storage nodes, the proxy and
//! smart clients must agree on.
//!
//! A key written `namespace:rest` whose `namespace` is a known namespace belongs to it, and
//! `rest` (everything after the first colon) is hashed; any other key belongs to the default
//! namespace and is hashed whole. The hash is MurmurHash3 x86_32 with seed 0 and the
//! partition is `hash mod partition_count`, ZanRedisDB's rule, so its clients keep working.
//! Keys are stored exactly as the client sent them.
//!
//! A namespace created with hash tags narrows the hashed part as Redis Cluster does: if it
//! contains a `{` followed later by a `}` with at least one byte between them, only the bytes
//! between the first `{` and the first `}` after it are hashed ([`hash_tag`]), so
//! `ns:{user1}:name` and `ns:{user1}:mail` share a partition.

/// MurmurHash3, x86 32-bit variant.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes(block.try_into().expect("4-byte block"));
        h ^= mix(k);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The partition of a namespace with `partitions` partitions that `hashed` (the part of the
/// key that is hashed) belongs to.
pub fn partition_of(hashed: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a namespace has at least one partition");
    murmur3_32(hashed, 0) % partitions
}

/// The part of `hashed` that a namespace with hash tags hashes: the bytes between the first
/// `{` and the first `}` after it, when there is at least one; otherwise all of `hashed`.
pub fn hash_tag(hashed: &[u8]) -> &[u8] {
    let Some(open) = hashed.iter().position(|&b| b == b'{') else {
        return hashed;
    };
    match hashed[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &hashed[open + 1..open + 1 + len],
        _ => hashed,
    }
}

/// The partition of `hashed` in a namespace of `partitions` partitions, hashing only the
/// hash tag when the namespace enables tags.
pub fn partition_for(hashed: &[u8], partitions: u32, hash_tags: bool) -> u32 {
    let hashed = if hash_tags { hash_tag(hashed) } else { hashed };
    partition_of(hashed, partitions)
}

/// Where `key` belongs: `(Some(namespace), rest)` when it is written `namespace:rest` and
/// `known(namespace)`, otherwise `(None, key)`: the default namespace, the whole key hashed.
pub fn locate_key(key: &[u8], known: impl Fn(&[u8]) -> bool) -> (Option<&[u8]>, &[u8]) {
    match split_namespace(key) {
        Some((name, rest)) if known(name) => (Some(name), rest),
        _ => (None, key),
    }
}

/// Splits `namespace:rest` at the first colon; `None` when the key has no colon.
pub fn split_namespace(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = key.iter().position(|&b| b == b':')?;
    Some((&key[..colon], &key[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_sharing_a_tag_share_the_hashed_part(
            before in proptest::collection::vec(any::<u8>().prop_filter("no {", |b| *b != b'{'), 0..8),
            tag in proptest::collection::vec(any::<u8>().prop_filter("no }", |b| *b != b'}'), 1..8),
            after in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut key = before.clone();
            key.push(b'{');
            key.extend_from_slice(&tag);
            key.push(b'}');
            key.extend_from_slice(&after);
            prop_assert_eq!(hash_tag(&key), &tag[..]);
        }

        #[test]
        fn a_key_without_a_tag_is_hashed_whole(
            key in proptest::collection::vec(any::<u8>().prop_filter("no {", |b| *b != b'{'), 0..16),
        ) {
            prop_assert_eq!(hash_tag(&key), &key[..]);
        }
    }

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        // Every tail length.
        assert_eq!(murmur3_32(b"a", 0), 0x3c25_69b2);
        assert_eq!(murmur3_32(b"ab", 0), 0x9bbf_d75f);
        assert_eq!(murmur3_32(b"abc", 0), 0xb3dd_93fa);
        assert_eq!(murmur3_32(b"abcd", 0), 0x43ed_676a);
    }

    #[test]
    fn namespace_split_is_at_the_first_colon() {
        assert_eq!(
            split_namespace(b"ns:table:key"),
            Some((&b"ns"[..], &b"table:key"[..]))
        );
        assert_eq!(split_namespace(b":x"), Some((&b""[..], &b"x"[..])));
        assert_eq!(split_namespace(b"plain"), None);
    }

    #[test]
    fn hash_tags_follow_redis_cluster() {
        assert_eq!(hash_tag(b"{user1}:name"), b"user1");
        assert_eq!(hash_tag(b"t:{user1}:mail"), b"user1");
        // Only the first tag counts, up to the first closing brace after it.
        assert_eq!(hash_tag(b"a{b}{c}"), b"b");
        assert_eq!(hash_tag(b"a{b{c}d"), b"b{c");
        // An empty or unclosed tag: the whole key.
        assert_eq!(hash_tag(b"a{}b{c}"), b"a{}b{c}");
        assert_eq!(hash_tag(b"a{bc"), b"a{bc");
        assert_eq!(hash_tag(b"}a{"), b"}a{");
        assert_eq!(hash_tag(b"plain"), b"plain");
    }

    #[test]
    fn partitions_are_spread_and_in_range() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let p = partition_of(format!("table:key{i}").as_bytes(), 8);
            counts[p as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(partition_of(b"anything", 1), 0);
    }
}

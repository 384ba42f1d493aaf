//! The on-disk key layout of a partition's database (see docs/storage-format.md).
//!
//! Every stored key starts with a one-byte space tag:
//!
//! | tag | key layout | value |
//! |---|---|---|
//! | `0x00` | `0x00` `applied` | [`crate::records::AppliedState`] |
//! | `m` | `m` user-key | [`crate::records::KeyMeta`] (type, expiry, version, count; string value inline) |
//! | `h` | `h` u64-BE(version) field | field value |
//! | `x` | `x` u64-BE(expire-at ms) user-key | empty: the expiry index |
//! | `g` | `g` u64-BE(version) | element tag: a collection version to reclaim |
//!
//! Elements are keyed by their collection's version, not by the user key: versions are
//! unique within a partition, so RENAME moves only the metadata record, and dropping a
//! collection is a matter of queueing its version for reclamation.
//!
//! Invariants (checked by property tests below):
//! - element keys of one version sort by field bytes, and lie inside
//!   [`element_prefix`]`..`[`prefix_end`] of that version and of no other;
//! - expiry-index keys sort by expiry time first, then user key;
//! - metadata keys sort by user key bytes, so SCAN walks keys in byte order.

/// Tag of the partition's system records.
pub const SYSTEM: u8 = 0x00;
/// Tag of key metadata records.
pub const META: u8 = b'm';
/// Tag of hash fields.
pub const HASH: u8 = b'h';
/// Tag of the expiry index.
pub const EXPIRY: u8 = b'x';
/// Tag of pending reclamation of old collection versions.
pub const RECLAIM: u8 = b'g';

/// Key of the applied-state record.
pub fn applied_state_key() -> Vec<u8> {
    vec![SYSTEM, b'a', b'p', b'p', b'l', b'i', b'e', b'd']
}

/// Metadata key of a user key.
pub fn meta_key(user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + user_key.len());
    k.push(META);
    k.extend_from_slice(user_key);
    k
}

/// The user key inside a metadata key.
pub fn user_key_of_meta(meta_key: &[u8]) -> &[u8] {
    &meta_key[1..]
}

/// Prefix shared by every element of one version of a collection.
pub fn element_prefix(tag: u8, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(tag);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Key of one element (hash field) of a collection version.
pub fn element_key(tag: u8, version: u64, sub: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + sub.len());
    k.push(tag);
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(sub);
    k
}

/// Expiry-index key.
pub fn expiry_key(expire_at_ms: u64, user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + user_key.len());
    k.push(EXPIRY);
    k.extend_from_slice(&expire_at_ms.to_be_bytes());
    k.extend_from_slice(user_key);
    k
}

/// Splits an expiry-index key into (expire-at, user key).
pub fn parse_expiry_key(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() < 9 || key[0] != EXPIRY {
        return None;
    }
    let at = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((at, &key[9..]))
}

/// Reclamation record key of one collection version.
pub fn reclaim_key(version: u64) -> Vec<u8> {
    element_prefix(RECLAIM, version)
}

/// The version inside a reclamation key.
pub fn parse_reclaim_key(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != RECLAIM {
        return None;
    }
    Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
}

/// The smallest key greater than every key starting with `prefix` (for range ends).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: nothing is greater within this prefix space; use a key past every tag.
    vec![0xff; prefix.len() + 1]
}

/// Range `[start, end)` holding every key of one space tag.
pub fn space(tag: u8) -> (Vec<u8>, Vec<u8>) {
    (vec![tag], vec![tag + 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_layout() {
        assert_eq!(meta_key(b"k"), b"mk".to_vec());
        assert_eq!(
            element_key(HASH, 7, b"f"),
            [&b"h"[..], &[0, 0, 0, 0, 0, 0, 0, 7], b"f"].concat()
        );
        assert_eq!(
            expiry_key(1, b"k"),
            [&b"x"[..], &[0, 0, 0, 0, 0, 0, 0, 1], b"k"].concat()
        );
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(parse_reclaim_key(&reclaim_key(9)), Some(9));
    }

    proptest! {
        #[test]
        fn element_order_is_field_order(version in any::<u64>(),
                                        a in proptest::collection::vec(any::<u8>(), 0..8),
                                        b in proptest::collection::vec(any::<u8>(), 0..8)) {
            let ka = element_key(HASH, version, &a);
            let kb = element_key(HASH, version, &b);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn elements_stay_inside_their_own_prefix(v1 in prop_oneof![0u64..4, Just(u64::MAX), Just(255), Just(256)],
                                                 v2 in prop_oneof![0u64..4, Just(u64::MAX), Just(255), Just(256)],
                                                 field in proptest::collection::vec(any::<u8>(), 0..6)) {
            let key = element_key(HASH, v1, &field);
            let p2 = element_prefix(HASH, v2);
            let inside = key >= p2 && key < prefix_end(&p2);
            prop_assert_eq!(inside, v1 == v2);
        }

        #[test]
        fn expiry_order_is_time_then_key(t1 in any::<u64>(), t2 in any::<u64>(),
                                         k1 in proptest::collection::vec(any::<u8>(), 0..6),
                                         k2 in proptest::collection::vec(any::<u8>(), 0..6)) {
            prop_assert_eq!(expiry_key(t1, &k1).cmp(&expiry_key(t2, &k2)), (t1, &k1).cmp(&(t2, &k2)));
            let encoded = expiry_key(t1, &k1);
            prop_assert_eq!(parse_expiry_key(&encoded), Some((t1, &k1[..])));
        }

        #[test]
        fn meta_order_is_key_order(k1 in proptest::collection::vec(any::<u8>(), 0..6),
                                   k2 in proptest::collection::vec(any::<u8>(), 0..6)) {
            prop_assert_eq!(meta_key(&k1).cmp(&meta_key(&k2)), k1.cmp(&k2));
        }
    }
}

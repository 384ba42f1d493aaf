//! The on-disk key layout of a partition's database (see docs/storage-format.md).
//!
//! Every stored key starts with a one-byte space tag:
//!
//! | tag | key layout | value |
//! |---|---|---|
//! | `0x00` | `0x00` `applied` | [`crate::records::AppliedState`] |
//! | `m` | `m` user-key | [`crate::records::KeyMeta`] (type, expiry, version, count; string value inline) |
//! | `h` | `h` u64-BE(version) field | field value |
//! | `l` | `l` u64-BE(version) position | list element |
//! | `s` | `s` u64-BE(version) member | empty: set member |
//! | `z` | `z` u64-BE(version) member | the member's score |
//! | `Z` | `Z` u64-BE(version) score member | empty: the score index |
//! | `x` | `x` u64-BE(expire-at ms) user-key | empty: the expiry index |
//! | `g` | `g` u64-BE(version) | element tag: a collection version to reclaim |
//! | `0x00` | `0x00` `p` pop-id | [`crate::records::PopRecord`]: what a blocking pop took |
//! | `0x00` | `0x00` `P` u64-BE(at ms) pop-id | empty: those records by age, to drop them |
//! | `0x00` | `0x00` `F` library-name | [`crate::data::functions::Library`]: a library of functions |
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

/// Key of the record of the blocking pop `id` ([`crate::records::PopRecord`]).
pub fn pop_record_key(id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + id.len());
    k.extend_from_slice(&[SYSTEM, b'p']);
    k.extend_from_slice(id);
    k
}

/// Key of the blocking pop `id` recorded at `at_ms` in the records' age index.
pub fn pop_age_key(at_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + id.len());
    k.extend_from_slice(&[SYSTEM, b'P']);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(id);
    k
}

/// Splits a key of the pops' age index into (recorded at, pop id).
pub fn parse_pop_age_key(key: &[u8]) -> Option<(u64, &[u8])> {
    let rest = key.strip_prefix(&[SYSTEM, b'P'])?;
    let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((at, &rest[8..]))
}

/// Key of the library of functions `name` ([`crate::data::functions::Library`]).
pub fn library_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len());
    k.extend_from_slice(&[SYSTEM, b'F']);
    k.extend_from_slice(name);
    k
}

/// The range of the libraries' keys.
pub fn library_space() -> (Vec<u8>, Vec<u8>) {
    (vec![SYSTEM, b'F'], vec![SYSTEM, b'F' + 1])
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

/// Tag of list elements.
pub const LIST: u8 = b'l';
/// Tag of set members.
pub const SET: u8 = b's';
/// Tag of sorted-set members (member → score).
pub const ZSET_MEMBER: u8 = b'z';
/// Tag of the sorted-set score index (score, member → empty).
pub const ZSET_SCORE: u8 = b'Z';

/// Encodes a list position so that byte order is numeric order: positions are signed (a
/// list grows at both ends from 0), stored with the sign bit flipped.
pub fn encode_list_position(position: i64) -> [u8; 8] {
    ((position as u64) ^ (1 << 63)).to_be_bytes()
}

/// Encodes a score so that byte order is numeric order (IEEE 754 total order for every
/// non-NaN value; -0.0 is stored as 0.0 so the two compare equal, as in Redis). Positive
/// numbers get their sign bit set; negative numbers have every bit flipped.
pub fn encode_score(score: f64) -> [u8; 8] {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 0 {
        bits | (1 << 63)
    } else {
        !bits
    };
    ordered.to_be_bytes()
}

/// Inverse of [`encode_score`].
pub fn decode_score(bytes: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(bytes);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

/// Key of a sorted set's score-index entry: members in (score, member) order.
pub fn zset_score_key(version: u64, score: f64, member: &[u8]) -> Vec<u8> {
    let mut k = element_prefix(ZSET_SCORE, version);
    k.extend_from_slice(&encode_score(score));
    k.extend_from_slice(member);
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
        assert_eq!(encode_score(0.0), encode_score(-0.0));
        assert_eq!(encode_score(1.0), [0xbf, 0xf0, 0, 0, 0, 0, 0, 0]);
        assert!(encode_score(f64::NEG_INFINITY) < encode_score(f64::MIN));
        assert!(encode_score(f64::MAX) < encode_score(f64::INFINITY));
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
        fn score_order_is_numeric_order(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            let ordering = a.partial_cmp(&b).expect("no NaN");
            prop_assert_eq!(encode_score(a).cmp(&encode_score(b)), ordering);
            let back = decode_score(encode_score(a));
            prop_assert!(back == a, "{} decoded as {}", a, back);
        }

        #[test]
        fn score_index_orders_by_score_then_member(s1 in any::<f64>(), s2 in any::<f64>(),
                                                   m1 in proptest::collection::vec(any::<u8>(), 0..6),
                                                   m2 in proptest::collection::vec(any::<u8>(), 0..6)) {
            prop_assume!(!s1.is_nan() && !s2.is_nan());
            let by_value = s1.partial_cmp(&s2).expect("no NaN").then_with(|| m1.cmp(&m2));
            prop_assert_eq!(zset_score_key(1, s1, &m1).cmp(&zset_score_key(1, s2, &m2)), by_value);
        }

        #[test]
        fn list_position_order_is_numeric_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(encode_list_position(a).cmp(&encode_list_position(b)), a.cmp(&b));
        }

        #[test]
        fn meta_order_is_key_order(k1 in proptest::collection::vec(any::<u8>(), 0..6),
                                   k2 in proptest::collection::vec(any::<u8>(), 0..6)) {
            prop_assert_eq!(meta_key(&k1).cmp(&meta_key(&k2)), k1.cmp(&k2));
        }
    }
}

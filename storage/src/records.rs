//! Value encodings of the records named in [`crate::keys`]: key metadata and the partition's
//! applied state. Decoding never panics: malformed bytes become `EngineError::Corruption`.

use zankv_commands::Reply;

use crate::engine::EngineError;

/// The Redis type of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A string (value stored inline in the metadata record).
    String,
    /// A hash (fields stored as element keys).
    Hash,
    /// A list (elements keyed by position; the metadata also holds the head position).
    List,
    /// A set (members stored as element keys with empty values).
    Set,
    /// A sorted set (member → score records, and a (score, member) index).
    ZSet,
}

/// One row of [`TYPES`].
struct TypeRow {
    kind: KeyType,
    /// Stored in metadata records.
    code: u8,
    /// What TYPE answers.
    name: &'static str,
    /// The key-space tags of the type's element keys (none for strings); the first one
    /// names the type in reclamation records.
    tags: &'static [u8],
}

/// The one table of key types. Everything that must cover every type (FLUSHALL's ranges,
/// reclamation, COPY, decoding) reads it here.
const TYPES: [TypeRow; 5] = [
    TypeRow {
        kind: KeyType::String,
        code: 1,
        name: "string",
        tags: &[],
    },
    TypeRow {
        kind: KeyType::Hash,
        code: 2,
        name: "hash",
        tags: &[crate::keys::HASH],
    },
    TypeRow {
        kind: KeyType::List,
        code: 3,
        name: "list",
        tags: &[crate::keys::LIST],
    },
    TypeRow {
        kind: KeyType::Set,
        code: 4,
        name: "set",
        tags: &[crate::keys::SET],
    },
    TypeRow {
        kind: KeyType::ZSet,
        code: 5,
        name: "zset",
        tags: &[crate::keys::ZSET_MEMBER, crate::keys::ZSET_SCORE],
    },
];

impl KeyType {
    fn row(self) -> &'static TypeRow {
        TYPES
            .iter()
            .find(|row| row.kind == self)
            .expect("every key type has a row in TYPES")
    }

    fn code(self) -> u8 {
        self.row().code
    }

    fn from_code(code: u8) -> Option<Self> {
        TYPES
            .iter()
            .find(|row| row.code == code)
            .map(|row| row.kind)
    }

    /// The name TYPE answers.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The tag that names this collection type in reclamation records (its first element
    /// tag), if it is a collection.
    pub fn element_tag(self) -> Option<u8> {
        self.row().tags.first().copied()
    }

    /// Every key-space tag of this type's element keys.
    pub fn tags(self) -> &'static [u8] {
        self.row().tags
    }

    /// The collection type whose elements carry `tag`.
    pub fn of_element_tag(tag: u8) -> Option<Self> {
        TYPES
            .iter()
            .find(|row| row.tags.contains(&tag))
            .map(|row| row.kind)
    }

    /// The element tags of every collection type.
    pub fn element_tags() -> impl Iterator<Item = u8> {
        TYPES.iter().flat_map(|row| row.tags.iter().copied())
    }
}

/// The contents of a key's metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBody {
    /// String value, inline.
    String(Vec<u8>),
    /// A collection: the version its elements are stored under, and how many there are.
    Collection {
        /// Collection type.
        kind: KeyType,
        /// Element version (unique per partition).
        version: u64,
        /// Number of elements.
        len: u64,
        /// Lists: the position of the first element (elements sit at `head..head+len`);
        /// 0 for other types, and not stored for them.
        head: i64,
        /// Sorted sets: encoded scores (see [`crate::keys::encode_score`]) at or below the
        /// lowest entry of the score index and at or above the highest, so range reads
        /// start past the tombstones a trimmed end leaves; `(0, 0)` for other types, and
        /// not stored for them.
        bounds: (u64, u64),
    },
}

/// A key's metadata: its value or collection header, and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    /// Unix time in ms at which the key expires, if any.
    pub expire_at: Option<u64>,
    /// Type-specific body.
    pub body: KeyBody,
}

impl KeyMeta {
    /// A string without expiry.
    pub fn string(value: Vec<u8>) -> Self {
        KeyMeta {
            expire_at: None,
            body: KeyBody::String(value),
        }
    }

    /// An empty collection of `kind` under `version`, without expiry (a new sorted set's
    /// bounds are empty: its first member sets them).
    pub fn collection(kind: KeyType, version: u64) -> Self {
        KeyMeta {
            expire_at: None,
            body: KeyBody::Collection {
                kind,
                version,
                len: 0,
                head: 0,
                bounds: if kind == KeyType::ZSet {
                    (u64::MAX, 0)
                } else {
                    (0, 0)
                },
            },
        }
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        match &self.body {
            KeyBody::String(_) => KeyType::String,
            KeyBody::Collection { kind, .. } => *kind,
        }
    }

    /// Whether the key is expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expire_at.is_some_and(|at| (at as i64) <= now_ms)
    }

    /// Encodes as: type u8, expire-at u64-BE (0 = none), then the string value, or version
    /// u64-BE and length u64-BE for collections, and for lists the head position i64-BE.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            17 + match &self.body {
                KeyBody::String(v) => v.len(),
                KeyBody::Collection { .. } => 32,
            },
        );
        out.push(self.key_type().code());
        out.extend_from_slice(&self.expire_at.unwrap_or(0).to_be_bytes());
        match &self.body {
            KeyBody::String(v) => out.extend_from_slice(v),
            KeyBody::Collection {
                kind,
                version,
                len,
                head,
                bounds,
            } => {
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                match kind {
                    KeyType::List => out.extend_from_slice(&head.to_be_bytes()),
                    KeyType::ZSet => {
                        out.extend_from_slice(&bounds.0.to_be_bytes());
                        out.extend_from_slice(&bounds.1.to_be_bytes());
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Decodes [`KeyMeta::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        let corrupt = || EngineError::Corruption(format!("key metadata of {} bytes", bytes.len()));
        if bytes.len() < 9 {
            return Err(corrupt());
        }
        let kind = KeyType::from_code(bytes[0]).ok_or_else(corrupt)?;
        let at = u64::from_be_bytes(bytes[1..9].try_into().map_err(|_| corrupt())?);
        let expire_at = (at != 0).then_some(at);
        let body = match kind {
            KeyType::String => KeyBody::String(bytes[9..].to_vec()),
            _ => {
                let size = match kind {
                    KeyType::List => 33,
                    KeyType::ZSet => 41,
                    _ => 25,
                };
                if bytes.len() != size {
                    return Err(corrupt());
                }
                let word = |at: usize| -> Result<[u8; 8], EngineError> {
                    bytes[at..at + 8].try_into().map_err(|_| corrupt())
                };
                KeyBody::Collection {
                    kind,
                    version: u64::from_be_bytes(word(9)?),
                    len: u64::from_be_bytes(word(17)?),
                    head: if kind == KeyType::List {
                        i64::from_be_bytes(word(25)?)
                    } else {
                        0
                    },
                    bounds: if kind == KeyType::ZSet {
                        (u64::from_be_bytes(word(25)?), u64::from_be_bytes(word(33)?))
                    } else {
                        (0, 0)
                    },
                }
            }
        };
        Ok(KeyMeta { expire_at, body })
    }

    /// [`KeyMeta::decode`] of a record read into `bytes`, whose allocation a string's value
    /// keeps (a GET copies its value once less).
    pub fn decode_vec(mut bytes: Vec<u8>) -> Result<Self, EngineError> {
        if bytes.len() < 9 || bytes[0] != KeyType::String.code() {
            return Self::decode(&bytes);
        }
        let at = u64::from_be_bytes(bytes[1..9].try_into().expect("8-byte slice"));
        bytes.drain(..9);
        Ok(KeyMeta {
            expire_at: (at != 0).then_some(at),
            body: KeyBody::String(bytes),
        })
    }
}

/// A reclamation record's value: which type's elements a dropped version holds, and how
/// many (unknown in records written before the count was kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimRecord {
    /// The type's first element tag.
    pub tag: u8,
    /// Elements the version held when it was dropped.
    pub len: Option<u64>,
}

impl ReclaimRecord {
    /// Encodes as the tag, then the count u64-BE.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag];
        if let Some(len) = self.len {
            out.extend_from_slice(&len.to_be_bytes());
        }
        out
    }

    /// Decodes [`ReclaimRecord::encode`]'s output, or the one-byte form (tag alone).
    pub fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        match bytes {
            [tag] => Ok(ReclaimRecord {
                tag: *tag,
                len: None,
            }),
            [tag, len @ ..] if len.len() == 8 => Ok(ReclaimRecord {
                tag: *tag,
                len: Some(u64::from_be_bytes(len.try_into().expect("8 bytes"))),
            }),
            _ => Err(EngineError::Corruption(format!(
                "reclamation record of {} bytes",
                bytes.len()
            ))),
        }
    }
}

/// What a blocking pop with an id (a proxy's BLPOP, BZMPOP, ...) took, kept for a while
/// so that the same pop sent again (its connection failed before the reply came) answers
/// this instead of popping again.
#[derive(Debug, Clone, PartialEq)]
pub struct PopRecord {
    /// When it was applied (ms since the Unix epoch, the change's time).
    pub at_ms: u64,
    /// Its reply: bulk strings, doubles and arrays of them.
    pub reply: Reply,
}

impl PopRecord {
    /// Encodes as the time u64-BE, then the reply (`b` u32-BE length bytes, `d` f64 bits,
    /// `i` i64, `n` null, `N` null array, `a` u32-BE count items).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.at_ms.to_be_bytes().to_vec();
        put_reply(&mut out, &self.reply);
        out
    }

    /// Decodes [`PopRecord::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        let corrupt = || EngineError::Corruption("malformed pop record".into());
        let (at, mut rest) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
        let reply = take_reply(&mut rest, 0).ok_or_else(corrupt)?;
        if !rest.is_empty() {
            return Err(corrupt());
        }
        Ok(PopRecord {
            at_ms: u64::from_be_bytes(at.try_into().expect("8 bytes")),
            reply,
        })
    }
}

fn put_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::Bulk(b) => {
            out.push(b'b');
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        Reply::Double(d) => {
            out.push(b'd');
            out.extend_from_slice(&d.to_bits().to_be_bytes());
        }
        Reply::Integer(i) => {
            out.push(b'i');
            out.extend_from_slice(&i.to_be_bytes());
        }
        Reply::Array(items) => {
            out.push(b'a');
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                put_reply(out, item);
            }
        }
        Reply::NilArray => out.push(b'N'),
        // A pop answers nothing else; anything else is kept as a null.
        _ => out.push(b'n'),
    }
}

/// Nesting deeper than any pop's reply is corruption (and bounds the recursion).
const MAX_DEPTH: usize = 4;

fn take_reply(rest: &mut &[u8], depth: usize) -> Option<Reply> {
    let (&tag, tail) = rest.split_first()?;
    *rest = tail;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head)
    };
    Some(match tag {
        b'b' => {
            let len = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
            Reply::Bulk(bytes::Bytes::copy_from_slice(take(len)?))
        }
        b'd' => Reply::Double(f64::from_bits(u64::from_be_bytes(
            take(8)?.try_into().ok()?,
        ))),
        b'i' => Reply::Integer(i64::from_be_bytes(take(8)?.try_into().ok()?)),
        b'a' if depth < MAX_DEPTH => {
            let n = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
            let mut items = Vec::with_capacity(n.min(rest.len()));
            for _ in 0..n {
                items.push(take_reply(rest, depth + 1)?);
            }
            Reply::Array(items)
        }
        b'N' => Reply::NilArray,
        b'n' => Reply::Nil,
        _ => return None,
    })
}

/// The partition's bookkeeping, written in the same batch as every applied change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppliedState {
    /// Index of the last applied change.
    pub applied_index: u64,
    /// Next collection version to hand out.
    pub next_version: u64,
    /// Number of metadata records (keys, including expired ones not yet reclaimed).
    pub keys: u64,
    /// Number of keys with an expiry.
    pub expires: u64,
    /// Number of collection versions waiting to be reclaimed (`g` records), so background
    /// reclamation looks at the disk only when there is work.
    pub reclaims: u64,
}

impl AppliedState {
    /// Encodes as five u64-BE values after a format byte (2).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41);
        out.push(2);
        for v in [
            self.applied_index,
            self.next_version,
            self.keys,
            self.expires,
            self.reclaims,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Decodes [`AppliedState::encode`]'s output (format 1, without the reclaim count,
    /// reads as having none pending).
    pub fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        let valid = matches!((bytes.first(), bytes.len()), (Some(1), 33) | (Some(2), 41));
        if !valid {
            return Err(EngineError::Corruption(format!(
                "applied state of {} bytes",
                bytes.len()
            )));
        }
        let field = |i: usize| {
            u64::from_be_bytes(
                bytes[1 + 8 * i..9 + 8 * i]
                    .try_into()
                    .expect("8-byte slice"),
            )
        };
        Ok(AppliedState {
            applied_index: field(0),
            next_version: field(1),
            keys: field(2),
            expires: field(3),
            reclaims: if bytes[0] == 2 { field(4) } else { 0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Replies as pops give them: bulks, doubles (not NaN: it never equals itself),
    /// integers, nulls, nested arrays.
    fn pop_reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..8)
                .prop_map(|b| Reply::Bulk(bytes::Bytes::from(b))),
            any::<f64>()
                .prop_filter("not NaN", |d| !d.is_nan())
                .prop_map(Reply::Double),
            any::<i64>().prop_map(Reply::Integer),
            Just(Reply::Nil),
            Just(Reply::NilArray),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(Reply::Array)
        })
    }

    proptest! {
        #[test]
        fn pop_record_round_trip(at_ms in any::<u64>(), reply in pop_reply()) {
            let record = PopRecord { at_ms, reply };
            prop_assert_eq!(PopRecord::decode(&record.encode()).unwrap(), record);
        }

        #[test]
        fn pop_records_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = PopRecord::decode(&bytes);
        }

        #[test]
        fn meta_round_trip(value in proptest::collection::vec(any::<u8>(), 0..20), at in proptest::option::of(1u64..), version in any::<u64>(), len in any::<u64>(), head in any::<i64>(), bounds in any::<(u64, u64)>(), kind in 0..TYPES.len()) {
            let body = match TYPES[kind].kind {
                KeyType::String => KeyBody::String(value),
                KeyType::List => KeyBody::Collection { kind: KeyType::List, version, len, head, bounds: (0, 0) },
                KeyType::ZSet => KeyBody::Collection { kind: KeyType::ZSet, version, len, head: 0, bounds },
                kind => KeyBody::Collection { kind, version, len, head: 0, bounds: (0, 0) },
            };
            let meta = KeyMeta { expire_at: at, body };
            prop_assert_eq!(KeyMeta::decode(&meta.encode()).unwrap(), meta.clone());
            prop_assert_eq!(KeyMeta::decode_vec(meta.encode()).unwrap(), meta);
        }

        #[test]
        fn applied_state_round_trip(v in proptest::array::uniform5(any::<u64>())) {
            let state = AppliedState { applied_index: v[0], next_version: v[1], keys: v[2], expires: v[3], reclaims: v[4] };
            prop_assert_eq!(AppliedState::decode(&state.encode()).unwrap(), state);
            // The first format, without the reclaim count, still reads.
            let mut v1 = vec![1u8];
            for x in &v[..4] {
                v1.extend_from_slice(&x.to_be_bytes());
            }
            prop_assert_eq!(AppliedState::decode(&v1).unwrap(), AppliedState { reclaims: 0, ..state });
        }

        #[test]
        fn reclaim_record_round_trip(tag in any::<u8>(), len in proptest::option::of(any::<u64>())) {
            let r = ReclaimRecord { tag, len };
            prop_assert_eq!(ReclaimRecord::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = ReclaimRecord::decode(&bytes);
            let _ = AppliedState::decode(&bytes);
            // Both decoders agree on every input, corrupt ones included.
            prop_assert_eq!(KeyMeta::decode(&bytes), KeyMeta::decode_vec(bytes.clone()));
        }
    }
}

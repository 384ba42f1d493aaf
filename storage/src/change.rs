//! Deterministic changes: what a write becomes before it is applied (and, with replication,
//! what a raft log entry carries).
//!
//! A change fixes everything that could differ between replicas — the time in ms — so that
//! applying the same changes in the same order on any replica produces byte-identical data.
//! Changes are encoded in a small binary format with a leading version byte, decoded in one
//! place ([`Change::decode`]); malformed input is an error, never a panic.

use bytes::Bytes;

use crate::data::functions::FunctionChange;
use crate::engine::EngineError;

/// Format version written as the first byte of every encoded change.
const FORMAT: u8 = 1;

/// One replicated change to a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client's write command: its arguments and the time it was received.
    Command {
        /// Milliseconds since the Unix epoch, fixed by the receiving node.
        now_ms: i64,
        /// The command's arguments, name first.
        argv: Vec<Bytes>,
    },
    /// Background expiry: delete these keys if they still carry this expiry and it has
    /// passed at `now_ms`.
    Expire {
        /// Milliseconds since the Unix epoch.
        now_ms: i64,
        /// (key, expire-at) pairs read from the expiry index.
        keys: Vec<(Bytes, u64)>,
    },
    /// No data change: raft's empty entries (a new leader's first entry) and membership
    /// changes. Applying it only advances the applied index. Encoded as zero bytes.
    Noop,
    /// A MULTI/EXEC transaction: its commands (writes and reads) applied one after the
    /// other as one change, each seeing the earlier ones' effects; the reply is the array
    /// of their replies. It applies nothing and answers a null array when a watched key
    /// expired after it was watched (the leader checked every other change of a watched
    /// key before proposing it: [`crate::replication::watches`]).
    Transaction {
        /// Milliseconds since the Unix epoch, fixed by the leader.
        now_ms: i64,
        /// Each watched key with the time (ms) it was watched.
        watched: Vec<(Bytes, i64)>,
        /// The commands' arguments, each name first.
        commands: Vec<Vec<Bytes>>,
    },
    /// A blocked client's pop (BLPOP, BZMPOP, ...) as the partition leader's blocked
    /// clients propose it ([`crate::replication::blocking`]): it runs as the command
    /// `argv`, unless a pop with the same non-empty `id` (named by the proxy that sent it)
    /// ran already, whose reply it then answers without popping again (a proxy sends a
    /// pop again, with its id, when the connection failed before the reply came:
    /// [`crate::data::pops`]).
    Pop {
        /// Milliseconds since the Unix epoch, fixed by the leader.
        now_ms: i64,
        /// The pop's id; empty: none.
        id: Bytes,
        /// A try after a write woke the client, not its first: source keys of another
        /// type are passed over ([`crate::data::Txn::waiting`]).
        retry: bool,
        /// The command's arguments, name first.
        argv: Vec<Bytes>,
    },
    /// The writes a script made on the partition leader ([`crate::script`]), replayed in
    /// order as one change; replicas never run the script itself. The leader ran the
    /// script on the state at log index `base` while it held the partition's other
    /// proposals, so the change applies only as the entry right after `base`; anywhere
    /// else (an entry slipped in between, or a new leader appended first) it applies
    /// nothing and answers ERR_CLUSTER_CHANGED, on every replica alike.
    Effects {
        /// Milliseconds since the Unix epoch: the time the script ran at.
        now_ms: i64,
        /// The log index whose state the script read.
        base: u64,
        /// The script's write commands, each name first.
        commands: Vec<Vec<Bytes>>,
    },
    /// A change to the partition's libraries of functions (FUNCTION LOAD, DELETE, FLUSH,
    /// RESTORE), each library as the node that took the command loaded it
    /// ([`crate::data::functions`]).
    Functions(FunctionChange),
    /// Background reclamation of the elements of dropped collection versions.
    Reclaim {
        /// Versions (with their element tag) to reclaim.
        versions: Vec<(u8, u64)>,
        /// Most element keys to delete in this change.
        budget: u32,
    },
}

/// The user keys a change may write.
#[derive(Debug, PartialEq, Eq)]
pub enum Touches<'a> {
    /// These keys (the keys of its write commands).
    Keys(Vec<&'a [u8]>),
    /// These keys, deleted by background expiry, each with the expiry it had.
    Expired(Vec<(&'a [u8], u64)>),
    /// Every key: a keyless write (FLUSHDB, FLUSHALL).
    Every,
}

/// Adds the keys of one command to `into` if it writes; false for a keyless write
/// (FLUSHDB, FLUSHALL), which touches every key.
fn command_touches<'a>(argv: &'a [Bytes], into: &mut Vec<&'a [u8]>) -> bool {
    let Some(spec) = argv.first().and_then(|name| zankv_commands::lookup(name)) else {
        return true;
    };
    if !spec.is_write() {
        return true;
    }
    let before = into.len();
    into.extend(spec.key_positions(argv).map(|pos| &argv[pos][..]));
    into.len() > before
}

/// The encoded size of a list of commands ([`put_commands`]).
fn commands_size(commands: &[Vec<Bytes>]) -> usize {
    4 + commands
        .iter()
        .map(|argv| 4 + argv.iter().map(|a| 4 + a.len()).sum::<usize>())
        .sum::<usize>()
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Appends a list of commands: their count, then each one's argument count and arguments.
fn put_commands(out: &mut Vec<u8>, commands: &[Vec<Bytes>]) {
    out.extend_from_slice(&(commands.len() as u32).to_be_bytes());
    for argv in commands {
        out.extend_from_slice(&(argv.len() as u32).to_be_bytes());
        for a in argv {
            put_bytes(out, a);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        if self.buf.len() < n {
            return Err(EngineError::Corruption("truncated change".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, EngineError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, EngineError> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }

    /// A list of commands, each a list of arguments.
    fn commands(&mut self) -> Result<Vec<Vec<Bytes>>, EngineError> {
        let n = self.count(4)?;
        let mut commands = Vec::with_capacity(n);
        for _ in 0..n {
            let argc = self.count(4)?;
            let mut argv = Vec::with_capacity(argc);
            for _ in 0..argc {
                argv.push(self.bytes()?);
            }
            commands.push(argv);
        }
        Ok(commands)
    }

    /// A count of items that each take at least `min_item` bytes, checked against what is
    /// left so a corrupt count cannot make us allocate.
    fn count(&mut self, min_item: usize) -> Result<usize, EngineError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(EngineError::Corruption(
                "change item count exceeds its size".into(),
            ));
        }
        Ok(n)
    }
}

impl Change {
    /// The user keys the change may write.
    pub fn touches(&self) -> Touches<'_> {
        let mut keys = Vec::new();
        let keyed = match self {
            Change::Expire { keys: expired, .. } => {
                return Touches::Expired(expired.iter().map(|(k, at)| (&k[..], *at)).collect());
            }
            Change::Command { argv, .. } | Change::Pop { argv, .. } => {
                command_touches(argv, &mut keys)
            }
            Change::Transaction { commands, .. } | Change::Effects { commands, .. } => {
                let mut keyed = true;
                for argv in commands {
                    keyed &= command_touches(argv, &mut keys);
                }
                keyed
            }
            Change::Reclaim { .. } | Change::Noop | Change::Functions(_) => true,
        };
        if keyed {
            Touches::Keys(keys)
        } else {
            Touches::Every
        }
    }

    /// Encodes the change.
    pub fn encode(&self) -> Vec<u8> {
        if *self == Change::Noop {
            return Vec::new();
        }
        let mut out = vec![FORMAT];
        match self {
            Change::Noop => unreachable!("encoded above"),
            Change::Command { now_ms, argv } => {
                out.push(1);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.extend_from_slice(&(argv.len() as u32).to_be_bytes());
                for a in argv {
                    put_bytes(&mut out, a);
                }
            }
            Change::Expire { now_ms, keys } => {
                out.push(2);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                for (k, at) in keys {
                    out.extend_from_slice(&at.to_be_bytes());
                    put_bytes(&mut out, k);
                }
            }
            Change::Transaction {
                now_ms,
                watched,
                commands,
            } => {
                out.push(4);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.extend_from_slice(&(watched.len() as u32).to_be_bytes());
                for (key, at) in watched {
                    out.extend_from_slice(&at.to_be_bytes());
                    put_bytes(&mut out, key);
                }
                put_commands(&mut out, commands);
            }
            Change::Effects {
                now_ms,
                base,
                commands,
            } => {
                out.push(6);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.extend_from_slice(&base.to_be_bytes());
                put_commands(&mut out, commands);
            }
            Change::Pop {
                now_ms,
                id,
                retry,
                argv,
            } => {
                out.push(5);
                out.extend_from_slice(&now_ms.to_be_bytes());
                out.push(u8::from(*retry));
                put_bytes(&mut out, id);
                out.extend_from_slice(&(argv.len() as u32).to_be_bytes());
                for a in argv {
                    put_bytes(&mut out, a);
                }
            }
            Change::Functions(change) => {
                out.push(7);
                change.encode(&mut out);
            }
            Change::Reclaim { versions, budget } => {
                out.push(3);
                out.extend_from_slice(&budget.to_be_bytes());
                out.extend_from_slice(&(versions.len() as u32).to_be_bytes());
                for (tag, v) in versions {
                    out.push(*tag);
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        out
    }

    /// The encoded size of a command change with arguments `argv`.
    pub fn command_size(argv: &[Bytes]) -> usize {
        1 + 1 + 8 + 4 + argv.iter().map(|a| 4 + a.len()).sum::<usize>()
    }

    /// The encoded size of a script's effects change with `commands`.
    pub fn effects_size(commands: &[Vec<Bytes>]) -> usize {
        1 + 1 + 8 + 8 + commands_size(commands)
    }

    /// The encoded size of a transaction change with `watched` keys and `commands`.
    pub fn transaction_size(watched: &[(Bytes, Bytes)], commands: &[Vec<Bytes>]) -> usize {
        1 + 1
            + 8
            + 4
            + watched.iter().map(|(k, _)| 8 + 4 + k.len()).sum::<usize>()
            + commands_size(commands)
    }

    /// Decodes [`Change::encode`]'s output.
    pub fn decode(buf: &[u8]) -> Result<Change, EngineError> {
        if buf.is_empty() {
            return Ok(Change::Noop);
        }
        let mut r = Reader { buf };
        if r.u8()? != FORMAT {
            return Err(EngineError::Corruption("unknown change format".into()));
        }
        let change = match r.u8()? {
            1 => {
                let now_ms = r.u64()? as i64;
                let n = r.count(4)?;
                let mut argv = Vec::with_capacity(n);
                for _ in 0..n {
                    argv.push(r.bytes()?);
                }
                Change::Command { now_ms, argv }
            }
            2 => {
                let now_ms = r.u64()? as i64;
                let n = r.count(12)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = r.u64()?;
                    keys.push((r.bytes()?, at));
                }
                Change::Expire { now_ms, keys }
            }
            3 => {
                let budget = r.u32()?;
                let n = r.count(9)?;
                let mut versions = Vec::with_capacity(n);
                for _ in 0..n {
                    let tag = r.u8()?;
                    versions.push((tag, r.u64()?));
                }
                Change::Reclaim { versions, budget }
            }
            4 => {
                let now_ms = r.u64()? as i64;
                let n = r.count(12)?;
                let mut watched = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = r.u64()? as i64;
                    watched.push((r.bytes()?, at));
                }
                Change::Transaction {
                    now_ms,
                    watched,
                    commands: r.commands()?,
                }
            }
            6 => Change::Effects {
                now_ms: r.u64()? as i64,
                base: r.u64()?,
                commands: r.commands()?,
            },
            7 => Change::Functions(FunctionChange::decode(std::mem::take(&mut r.buf))?),
            5 => {
                let now_ms = r.u64()? as i64;
                let retry = match r.u8()? {
                    0 => false,
                    1 => true,
                    flag => return Err(EngineError::Corruption(format!("pop retry flag {flag}"))),
                };
                let id = r.bytes()?;
                let n = r.count(4)?;
                let mut argv = Vec::with_capacity(n);
                for _ in 0..n {
                    argv.push(r.bytes()?);
                }
                Change::Pop {
                    now_ms,
                    id,
                    retry,
                    argv,
                }
            }
            kind => {
                return Err(EngineError::Corruption(format!(
                    "unknown change kind {kind}"
                )))
            }
        };
        if !r.buf.is_empty() {
            return Err(EngineError::Corruption(
                "trailing bytes after change".into(),
            ));
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (any::<i64>(), proptest::collection::vec(bytes(), 0..5))
                .prop_map(|(now_ms, argv)| Change::Command { now_ms, argv }),
            (
                any::<i64>(),
                bytes(),
                any::<bool>(),
                proptest::collection::vec(bytes(), 0..5)
            )
                .prop_map(|(now_ms, id, retry, argv)| Change::Pop {
                    now_ms,
                    id,
                    retry,
                    argv
                }),
            (
                any::<i64>(),
                proptest::collection::vec((bytes(), any::<u64>()), 0..5)
            )
                .prop_map(|(now_ms, keys)| Change::Expire { now_ms, keys }),
            (
                proptest::collection::vec((any::<u8>(), any::<u64>()), 0..5),
                any::<u32>()
            )
                .prop_map(|(versions, budget)| Change::Reclaim { versions, budget }),
            (
                any::<i64>(),
                proptest::collection::vec((bytes(), any::<i64>()), 0..3),
                proptest::collection::vec(proptest::collection::vec(bytes(), 0..4), 0..4)
            )
                .prop_map(|(now_ms, watched, commands)| Change::Transaction {
                    now_ms,
                    watched,
                    commands
                }),
            (
                any::<i64>(),
                any::<u64>(),
                proptest::collection::vec(proptest::collection::vec(bytes(), 0..4), 0..4)
            )
                .prop_map(|(now_ms, base, commands)| Change::Effects {
                    now_ms,
                    base,
                    commands
                }),
            Just(Change::Functions(FunctionChange::Flush)),
            bytes().prop_map(|name| Change::Functions(FunctionChange::Delete(name))),
            Just(Change::Noop),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(c in change()) {
            prop_assert_eq!(Change::decode(&c.encode()).unwrap(), c);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Change::decode(&buf);
        }
    }

    #[test]
    fn a_change_touches_the_keys_its_writes_name() {
        let cmd = |words: &[&str]| -> Vec<Bytes> {
            words.iter().map(|w| Bytes::from(w.to_string())).collect()
        };
        let txn = Change::Transaction {
            now_ms: 1,
            watched: vec![],
            commands: vec![
                cmd(&["set", "a", "1"]),
                cmd(&["get", "b"]),
                cmd(&["mset", "c", "1", "d", "2"]),
            ],
        };
        assert_eq!(txn.touches(), Touches::Keys(vec![b"a", b"c", b"d"]));
        let flush = Change::Command {
            now_ms: 1,
            argv: cmd(&["flushdb"]),
        };
        assert_eq!(flush.touches(), Touches::Every);
        let txn = Change::Transaction {
            now_ms: 1,
            watched: vec![],
            commands: vec![cmd(&["dbsize"]), cmd(&["flushall"])],
        };
        assert_eq!(txn.touches(), Touches::Every);
        assert_eq!(Change::Noop.touches(), Touches::Keys(vec![]));
    }

    #[test]
    fn command_size_is_the_encoded_size() {
        let argv: Vec<Bytes> = vec!["set".into(), "k".into(), Bytes::from(vec![7u8; 300])];
        let encoded = Change::Command {
            now_ms: 5,
            argv: argv.clone(),
        }
        .encode();
        assert_eq!(Change::command_size(&argv), encoded.len());
        let watched = vec![(Bytes::from_static(b"key"), Bytes::from_static(b"token"))];
        let commands = vec![argv.clone(), vec!["get".into(), "k".into()]];
        let encoded = Change::Transaction {
            now_ms: 5,
            watched: vec![(Bytes::from_static(b"key"), 9)],
            commands: commands.clone(),
        }
        .encode();
        assert_eq!(Change::transaction_size(&watched, &commands), encoded.len());
        let encoded = Change::Effects {
            now_ms: 5,
            base: 77,
            commands: commands.clone(),
        }
        .encode();
        assert_eq!(Change::effects_size(&commands), encoded.len());
    }
}

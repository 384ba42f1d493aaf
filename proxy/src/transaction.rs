//! WATCH and EXEC through the proxy. The connection queues MULTI ... EXEC itself
//! ([`zankv_commands::transaction`]); here a WATCH becomes `ZANKV.WATCH` to the keys'
//! partition leader (which answers a token per key), and an EXEC becomes one `ZANKV.TXN`
//! to the leader of the one partition all its data commands and watched keys belong to,
//! run there as one replicated change. Keys of several partitions answer `CROSSSLOT`, and
//! nothing of the transaction runs. A keyless data command (DBSIZE, FLUSHDB, ...) in a
//! transaction runs on the transaction's partition, so it is refused unless the connection
//! reaches a single partition.
//!
//! An EXEC is a write: lost on its way, it answers `TIMEOUT ... may or may not have been
//! applied` and is never sent twice; refused by a node that is not the leader (nothing
//! ran), it goes to the new leader, where the WATCH tokens of the old one fail it (a null
//! reply), as a watched key changed under the client would.

use bytes::Bytes;
use zankv_commands::transaction::{Queued, Remote, Watched, WATCH_COMMAND};
use zankv_commands::{CommandError, Reply};

use crate::forward::{encode_request, partitions_in, Merge, Part, Plan, Scope};
use crate::reply_frames::array;
use crate::routing::{KeyTarget, RoutingTables};

/// The partition of `keys`, which must share one and be in the connection's reach.
fn partition_of<'k>(
    keys: impl Iterator<Item = &'k [u8]>,
    tables: &RoutingTables,
    scope: Scope,
    mut target: Option<KeyTarget>,
) -> Result<Option<KeyTarget>, CommandError> {
    for key in keys {
        let t = tables.locate(key)?;
        if scope.namespace.is_some_and(|ns| ns != t.namespace.name) {
            return Err(CommandError::NoPerm);
        }
        match &target {
            Some(first) if !first.same_partition(&t) => return Err(CommandError::CrossSlot),
            Some(_) => {}
            None => target = Some(t),
        }
    }
    Ok(target)
}

/// WATCH `keys`: a plan asking their partition's leader for tokens.
pub fn watch_plan(keys: &[Bytes], tables: &RoutingTables, scope: Scope) -> Plan {
    match partition_of(keys.iter().map(|k| &k[..]), tables, scope, None) {
        Ok(Some(target)) => {
            let mut argv = vec![
                Bytes::from_static(WATCH_COMMAND),
                Bytes::from(target.namespace.partition_name(target.partition)),
            ];
            argv.extend(keys.iter().cloned());
            Plan::Forward {
                parts: vec![Part::new(encode_request(&argv), target, false, vec![])],
                merge: None,
                keys: keys.len(),
            }
        }
        Ok(None) => Plan::Reply(Reply::Error(CommandError::WrongArity("watch".into()))),
        Err(e) => Plan::Reply(Reply::Error(e)),
    }
}

/// What EXEC becomes.
pub enum Exec {
    /// Answered by the connection alone (no data command, no watched key): the array of
    /// the connection commands' replies, encoded.
    Local(Bytes),
    /// Sent to the transaction's partition.
    Remote(Plan),
}

/// An EXEC its partitions accept: where it runs and what.
pub struct Accepted {
    /// The one partition of its data commands and watched keys (None: neither).
    target: Option<KeyTarget>,
    watched: Vec<Watched>,
    commands: Vec<Vec<Bytes>>,
}

/// EXEC of `queued` with `watched` keys, accepted if they share a partition in the
/// connection's reach; refused with CROSSSLOT, it runs nothing, as on a storage node (its
/// connection commands are answered only once it is accepted).
pub fn exec_target(
    queued: &[Queued],
    watched: Vec<Watched>,
    tables: &RoutingTables,
    scope: Scope,
) -> Result<Accepted, CommandError> {
    let mut target = None;
    let mut keyless = false;
    let mut commands = Vec::new();
    for q in queued {
        if let Queued::Data { argv, spec } = q {
            let mut positions = spec.key_positions(argv).peekable();
            keyless |= positions.peek().is_none();
            target = partition_of(positions.map(|p| &argv[p][..]), tables, scope, target)?;
            commands.push(argv.clone());
        }
    }
    target = partition_of(watched.iter().map(|w| &w.key[..]), tables, scope, target)?;
    if keyless {
        let all = partitions_in(tables, scope);
        let [only] = all.as_slice() else {
            return Err(CommandError::CrossSlot);
        };
        match &target {
            Some(t) if !t.same_partition(only) => return Err(CommandError::CrossSlot),
            Some(_) => {}
            None => target = Some(only.clone()),
        }
    }
    Ok(Accepted {
        target,
        watched,
        commands,
    })
}

impl Accepted {
    /// What the EXEC becomes, with `answers`: the connection commands' encoded replies
    /// (None for each data command).
    pub fn plan(self, answers: Vec<Option<Bytes>>) -> Exec {
        let Accepted {
            target,
            watched,
            commands,
        } = self;
        let Some(target) = target else {
            let replies: Vec<Bytes> = answers.into_iter().flatten().collect();
            return Exec::Local(array(&replies));
        };
        let remote = Remote {
            partition: Bytes::from(target.namespace.partition_name(target.partition)),
            watched: watched.into_iter().map(|w| (w.key, w.token)).collect(),
            commands,
        };
        Exec::Remote(Plan::Forward {
            parts: vec![Part::new(
                encode_request(&remote.encode()),
                target,
                true,
                vec![],
            )],
            merge: Some(Merge::Exec(answers)),
            keys: 0,
        })
    }
}

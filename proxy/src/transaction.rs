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

/// EXEC of `queued` with `watched` keys; `answers` runs the connection commands and gives
/// their encoded replies (None for each data command), only once the transaction is known
/// to be accepted (refused with CROSSSLOT, it runs nothing, as on a storage node).
pub fn exec_plan(
    queued: &[Queued],
    watched: Vec<Watched>,
    answers: impl FnOnce() -> Vec<Option<Bytes>>,
    tables: &RoutingTables,
    scope: Scope,
) -> Result<Exec, CommandError> {
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
    let answers = answers();
    let Some(target) = target else {
        let replies: Vec<Bytes> = answers.into_iter().flatten().collect();
        return Ok(Exec::Local(array(&replies)));
    };
    let remote = Remote {
        partition: Bytes::from(target.namespace.partition_name(target.partition)),
        watched: watched.into_iter().map(|w| (w.key, w.token)).collect(),
        commands,
    };
    Ok(Exec::Remote(Plan::Forward {
        parts: vec![Part::new(
            encode_request(&remote.encode()),
            target,
            true,
            vec![],
        )],
        merge: Some(Merge::Exec(answers)),
        keys: 0,
    }))
}

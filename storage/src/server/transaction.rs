//! Where a transaction runs on this node: the group of a connection's MULTI/EXEC (its data
//! commands and watched keys must share one), and the proxy's internal `ZANKV.TXN` and
//! `ZANKV.WATCH` requests for a named partition. The queueing itself is
//! [`zankv_commands::transaction`]'s; the atomic execution is the store loop's and the
//! partition's ([`crate::change::Change::Transaction`]).

use bytes::Bytes;
use zankv_commands::transaction::{Queued, Remote, Watched};
use zankv_commands::CommandError;

use crate::change::Change;
use crate::replication::log_store::GroupId;
use crate::routing::Routing;
use crate::worker::BatchItem;

/// The transaction item for a connection's EXEC, with its group; `None` when it has no
/// data command and no watched key (EXEC then answers from the connection alone).
pub fn local(
    queued: &[Queued],
    watched: Vec<Watched>,
    routing: &Routing,
    max_write_bytes: usize,
) -> Result<Option<(GroupId, BatchItem)>, CommandError> {
    let mut group: Option<GroupId> = None;
    let mut join = |g: GroupId| match group {
        Some(other) if other != g => Err(CommandError::CrossSlot),
        _ => {
            group = Some(g);
            Ok(())
        }
    };
    let mut commands = Vec::new();
    for q in queued {
        if let Queued::Data { argv, spec } = q {
            join(routing.route(spec, argv)?)?;
            commands.push(argv.clone());
        }
    }
    for w in &watched {
        join(routing.key_group(&w.key)?)?;
    }
    let Some(group) = group else {
        return Ok(None);
    };
    let watched = watched.into_iter().map(|w| (w.key, w.token)).collect();
    item(group, watched, commands, max_write_bytes).map(Some)
}

/// A proxy's `ZANKV.TXN`: the partition it names, whose keys every command and watched key
/// must be in (a keyless command runs on that partition).
pub fn remote(
    argv: &[Bytes],
    routing: &Routing,
    max_write_bytes: usize,
) -> Result<(GroupId, BatchItem), CommandError> {
    let Remote {
        partition,
        watched,
        commands,
    } = Remote::decode(argv)?;
    let group = partition_group(&partition, routing)?;
    for argv in &commands {
        let (cmd, spec) = zankv_commands::parse(argv)?;
        if matches!(cmd, zankv_commands::Command::Connection(_)) {
            return Err(CommandError::Syntax);
        }
        in_partition(
            spec.key_positions(argv).map(|p| &argv[p][..]),
            group,
            routing,
        )?;
    }
    in_partition(watched.iter().map(|(k, _)| &k[..]), group, routing)?;
    item(group, watched, commands, max_write_bytes)
}

/// A proxy's `ZANKV.WATCH <partition> key...`: the group and the keys.
pub fn remote_watch(
    argv: &[Bytes],
    routing: &Routing,
) -> Result<(GroupId, Vec<Bytes>), CommandError> {
    if argv.len() < 3 {
        return Err(CommandError::WrongArity("zankv.watch".into()));
    }
    let group = partition_group(&argv[1], routing)?;
    let keys = argv[2..].to_vec();
    in_partition(keys.iter().map(|k| &k[..]), group, routing)?;
    Ok((group, keys))
}

/// The group of a client's `WATCH key...`: all its keys must share one.
pub fn watch_group(keys: &[Bytes], routing: &Routing) -> Result<GroupId, CommandError> {
    let mut group = None;
    for key in keys {
        let g = routing.key_group(key)?;
        if group.is_some_and(|other| other != g) {
            return Err(CommandError::CrossSlot);
        }
        group = Some(g);
    }
    group.ok_or_else(|| CommandError::WrongArity("watch".into()))
}

fn partition_group(name: &[u8], routing: &Routing) -> Result<GroupId, CommandError> {
    let name = String::from_utf8_lossy(name);
    routing
        .layout_by_name(&name)
        .map(|layout| layout.id)
        .ok_or_else(|| {
            CommandError::ClusterChanged(format!("partition {name} is not known to this node"))
        })
}

fn in_partition<'k>(
    keys: impl Iterator<Item = &'k [u8]>,
    group: GroupId,
    routing: &Routing,
) -> Result<(), CommandError> {
    for key in keys {
        if routing.key_group(key)? != group {
            return Err(CommandError::CrossSlot);
        }
    }
    Ok(())
}

fn item(
    group: GroupId,
    watched: Vec<(Bytes, Bytes)>,
    commands: Vec<Vec<Bytes>>,
    max_write_bytes: usize,
) -> Result<(GroupId, BatchItem), CommandError> {
    let size = Change::transaction_size(&watched, &commands);
    if size > max_write_bytes {
        return Err(CommandError::WriteTooLarge(size, max_write_bytes));
    }
    Ok((group, BatchItem::Transaction { watched, commands }))
}

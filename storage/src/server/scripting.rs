//! Scripting commands on a storage node: EVAL, EVALSHA, FCALL and their `_RO` forms become
//! jobs for their partition's leader ([`crate::script`]); FUNCTION LOAD, DELETE, FLUSH and
//! RESTORE become changes of the partition's libraries (the code loaded here, where Lua
//! runs; [`crate::data::functions`]), FUNCTION LIST and DUMP reads of them; the script
//! cache, SCRIPT KILL and FUNCTION STATS are answered from the node's [`crate::script::Scripts`]. Also
//! the BUSY rule: which commands a node refuses while a script has run too long.

use std::sync::Arc;

use bytes::Bytes;
use zankv_commands::scripting::{self, Eval, FunctionWrite, ScriptCommand, Source};
use zankv_commands::{CommandError, ReadCommand, Reply};

use super::resp::{ServerContext, ON_PARTITION};
use crate::data::functions::{self, FunctionChange};
use crate::replication::log_store::GroupId;
use crate::routing::Routing;
use crate::script::{self, ScriptJob};
use crate::worker::BatchItem;

/// While a script has run past `busy-reply-threshold`, the refusal of a command that may
/// not run then (Redis's BUSY; a proxy's internal commands are judged by what they carry).
pub(super) fn busy_refusal(ctx: &ServerContext, argv: &[Bytes]) -> Option<Reply> {
    let function = ctx.scripts.busy()?;
    let inner = if argv[0].eq_ignore_ascii_case(ON_PARTITION) {
        argv.get(2..).unwrap_or_default()
    } else {
        argv
    };
    let [name, rest @ ..] = inner else {
        return None;
    };
    // The other kind's KILL (and FUNCTION STATS while a script runs) is refused too, as
    // Redis refuses it.
    let sub = |s: &[u8]| rest.first().is_some_and(|a| a.eq_ignore_ascii_case(s));
    let other_kind = if function {
        name.eq_ignore_ascii_case(b"script") && sub(b"kill")
    } else {
        name.eq_ignore_ascii_case(b"function") && (sub(b"kill") || sub(b"stats"))
    };
    (other_kind || !zankv_commands::allowed_while_busy(inner))
        .then(|| Reply::Error(script::busy_error(function)))
}

/// What a scripting command becomes: a script or a change or read of the libraries of
/// functions for its partition's leader, or the answer of a command of the node (the
/// script cache, SCRIPT KILL, FUNCTION STATS).
pub(super) async fn request(
    ctx: &ServerContext,
    routing: &Arc<Routing>,
    group: Option<GroupId>,
    cmd: ScriptCommand,
) -> Result<(GroupId, BatchItem), Reply> {
    let scripts = &ctx.scripts;
    let item = match cmd {
        ScriptCommand::Load(body) => {
            return Err(scripts.load(&body).map_or_else(Reply::Error, Reply::bulk))
        }
        ScriptCommand::Exists(shas) => return Err(scripts.exists(&shas)),
        ScriptCommand::Flush => {
            scripts.flush();
            return Err(Reply::OK);
        }
        ScriptCommand::Kill { function } => {
            return Err(scripts
                .kill(function)
                .map_or_else(Reply::Error, |()| Reply::OK))
        }
        ScriptCommand::FunctionStats => return Err(function_stats(ctx).await),
        ScriptCommand::FunctionRead(read) => BatchItem::Read(ReadCommand::Functions(read)),
        ScriptCommand::FunctionWrite(write) => {
            // Loading runs Lua (500 ms at most per library): not on the async runtime.
            let change = tokio::task::spawn_blocking(move || function_change(write))
                .await
                .unwrap_or_else(|e| Err(CommandError::Internal(format!("loading: {e}"))));
            BatchItem::Functions(change.map_err(Reply::Error)?)
        }
        ScriptCommand::Eval(eval) => BatchItem::Script(script_job(ctx, routing, group, eval)?),
    };
    match group {
        Some(group) => Ok((group, item)),
        None => Err(Reply::Error(CommandError::Internal(
            "a partition command without a partition".into(),
        ))),
    }
}

/// EVAL, EVALSHA, FCALL and their `_RO` forms as a job for the partition's leader.
fn script_job(
    ctx: &ServerContext,
    routing: &Arc<Routing>,
    group: Option<GroupId>,
    eval: Eval,
) -> Result<Box<ScriptJob>, Reply> {
    let scripts = &ctx.scripts;
    let (sha, body, function) = match eval.source {
        Source::Body(body) => match scripts.load(&body) {
            Ok(sha) => (sha, body, None),
            Err(e) => return Err(Reply::Error(e)),
        },
        Source::Sha(sha) => match scripts.get(&sha) {
            Some(body) => (sha, body, None),
            None => return Err(Reply::Error(CommandError::NoScript)),
        },
        Source::Function(name) => (
            String::from_utf8_lossy(&name).into_owned(),
            Bytes::new(),
            Some(name),
        ),
    };
    let flags = scripting::shebang(&body).map_err(Reply::Error)?;
    if flags.no_cluster {
        return Err(Reply::Error(CommandError::NoClusterFlag));
    }
    // A script that declares its flags must declare no-writes to run as read-only.
    if eval.read_only && flags.shebang && !flags.no_writes {
        return Err(Reply::Error(CommandError::WriteFunctionReadOnly));
    }
    Ok(Box::new(ScriptJob {
        sha,
        read_only: eval.read_only || flags.no_writes,
        flags,
        body,
        keys: eval.keys,
        args: eval.args,
        group: group.unwrap_or_default(),
        routing: routing.clone(),
        scripts: scripts.clone(),
        max_write_bytes: ctx.max_write_bytes,
        function,
    }))
}

/// FUNCTION LOAD, DELETE, FLUSH and RESTORE as a change of the libraries: the code of a
/// library is compiled and registered here (Lua runs on this node only; replicas store
/// what it registered).
fn function_change(write: FunctionWrite) -> Result<FunctionChange, CommandError> {
    Ok(match write {
        FunctionWrite::Load { replace, code } => FunctionChange::Load {
            replace,
            library: script::library::check(&code)?,
        },
        FunctionWrite::Delete(name) => FunctionChange::Delete(name),
        FunctionWrite::Flush => FunctionChange::Flush,
        FunctionWrite::Restore { payload, policy } => FunctionChange::Restore {
            policy,
            libraries: functions::payload_codes(&payload)?
                .iter()
                .map(script::library::check)
                .collect::<Result<_, _>>()?,
        },
    })
}

/// FUNCTION STATS: the script running on this node, and the libraries its partitions hold
/// (every partition holds them all).
async fn function_stats(ctx: &ServerContext) -> Reply {
    let (mut libraries, mut functions) = (0, 0);
    for (_, _, worker) in ctx.store.workers().await {
        let (l, f) = worker.function_counts();
        libraries = libraries.max(l);
        functions = functions.max(f);
    }
    let running = ctx
        .scripts
        .running_info()
        .map_or(Reply::Nil, |(name, command, ms)| {
            Reply::Map(vec![
                (Reply::bulk("name"), Reply::bulk(name)),
                (Reply::bulk("command"), Reply::bulk_array(command)),
                (Reply::bulk("duration_ms"), Reply::Integer(ms as i64)),
            ])
        });
    let counts = Reply::Map(vec![
        (
            Reply::bulk("libraries_count"),
            Reply::Integer(libraries as i64),
        ),
        (
            Reply::bulk("functions_count"),
            Reply::Integer(functions as i64),
        ),
    ]);
    Reply::Map(vec![
        (Reply::bulk("running_script"), running),
        (
            Reply::bulk("engines"),
            Reply::Map(vec![(Reply::bulk("LUA"), counts)]),
        ),
    ])
}

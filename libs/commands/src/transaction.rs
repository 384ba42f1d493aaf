//! MULTI/EXEC/DISCARD/WATCH on one connection, as Redis 7.0 queues them; shared by the
//! proxy and the storage node, which differ only in how they run the queued data commands
//! and where WATCH gets its tokens.
//!
//! Rules (Redis's):
//! - between MULTI and EXEC every command is queued (`+QUEUED`) except EXEC, DISCARD,
//!   MULTI (`ERR MULTI calls can not be nested`), WATCH (`ERR WATCH inside MULTI is not
//!   allowed`), QUIT and RESET; a command refused while queueing (unknown command or
//!   subcommand, wrong number of arguments) is answered with its error and makes EXEC
//!   answer `EXECABORT` without running anything;
//! - a queued command whose arguments are wrong in another way runs at EXEC and answers its
//!   error there, in place, without stopping the others;
//! - EXEC, DISCARD and RESET forget the watched keys; so does UNWATCH.
//!
//! The data commands of one transaction must all belong to one partition, with the watched
//! keys: they run as one replicated change (atomic on every replica), and a WATCH token
//! (issued by the partition's leader) is checked when that change is proposed.

use bytes::Bytes;

use crate::connection::{ClientSession, ConnectionCommand};
use crate::error::CommandError;
use crate::reply::Reply;
use crate::spec::CommandSpec;
use crate::Command;

/// A transaction being queued.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Multi {
    queued: Vec<Queued>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    dirty: bool,
}

/// One queued command.
#[derive(Debug, Clone)]
pub enum Queued {
    /// Answered by the connection at EXEC: a connection command, or the error of a
    /// command whose arguments did not parse.
    Local(Result<ConnectionCommand, CommandError>),
    /// A data command, run in the transaction's partition.
    Data {
        /// Its arguments, name first.
        argv: Vec<Bytes>,
        /// Its spec (keys, read or write).
        spec: &'static CommandSpec,
    },
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        match (self, other) {
            (Queued::Local(a), Queued::Local(b)) => a == b,
            (Queued::Data { argv: a, spec: s }, Queued::Data { argv: b, spec: t }) => {
                a == b && s.name == t.name
            }
            _ => false,
        }
    }
}

/// A watched key and the token its partition's leader gave for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The key.
    pub key: Bytes,
    /// Opaque to the connection; the leader checks it when the transaction is proposed.
    pub token: Bytes,
}

/// What the connection does with a command, given its transaction state.
#[derive(Debug)]
pub enum Step {
    /// Not for the transaction logic: run it as usual (the command given back).
    Run(
        Vec<Bytes>,
        Result<(Command, &'static CommandSpec), CommandError>,
    ),
    /// Answered.
    Reply(Reply),
    /// EXEC: run these commands as one transaction, if the watched keys are unchanged.
    Exec {
        /// The queued commands, in order.
        queued: Vec<Queued>,
        /// The watched keys.
        watched: Vec<Watched>,
    },
}

/// Takes one parsed request through the connection's transaction state.
pub fn step(
    session: &mut ClientSession,
    argv: Vec<Bytes>,
    parsed: Result<(Command, &'static CommandSpec), CommandError>,
) -> Step {
    let connection = match &parsed {
        Ok((Command::Connection(c), _)) => Some(c),
        _ => None,
    };
    match (connection, session.multi.as_mut()) {
        (Some(ConnectionCommand::Multi), None) => {
            session.multi = Some(Multi::default());
            Step::Reply(Reply::OK)
        }
        (Some(ConnectionCommand::Multi), Some(_)) => {
            Step::Reply(Reply::Error(CommandError::MultiNested))
        }
        (Some(ConnectionCommand::Exec), None) => {
            Step::Reply(Reply::Error(CommandError::ExecWithoutMulti))
        }
        (Some(ConnectionCommand::Discard), None) => {
            Step::Reply(Reply::Error(CommandError::DiscardWithoutMulti))
        }
        (Some(ConnectionCommand::Exec), Some(_)) => {
            let multi = session.multi.take().expect("in a transaction");
            let watched = std::mem::take(&mut session.watched);
            if multi.dirty {
                Step::Reply(Reply::Error(CommandError::ExecAbort))
            } else {
                Step::Exec {
                    queued: multi.queued,
                    watched,
                }
            }
        }
        (Some(ConnectionCommand::Discard), Some(_)) => {
            session.multi = None;
            session.watched.clear();
            Step::Reply(Reply::OK)
        }
        (Some(ConnectionCommand::Watch(_)), Some(_)) => {
            Step::Reply(Reply::Error(CommandError::WatchInMulti))
        }
        (Some(ConnectionCommand::Unwatch), None) => {
            session.watched.clear();
            Step::Reply(Reply::OK)
        }
        (Some(ConnectionCommand::Quit | ConnectionCommand::Reset), _) | (_, None) => {
            Step::Run(argv, parsed)
        }
        (_, Some(multi)) => match parsed {
            Err(
                e @ (CommandError::UnknownCommand { .. }
                | CommandError::UnknownSubcommand { .. }
                | CommandError::WrongArity(_)),
            ) => {
                multi.dirty = true;
                Step::Reply(Reply::Error(e))
            }
            Err(e) => {
                multi.queued.push(Queued::Local(Err(e)));
                Step::Reply(Reply::Status("QUEUED"))
            }
            Ok((Command::Connection(c), _)) => {
                multi.queued.push(Queued::Local(Ok(c)));
                Step::Reply(Reply::Status("QUEUED"))
            }
            // A transaction is replayed by every replica; a script runs on the leader only.
            Ok((Command::Script(_), _)) => {
                multi
                    .queued
                    .push(Queued::Local(Err(CommandError::ScriptInMulti)));
                Step::Reply(Reply::Status("QUEUED"))
            }
            Ok((_, spec)) => {
                multi.queued.push(Queued::Data { argv, spec });
                Step::Reply(Reply::Status("QUEUED"))
            }
        },
    }
}

/// The internal command a proxy sends a partition's leader to run a transaction's data
/// commands there: `ZANKV.TXN <partition> <watched> [<key> <token>]... [<argc> <arg>...]...`.
/// Not in the command table: clients cannot send it.
pub const TXN_COMMAND: &[u8] = b"ZANKV.TXN";
/// The internal command a proxy sends a partition's leader to WATCH keys there:
/// `ZANKV.WATCH <partition> <key> [<key> ...]`, answered with a token per key.
pub const WATCH_COMMAND: &[u8] = b"ZANKV.WATCH";

/// A transaction as it travels from a proxy to a storage node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The partition's name (`<namespace>-<partition>`).
    pub partition: Bytes,
    /// Each watched key with its token.
    pub watched: Vec<(Bytes, Bytes)>,
    /// The data commands.
    pub commands: Vec<Vec<Bytes>>,
}

impl Remote {
    /// The request's arguments.
    pub fn encode(&self) -> Vec<Bytes> {
        let mut argv = vec![
            Bytes::from_static(TXN_COMMAND),
            self.partition.clone(),
            Bytes::from(self.watched.len().to_string()),
        ];
        for (key, token) in &self.watched {
            argv.push(key.clone());
            argv.push(token.clone());
        }
        for command in &self.commands {
            argv.push(Bytes::from(command.len().to_string()));
            argv.extend(command.iter().cloned());
        }
        argv
    }

    /// Reads [`Remote::encode`]'s arguments (the name included).
    pub fn decode(argv: &[Bytes]) -> Result<Remote, CommandError> {
        let count = |arg: Option<&Bytes>| {
            arg.and_then(|a| std::str::from_utf8(a).ok()?.parse::<usize>().ok())
                .ok_or(CommandError::Syntax)
        };
        let partition = argv.get(1).ok_or(CommandError::Syntax)?.clone();
        let watches = count(argv.get(2))?;
        let mut rest = argv.get(3..).unwrap_or_default();
        if rest.len() < watches.saturating_mul(2) {
            return Err(CommandError::Syntax);
        }
        let watched = rest[..watches * 2]
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        rest = &rest[watches * 2..];
        let mut commands = Vec::new();
        while !rest.is_empty() {
            let argc = count(rest.first())?;
            if argc == 0 || rest.len() < 1 + argc {
                return Err(CommandError::Syntax);
            }
            commands.push(rest[1..1 + argc].to_vec());
            rest = &rest[1 + argc..];
        }
        Ok(Remote {
            partition,
            watched,
            commands,
        })
    }
}

/// EXEC's replies in queue order: `answers` holds one entry per queued command, the reply
/// of each [`Queued::Local`] and `None` for each data command, whose replies `data` holds
/// in order. `None` when `data` has too few or too many.
pub fn in_queue_order<T>(answers: Vec<Option<T>>, data: Vec<T>) -> Option<Vec<T>> {
    let mut data = data.into_iter();
    let out: Option<Vec<T>> = answers
        .into_iter()
        .map(|a| a.or_else(|| data.next()))
        .collect();
    out.filter(|_| data.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(session: &mut ClientSession, words: &str) -> Step {
        let argv: Vec<Bytes> = words
            .split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect();
        let parsed = crate::parse(&argv);
        step(session, argv, parsed)
    }

    fn reply(step: Step) -> String {
        match step {
            Step::Reply(Reply::Error(e)) => format!("-{e}"),
            Step::Reply(Reply::Status(s)) => format!("+{s}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn queueing_follows_redis() {
        let mut s = ClientSession::new(1);
        assert_eq!(reply(send(&mut s, "EXEC")), "-ERR EXEC without MULTI");
        assert_eq!(reply(send(&mut s, "DISCARD")), "-ERR DISCARD without MULTI");
        assert!(matches!(send(&mut s, "GET k"), Step::Run(..)));
        assert!(matches!(send(&mut s, "WATCH k"), Step::Run(..)));
        assert_eq!(reply(send(&mut s, "MULTI")), "+OK");
        assert_eq!(
            reply(send(&mut s, "MULTI")),
            "-ERR MULTI calls can not be nested"
        );
        assert_eq!(
            reply(send(&mut s, "WATCH k")),
            "-ERR WATCH inside MULTI is not allowed"
        );
        assert_eq!(reply(send(&mut s, "SET k v")), "+QUEUED");
        assert_eq!(reply(send(&mut s, "SET k v NX XX")), "+QUEUED");
        assert_eq!(reply(send(&mut s, "PING")), "+QUEUED");
        match send(&mut s, "EXEC") {
            Step::Exec { queued, watched } => {
                assert!(watched.is_empty());
                assert_eq!(queued.len(), 3);
                assert!(matches!(&queued[0], Queued::Data { spec, .. } if spec.name == "set"));
                assert_eq!(queued[1], Queued::Local(Err(CommandError::Syntax)));
                assert_eq!(queued[2], Queued::Local(Ok(ConnectionCommand::Ping(None))));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.multi.is_none());
    }

    #[test]
    fn a_command_refused_while_queueing_aborts_exec() {
        let mut s = ClientSession::new(1);
        send(&mut s, "MULTI");
        assert_eq!(
            reply(send(&mut s, "SET k")),
            "-ERR wrong number of arguments for 'set' command"
        );
        assert_eq!(reply(send(&mut s, "SET k v")), "+QUEUED");
        assert_eq!(
            reply(send(&mut s, "EXEC")),
            "-EXECABORT Transaction discarded because of previous errors."
        );
        assert!(s.multi.is_none());
        send(&mut s, "MULTI");
        assert!(reply(send(&mut s, "NOSUCH")).starts_with("-ERR unknown command"));
        assert!(reply(send(&mut s, "CONFIG NOSUCH")).starts_with("-ERR unknown subcommand"));
        assert!(reply(send(&mut s, "EXEC")).starts_with("-EXECABORT"));
    }

    #[test]
    fn exec_discard_and_reset_forget_the_watched_keys() {
        let mut s = ClientSession::new(1);
        let watch = |s: &mut ClientSession| {
            s.watched.push(Watched {
                key: Bytes::from_static(b"k"),
                token: Bytes::from_static(b"t"),
            })
        };
        watch(&mut s);
        send(&mut s, "MULTI");
        assert_eq!(reply(send(&mut s, "DISCARD")), "+OK");
        assert!(s.watched.is_empty() && s.multi.is_none());
        watch(&mut s);
        assert_eq!(reply(send(&mut s, "UNWATCH")), "+OK");
        assert!(s.watched.is_empty());
        watch(&mut s);
        send(&mut s, "MULTI");
        match send(&mut s, "EXEC") {
            Step::Exec { watched, .. } => assert_eq!(watched.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(s.watched.is_empty());
        watch(&mut s);
        send(&mut s, "MULTI");
        assert!(matches!(send(&mut s, "RESET"), Step::Run(..)));
        assert_eq!(
            ConnectionCommand::Reset.answer(&mut s),
            Some(Reply::Status("RESET"))
        );
        assert!(s.watched.is_empty() && s.multi.is_none());
    }

    #[test]
    fn remote_transactions_round_trip_and_bad_ones_are_refused() {
        let b = |s: &str| Bytes::from(s.to_string());
        let remote = Remote {
            partition: b("default-3"),
            watched: vec![(b("k"), b("t"))],
            commands: vec![vec![b("set"), b("k"), b("v")], vec![b("get"), b("k")]],
        };
        assert_eq!(Remote::decode(&remote.encode()), Ok(remote));
        let empty = Remote {
            partition: b("p"),
            watched: vec![],
            commands: vec![],
        };
        assert_eq!(Remote::decode(&empty.encode()), Ok(empty));
        for bad in [
            vec!["ZANKV.TXN"],
            vec!["ZANKV.TXN", "p", "x"],
            vec!["ZANKV.TXN", "p", "2", "k", "t"],
            vec!["ZANKV.TXN", "p", "0", "3", "set", "k"],
            vec!["ZANKV.TXN", "p", "0", "0"],
        ] {
            let argv: Vec<Bytes> = bad.iter().map(|w| b(w)).collect();
            assert_eq!(Remote::decode(&argv), Err(CommandError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn replies_go_back_in_queue_order() {
        let answers = vec![Some(0), None, Some(20), None];
        assert_eq!(
            in_queue_order(answers.clone(), vec![1, 3]),
            Some(vec![0, 1, 20, 3])
        );
        assert_eq!(in_queue_order(answers.clone(), vec![1]), None);
        assert_eq!(in_queue_order(answers, vec![1, 2, 3]), None);
    }
}

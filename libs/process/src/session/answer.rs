//! The session's answers to connection commands: AUTH and HELLO's AUTH, and before
//! authentication the refusals; CONFIG GET/SET/RESETSTAT, CLIENT LIST/INFO/KILL/UNBLOCK,
//! SLOWLOG, the Pub/Sub commands, RESET, and every command that depends only on the
//! connection; the executor answers INFO and CLUSTER and says what a connection may run.

use std::borrow::Cow;

use bytes::Bytes;
use tracing::info;
use zankv_commands::transaction::Queued;
use zankv_commands::{CommandError, ConnectionCommand, Reply};

use super::{Executor, Session};
use crate::pubsub;

/// The reply to connection command `cmd` (outside MULTI, or queued in it), applying what
/// it changes to the session.
pub async fn answer<E: Executor>(exec: &E, s: &mut Session<E>, cmd: ConnectionCommand) -> Reply {
    match &cmd {
        ConnectionCommand::Auth { user, password } => {
            return authenticate(exec, s, user.as_deref(), password)
        }
        ConnectionCommand::Hello { auth, .. } => match auth {
            Some((user, password)) => {
                if let Reply::Error(e) = authenticate(exec, s, Some(user), password) {
                    return Reply::Error(e);
                }
            }
            None if !s.authenticated => return Reply::Error(CommandError::HelloNoAuth),
            None => {}
        },
        ConnectionCommand::Quit => {}
        _ if !s.authenticated => return Reply::Error(CommandError::NoAuth),
        _ => {}
    }
    if let Err(e) = exec.permitted(s, &cmd) {
        return Reply::Error(e);
    }
    let base = exec.base();
    match cmd {
        ConnectionCommand::Info(sections) => {
            Reply::Verbatim(Bytes::from(exec.local_info(&sections).await))
        }
        ConnectionCommand::ConfigGet(patterns) => base.config().get(&patterns),
        ConnectionCommand::ConfigSet(pairs) => {
            let changes = base.config().set(&pairs);
            match changes {
                Ok(changes) => {
                    for (name, value) in changes {
                        base.apply_setting(name, &value);
                        // The value as given: what CONFIG GET shows may say less (Redis
                        // prints `notify-keyspace-events` KEAn as AKE, yet applies `n`).
                        let given = pairs
                            .iter()
                            .rev()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                        exec.setting_changed(name, given.as_deref().unwrap_or(&value))
                            .await;
                        info!(setting = name, value, "setting changed by CONFIG SET");
                    }
                    Reply::OK
                }
                Err(e) => Reply::Error(e),
            }
        }
        ConnectionCommand::ConfigResetStat => {
            exec.reset_stats();
            base.errors.reset();
            Reply::OK
        }
        ConnectionCommand::Cluster(sub) => exec.cluster(&sub),
        ConnectionCommand::ClientList(_)
        | ConnectionCommand::ClientInfo
        | ConnectionCommand::ClientKill(_)
        | ConnectionCommand::ClientUnblock { .. } => {
            crate::clients::answer(&base.clients, &s.handle, &cmd)
                .expect("a CLIENT command the registry answers")
        }
        ConnectionCommand::SlowlogGet(count) => base.slow_log().get(count),
        ConnectionCommand::SlowlogLen => Reply::Integer(base.slow_log().len() as i64),
        ConnectionCommand::SlowlogReset => {
            base.slow_log().reset();
            Reply::OK
        }
        ConnectionCommand::PubSub(cmd) => pubsub::answer(&cmd, &mut s.subs, &base.pubsub),
        // RESET also forgets the authentication, where a password is needed.
        ConnectionCommand::Reset => {
            s.subs.clear();
            if exec.passwords_required() {
                s.authenticated = false;
                s.handle.set_user("default");
                exec.deauthenticate(s);
            }
            cmd.answer(&mut s.client)
                .expect("RESET has a common answer")
        }
        other => other
            .answer(&mut s.client)
            .expect("every other connection command has a common answer"),
    }
}

/// EXEC's answers to the connection commands among `queued`, in order (`None` in each
/// data command's place).
pub async fn answer_queued<E: Executor>(
    exec: &E,
    s: &mut Session<E>,
    queued: &[Queued],
) -> Vec<Option<Reply>> {
    let mut answers = Vec::with_capacity(queued.len());
    for q in queued {
        answers.push(match q {
            Queued::Local(Ok(c)) => Some(answer(exec, s, c.clone()).await),
            Queued::Local(Err(e)) => Some(Reply::Error(e.clone())),
            Queued::Data { .. } => None,
        });
    }
    answers
}

/// AUTH's answer for `user` / `password`, marking the session authenticated on success.
fn authenticate<E: Executor>(
    exec: &E,
    s: &mut Session<E>,
    user: Option<&[u8]>,
    password: &[u8],
) -> Reply {
    match exec.authenticate(s, user, password) {
        Ok(()) => {
            s.authenticated = true;
            Reply::OK
        }
        Err(e) => Reply::Error(e),
    }
}

/// Whether error `e` of command `name` is answered even before authentication: an unknown
/// command or subcommand, a wrong number of arguments, or anything about AUTH, HELLO and
/// QUIT themselves.
pub(super) fn before_auth(e: &CommandError, name: &[u8]) -> bool {
    matches!(
        e,
        CommandError::UnknownCommand { .. }
            | CommandError::UnknownSubcommand { .. }
            | CommandError::WrongArity(_)
    ) || [&b"auth"[..], b"hello", b"quit"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// `argv` as the slow log may keep it: passwords (AUTH's arguments, HELLO's after AUTH)
/// become `(redacted)`, as in Redis.
pub(super) fn redacted(argv: &[Bytes]) -> Cow<'_, [Bytes]> {
    let secret = Bytes::from_static(b"(redacted)");
    let name = &argv[0];
    if name.eq_ignore_ascii_case(b"auth") {
        let mut out = vec![name.clone()];
        out.extend(argv[1..].iter().map(|_| secret.clone()));
        return out.into();
    }
    if name.eq_ignore_ascii_case(b"hello") {
        if let Some(at) = argv.iter().position(|a| a.eq_ignore_ascii_case(b"auth")) {
            let mut out = argv.to_vec();
            for a in out.iter_mut().skip(at + 1).take(2) {
                *a = secret.clone();
            }
            return out.into();
        }
    }
    argv.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    #[test]
    fn passwords_never_reach_the_slow_log() {
        assert_eq!(
            redacted(&args(&["AUTH", "user", "secret"])).as_ref(),
            args(&["AUTH", "(redacted)", "(redacted)"]).as_slice()
        );
        assert_eq!(
            redacted(&args(&["hello", "3", "auth", "u", "p", "setname", "x"])).as_ref(),
            args(&[
                "hello",
                "3",
                "auth",
                "(redacted)",
                "(redacted)",
                "setname",
                "x"
            ])
            .as_slice()
        );
        assert_eq!(
            redacted(&args(&["SET", "k", "v"])).as_ref(),
            args(&["SET", "k", "v"]).as_slice()
        );
    }

    #[test]
    fn before_auth_only_the_name_and_arity_are_judged() {
        assert!(before_auth(&CommandError::WrongArity("get".into()), b"get"));
        assert!(!before_auth(&CommandError::Syntax, b"set"));
        assert!(before_auth(&CommandError::Syntax, b"HELLO"));
    }
}

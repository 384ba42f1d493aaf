//! The clients a server has connected (CLIENT LIST / INFO / KILL): one entry per
//! connection, registered while it lives, updated by its own task with cheap atomics on
//! every command, read by CLIENT LIST, and closed on CLIENT KILL.
//!
//! Invariants: an entry exists exactly while its connection task holds its
//! [`Registration`]; a killed connection's task sees [`ClientHandle::killed`] complete.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;
use zankv_commands::{CommandError, ConnectionCommand, Reply};

/// One connected client.
#[derive(Debug)]
pub struct ClientHandle {
    /// CLIENT ID.
    pub id: u64,
    /// The client's address.
    pub addr: String,
    /// The server address it connected to.
    pub laddr: String,
    connected: Instant,
    /// Milliseconds from `connected` to its last command.
    last_ms: AtomicU64,
    last_cmd: Mutex<&'static str>,
    name: Mutex<String>,
    /// The user it authenticated as (`default` unless told otherwise).
    user: Mutex<String>,
    resp: AtomicU8,
    killed: AtomicBool,
    kill: Notify,
    /// Waiting in a blocking command.
    blocked: AtomicBool,
    /// How CLIENT UNBLOCK ended its wait: 0 it did not, 1 as a timeout, 2 with an error.
    unblocked_as: AtomicU8,
    unblock: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientHandle {
    /// Records a command (`name` as the command table names it, `client|list`).
    pub fn touch(&self, name: &'static str) {
        self.last_ms.store(
            self.connected.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        *lock(&self.last_cmd) = name;
    }

    /// Records the connection's name and protocol (after CLIENT SETNAME or HELLO).
    pub fn set_identity(&self, name: Option<&[u8]>, resp: u8) {
        *lock(&self.name) = name
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        self.resp.store(resp, Ordering::Relaxed);
    }

    /// Records the user the connection authenticated as.
    pub fn set_user(&self, user: &str) {
        *lock(&self.user) = user.to_string();
    }

    /// The user the connection authenticated as.
    pub fn user(&self) -> String {
        lock(&self.user).clone()
    }

    /// Marks the connection as waiting in a blocking command (`true`) or not.
    pub fn set_blocked(&self, blocked: bool) {
        self.unblocked_as.store(0, Ordering::Relaxed);
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// CLIENT UNBLOCK: ends the connection's wait, as a timeout or (`error`) with an error;
    /// whether it was waiting.
    pub fn unblock(&self, error: bool) -> bool {
        if !self.blocked.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.unblocked_as
            .store(if error { 2 } else { 1 }, Ordering::Relaxed);
        self.unblock.notify_one();
        true
    }

    /// Completes when CLIENT UNBLOCK ends the wait (marked with [`ClientHandle::set_blocked`]),
    /// with the reply the blocked command then answers.
    pub async fn unblocked(&self) -> Reply {
        loop {
            self.unblock.notified().await;
            // A wake-up left over from an earlier wait has no reason: waits on.
            match self.unblocked_as.swap(0, Ordering::Relaxed) {
                0 => continue,
                1 => return zankv_commands::blocking::timed_out(),
                _ => return Reply::Error(CommandError::Unblocked),
            }
        }
    }

    /// Its CLIENT LIST line (the fields this server knows), without the newline.
    pub fn line(&self) -> String {
        let age = self.connected.elapsed();
        let idle_ms = (age.as_millis() as u64).saturating_sub(self.last_ms.load(Ordering::Relaxed));
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags=N db=0 cmd={} user={} resp={}",
            self.id,
            self.addr,
            self.laddr,
            lock(&self.name),
            age.as_secs(),
            idle_ms / 1000,
            lock(&self.last_cmd),
            lock(&self.user),
            self.resp.load(Ordering::Relaxed)
        )
    }

    /// Closes the connection (its task ends at its next wait).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// Completes once the client is killed.
    pub async fn killed(&self) {
        if self.killed.load(Ordering::Relaxed) {
            return;
        }
        self.kill.notified().await;
    }
}

/// Every connected client of a server.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
}

/// A connection's entry, removed when dropped.
pub struct Registration<'a> {
    registry: &'a ClientRegistry,
    /// The entry.
    pub handle: Arc<ClientHandle>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.registry.clients).remove(&self.handle.id);
    }
}

impl ClientRegistry {
    /// Registers connection `id` from `addr` to `laddr` for as long as the answer lives.
    pub fn register(&self, id: u64, addr: String, laddr: String) -> Registration<'_> {
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            connected: Instant::now(),
            last_ms: AtomicU64::new(0),
            last_cmd: Mutex::new("NULL"),
            name: Mutex::new(String::new()),
            user: Mutex::new("default".into()),
            resp: AtomicU8::new(2),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            blocked: AtomicBool::new(false),
            unblocked_as: AtomicU8::new(0),
            unblock: Notify::new(),
        });
        lock(&self.clients).insert(id, handle.clone());
        Registration {
            registry: self,
            handle,
        }
    }

    /// Every client, by id.
    pub fn list(&self) -> Vec<Arc<ClientHandle>> {
        lock(&self.clients).values().cloned().collect()
    }
}

/// The reply to CLIENT LIST, CLIENT INFO or CLIENT KILL asked by connection `me`; `None`
/// for any other command.
pub fn answer(
    registry: &ClientRegistry,
    me: &ClientHandle,
    cmd: &ConnectionCommand,
) -> Option<Reply> {
    let lines = |clients: &[Arc<ClientHandle>]| -> String {
        clients.iter().map(|c| c.line() + "\n").collect()
    };
    Some(match cmd {
        ConnectionCommand::ClientList(filter) => {
            let listed: Vec<Arc<ClientHandle>> = registry
                .list()
                .into_iter()
                .filter(|c| filter.admits(c.id, &c.addr, &c.laddr, &c.user(), false))
                .collect();
            Reply::Verbatim(Bytes::from(lines(&listed)))
        }
        ConnectionCommand::ClientInfo => Reply::Verbatim(Bytes::from(me.line() + "\n")),
        ConnectionCommand::ClientKill(Err(addr)) => {
            let matching: Vec<Arc<ClientHandle>> = registry
                .list()
                .into_iter()
                .filter(|c| c.addr.as_bytes() == addr.as_ref())
                .collect();
            if matching.is_empty() {
                return Some(Reply::Error(CommandError::NoSuchClient));
            }
            matching.iter().for_each(|c| c.kill());
            Reply::OK
        }
        ConnectionCommand::ClientUnblock { id, error } => {
            let unblocked = registry
                .list()
                .into_iter()
                .find(|c| i64::try_from(c.id).is_ok_and(|c| c == *id))
                .is_some_and(|c| c.unblock(*error));
            Reply::Integer(i64::from(unblocked))
        }
        ConnectionCommand::ClientKill(Ok(filter)) => {
            let matching: Vec<Arc<ClientHandle>> = registry
                .list()
                .into_iter()
                .filter(|c| filter.admits(c.id, &c.addr, &c.laddr, &c.user(), c.id == me.id))
                .collect();
            matching.iter().for_each(|c| c.kill());
            Reply::Integer(matching.len() as i64)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_are_listed_while_connected_and_killed_on_request() {
        let registry = ClientRegistry::default();
        let a = registry.register(1, "1.2.3.4:5".into(), "127.0.0.1:6379".into());
        {
            let b = registry.register(2, "1.2.3.4:6".into(), "127.0.0.1:6379".into());
            b.handle.touch("get");
            b.handle.set_identity(Some(b"worker"), 3);
            let lines: Vec<String> = registry.list().iter().map(|c| c.line()).collect();
            assert_eq!(lines.len(), 2);
            assert!(
                lines[1].starts_with("id=2 addr=1.2.3.4:6 laddr=127.0.0.1:6379 name=worker age=0 idle=0 flags=N db=0 cmd=get user=default resp=3"),
                "{}",
                lines[1]
            );
        }
        assert_eq!(registry.list().len(), 1, "gone with its registration");
        a.handle.kill();
        a.handle.killed().await;
    }

    #[test]
    fn a_connection_shows_and_is_chosen_by_its_user() {
        let registry = ClientRegistry::default();
        let a = registry.register(1, "1.2.3.4:5".into(), "127.0.0.1:6379".into());
        let b = registry.register(2, "1.2.3.4:6".into(), "127.0.0.1:6379".into());
        b.handle.set_user("orders");
        assert!(
            b.handle.line().contains(" user=orders "),
            "{}",
            b.handle.line()
        );
        let kill = ConnectionCommand::parse(
            "client|kill",
            &[
                Bytes::from("kill"),
                Bytes::from("user"),
                Bytes::from("orders"),
            ],
        )
        .unwrap();
        assert_eq!(answer(&registry, &a.handle, &kill), Some(Reply::Integer(1)));
        let list = ConnectionCommand::parse("client|list", &[Bytes::from("list")]).unwrap();
        assert!(answer(&registry, &a.handle, &list).is_some());
    }
}

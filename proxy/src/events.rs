//! Keyspace notifications through the proxy: while the proxy's `notify-keyspace-events`
//! publishes anything, it listens to every storage node of its routing tables
//! (`ZANKV.EVENTS <classes>`, one connection per node; see the storage node's `events`
//! module) and publishes each event it hears to its own subscribers on
//! `__keyspace@0__:<key>` and `__keyevent@0__:<event>`, as Redis would. Each proxy listens
//! for itself, so an event reaches the subscribers of every proxy once.
//!
//! Invariants: the listeners follow the setting (a change of its classes restarts them,
//! and CONFIG SET answers once every node is listened to, or after 2 s; a change of K/E
//! alone applies at once) and the tables (a node gone from them is no longer listened
//! to, a new one is); a node that cannot be reached, or whose connection stays silent past
//! a PING, is tried again every second; events of one partition arrive in the order its
//! leader applied them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};
use zankv_commands::{notify, Protocol};
use zankv_process::pubsub::Hub;

use crate::reply_frames::{array_items, bulk_text, frame_len};
use crate::routing::{RoutingTables, SharedTables};

/// How often the listeners are matched with the tables.
const FOLLOW: Duration = Duration::from_secs(1);
/// Wait before a listener tries a node again.
const RETRY: Duration = Duration::from_secs(1);
/// A listener that heard nothing for this long sends a PING; one that heard nothing for
/// twice as long (the node is gone without closing) starts again.
const QUIET: Duration = Duration::from_secs(5);
/// Longest message read (a batch of events is at most about 1 MiB beyond its last key).
const MAX_FRAME: usize = 1 << 30;
/// Longest a change of the setting waits for the nodes to be listened to.
const SETTLE: Duration = Duration::from_secs(2);

/// The proxy's setting, which [`follow`] obeys.
pub struct EventSetting {
    /// The setting, numbered by its changes.
    flags: watch::Sender<(u64, u16)>,
    /// The latest change every node is listened to for.
    ready: watch::Receiver<u64>,
}

/// What [`follow`] takes from an [`EventSetting`].
pub struct Followed {
    flags: watch::Receiver<(u64, u16)>,
    ready: watch::Sender<u64>,
}

impl EventSetting {
    /// `flags` in effect, to be followed by [`follow`].
    pub fn new(flags: u16) -> (EventSetting, Followed) {
        let (flags, flags_rx) = watch::channel((0, flags));
        let (ready_tx, ready) = watch::channel(0);
        (
            EventSetting { flags, ready },
            Followed {
                flags: flags_rx,
                ready: ready_tx,
            },
        )
    }

    /// CONFIG SET notify-keyspace-events: returns once every node is listened to for the
    /// new classes (or after a short while, if some node does not answer), so that the
    /// writes after CONFIG SET's reply are heard of.
    pub async fn set(&self, flags: u16) {
        let mut changed = 0;
        self.flags.send_modify(|(change, current)| {
            *change += 1;
            *current = flags;
            changed = *change;
        });
        let mut ready = self.ready.clone();
        let _ = tokio::time::timeout(SETTLE, ready.wait_for(|r| *r >= changed)).await;
    }
}

/// The classes the nodes are asked for (0: none, the setting publishes nothing).
fn classes(flags: u16) -> u16 {
    if notify::active(flags) {
        flags & !(notify::KEYSPACE | notify::KEYEVENT)
    } else {
        0
    }
}

/// Listens to the storage nodes of `tables` as the setting says, publishing to `hub`,
/// until `shutdown` turns true.
pub async fn follow(
    tables: Arc<SharedTables>,
    hub: Arc<Hub>,
    setting: Followed,
    mut shutdown: watch::Receiver<bool>,
) {
    let Followed { mut flags, ready } = setting;
    let ready = Arc::new(ready);
    // What the listeners publish with: the whole setting, K and E included.
    let relayed = Arc::new(AtomicU16::new(0));
    let mut listeners: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
    // The classes the listeners ask for, and the nodes a change still waits for.
    let mut asked: Option<u16> = None;
    let mut waiting: Option<Arc<Waiting>> = None;
    loop {
        let (change, current) = *flags.borrow_and_update();
        relayed.store(current, Ordering::Relaxed);
        let wanted: HashSet<SocketAddr> = match classes(current) {
            0 => HashSet::new(),
            _ => nodes(&tables.load()),
        };
        if asked != Some(classes(current)) {
            if asked.is_some() {
                info!(flags = %notify::text(current), "keyspace notifications changed");
            }
            // New classes: every listener starts again with them.
            for (_, task) in listeners.drain() {
                task.abort();
            }
            asked = Some(classes(current));
            waiting = Some(Arc::new(Waiting {
                change,
                left: AtomicUsize::new(wanted.len()),
                ready: ready.clone(),
            }));
        }
        listeners.retain(|addr, task| {
            let keep = wanted.contains(addr) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let wait = waiting.get_or_insert_with(|| Arc::new(Waiting::done(change, &ready)));
        if wanted.is_empty() || wait.left.load(Ordering::Acquire) == 0 {
            // Nothing to wait for (also a change of K or E alone).
            wait.finish_at(change);
        }
        for addr in wanted {
            listeners.entry(addr).or_insert_with(|| {
                tokio::spawn(listen(
                    addr,
                    classes(current),
                    relayed.clone(),
                    hub.clone(),
                    wait.clone(),
                ))
            });
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            changed = flags.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(FOLLOW) => {}
        }
    }
    for (_, task) in listeners {
        task.abort();
    }
}

/// The nodes a change of the setting still waits to be listened to.
struct Waiting {
    change: u64,
    left: AtomicUsize,
    ready: Arc<watch::Sender<u64>>,
}

impl Waiting {
    /// Nothing left to wait for.
    fn done(change: u64, ready: &Arc<watch::Sender<u64>>) -> Waiting {
        Waiting {
            change,
            left: AtomicUsize::new(0),
            ready: ready.clone(),
        }
    }

    /// One more node listened to.
    fn listened(&self) {
        let before = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            self.finish_at(self.change);
        }
    }

    /// Every change up to `change` is in effect.
    fn finish_at(&self, change: u64) {
        self.ready.send_if_modified(|r| {
            let newer = *r < change;
            *r = (*r).max(change);
            newer
        });
    }
}

/// The RESP addresses of every storage node the tables name.
fn nodes(tables: &RoutingTables) -> HashSet<SocketAddr> {
    tables
        .namespaces()
        .flat_map(|ns| {
            ns.replicas
                .iter()
                .flatten()
                .copied()
                .chain(ns.leaders.iter().flatten().copied())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Listens to node `addr` for `classes`, for ever (it is aborted); tells `waiting` once it
/// first does.
async fn listen(
    addr: SocketAddr,
    classes: u16,
    flags: Arc<AtomicU16>,
    hub: Arc<Hub>,
    waiting: Arc<Waiting>,
) {
    let mut waiting = Some(waiting);
    loop {
        match listen_once(addr, classes, &flags, &hub, &mut waiting).await {
            Ok(()) => debug!(%addr, "keyspace events connection closed"),
            Err(e) => debug!(%addr, error = %e, "keyspace events connection failed"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn listen_once(
    addr: SocketAddr,
    classes: u16,
    flags: &AtomicU16,
    hub: &Hub,
    waiting: &mut Option<Arc<Waiting>>,
) -> Result<(), String> {
    let mut socket = tokio::time::timeout(RETRY, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = socket.set_nodelay(true);
    let letters: String = notify::letters(classes).collect();
    let request = format!(
        "*2\r\n$12\r\nZANKV.EVENTS\r\n${}\r\n{letters}\r\n",
        letters.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut pinged = false;
    loop {
        while let Some(len) = frame_len(&input, Protocol::Resp2)? {
            let frame = input.split_to(len).freeze();
            if relay(&frame, flags.load(Ordering::Relaxed), hub)? == Heard::Subscribed {
                if let Some(waiting) = waiting.take() {
                    waiting.listened();
                }
            }
        }
        if input.len() > MAX_FRAME {
            return Err("a message larger than any batch of events".into());
        }
        input.reserve(16 * 1024);
        match tokio::time::timeout(QUIET, socket.read_buf(&mut input)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => pinged = false,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) if pinged => return Err("the node stopped answering".into()),
            Err(_) => {
                // A subscribed connection may PING; its answer proves the node is there.
                socket
                    .write_all(b"*1\r\n$4\r\nPING\r\n")
                    .await
                    .map_err(|e| e.to_string())?;
                pinged = true;
            }
        }
    }
}

/// What a node's frame was.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A confirmation that the connection listens.
    Subscribed,
    /// Events (published) or anything else (ignored).
    Other,
}

/// Publishes the events a node's message carries (`smessage <channel> <batch>`); a
/// subscription confirmation is told apart, an error ends the connection.
fn relay(frame: &Bytes, flags: u16, hub: &Hub) -> Result<Heard, String> {
    if frame.first() == Some(&b'-') {
        return Err(String::from_utf8_lossy(frame).trim_end().to_string());
    }
    let Some(items) = array_items(frame, Protocol::Resp2) else {
        return Ok(Heard::Other);
    };
    let [kind, _channel, batch] = items.as_slice() else {
        return Ok(Heard::Other);
    };
    match bulk_text(kind).as_deref() {
        Some(b"ssubscribe") => return Ok(Heard::Subscribed),
        Some(b"smessage") => {}
        _ => return Ok(Heard::Other),
    }
    let Some(batch) = bulk_text(batch) else {
        return Ok(Heard::Other);
    };
    let whole = notify::read_events(&batch, |class, event, key| {
        notify::publish(flags, class, event, &key, |channel, message| {
            hub.publish(&channel, &message, false);
        });
    });
    if !whole {
        return Err("a malformed batch of events".into());
    }
    Ok(Heard::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_process::pubsub::Subscriptions;

    #[test]
    fn a_node_batch_becomes_the_redis_channels_the_setting_asks_for() {
        let hub = Arc::new(Hub::default());
        let mut subs = Subscriptions::new(hub.clone(), 1);
        subs.subscribe(
            zankv_commands::pubsub::Kind::Pattern,
            &[Bytes::from_static(b"__key*__:*")],
        );
        let mut batch = BytesMut::new();
        notify::append_event(&mut batch, notify::LIST, "lpush", b"my key");
        // A class the setting does not name is not published.
        notify::append_event(&mut batch, notify::SET, "sadd", b"k");
        let frame = Bytes::from(format!(
            "*3\r\n$8\r\nsmessage\r\n$16\r\n__zankv_events__\r\n${}\r\n{}\r\n",
            batch.len(),
            String::from_utf8_lossy(&batch)
        ));
        let flags = notify::parse("KEl").unwrap();
        assert_eq!(relay(&frame, flags, &hub).unwrap(), Heard::Other);
        let mut out = BytesMut::new();
        for m in subs.ready() {
            m.write(Protocol::Resp2, &mut out);
        }
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("__keyspace@0__:my key\r\n$5\r\nlpush"),
            "{text}"
        );
        assert!(
            text.contains("__keyevent@0__:lpush\r\n$6\r\nmy key"),
            "{text}"
        );
        assert!(!text.contains("sadd"), "{text}");
        assert!(relay(&Bytes::from_static(b"-ERR nope\r\n"), flags, &hub).is_err());
        let confirmation =
            Bytes::from_static(b"*3\r\n$10\r\nssubscribe\r\n$16\r\n__zankv_events__\r\n:1\r\n");
        assert_eq!(
            relay(&confirmation, flags, &hub).unwrap(),
            Heard::Subscribed
        );
    }

    #[test]
    fn only_a_setting_that_publishes_asks_the_nodes() {
        assert_eq!(classes(notify::parse("A").unwrap()), 0);
        assert_eq!(classes(notify::parse("KEl").unwrap()), notify::LIST);
    }
}

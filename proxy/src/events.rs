//! Keyspace notifications through the proxy: while the proxy's `notify-keyspace-events`
//! publishes anything, it listens to every storage node of its routing tables
//! (`ZANKV.EVENTS <classes>`, one connection per node; see the storage node's `events`
//! module) and publishes each event it hears to its own subscribers on
//! `__keyspace@0__:<key>` and `__keyevent@0__:<event>`, as Redis would. Each proxy listens
//! for itself, so an event reaches the subscribers of every proxy once.
//!
//! Invariants: the listeners follow the setting (a change restarts them with the new
//! classes, and CONFIG SET answers once every node is listened to, or after 2 s) and the
//! tables (a node gone from them is no longer listened to, a new one is); a node that
//! cannot be reached is tried again every second; events of one partition arrive in the
//! order its leader applied them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Longest event message read (a key is at most `max_bulk_len` on the node).
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

/// Listens to the storage nodes of `tables` as the setting says, publishing to `hub`,
/// until `shutdown` turns true.
pub async fn follow(
    tables: Arc<SharedTables>,
    hub: Arc<Hub>,
    setting: Followed,
    mut shutdown: watch::Receiver<bool>,
) {
    let Followed {
        mut flags,
        ready: ready_tx,
    } = setting;
    let ready = Arc::new(ready_tx);
    let mut listeners: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
    // The nodes not yet listened to for the latest change.
    let mut waiting: Option<Arc<Waiting>> = None;
    loop {
        let (change, current) = *flags.borrow_and_update();
        let wanted: HashSet<SocketAddr> = if notify::active(current) {
            nodes(&tables.load())
        } else {
            HashSet::new()
        };
        listeners.retain(|addr, task| {
            let keep = wanted.contains(addr) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let wait = waiting.get_or_insert_with(|| {
            Arc::new(Waiting {
                change,
                left: AtomicUsize::new(wanted.len()),
                ready: ready.clone(),
            })
        });
        if wanted.is_empty() {
            ready.send_replace(change);
        }
        for addr in wanted {
            let wait = wait.clone();
            listeners
                .entry(addr)
                .or_insert_with(|| tokio::spawn(listen(addr, current, hub.clone(), wait)));
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW) => {}
            changed = flags.changed() => {
                if changed.is_err() {
                    break;
                }
                // New classes: every listener starts again with them.
                info!(flags = %notify::text(flags.borrow().1), "keyspace notifications changed");
                for (_, task) in listeners.drain() {
                    task.abort();
                }
                waiting = None;
            }
            _ = shutdown.changed() => break,
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
    /// One more node listened to.
    fn listened(&self) {
        let before = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            self.ready.send_if_modified(|r| {
                let newer = *r < self.change;
                *r = (*r).max(self.change);
                newer
            });
        }
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

/// Listens to node `addr` for the classes of `flags`, for ever (it is aborted); tells
/// `waiting` once it first does.
async fn listen(addr: SocketAddr, flags: u16, hub: Arc<Hub>, waiting: Arc<Waiting>) {
    let mut waiting = Some(waiting);
    loop {
        match listen_once(addr, flags, &hub, &mut waiting).await {
            Ok(()) => debug!(%addr, "keyspace events connection closed"),
            Err(e) => debug!(%addr, error = %e, "keyspace events connection failed"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn listen_once(
    addr: SocketAddr,
    flags: u16,
    hub: &Hub,
    waiting: &mut Option<Arc<Waiting>>,
) -> Result<(), String> {
    let mut socket = tokio::time::timeout(RETRY, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = socket.set_nodelay(true);
    let letters: String = notify::letters(flags).collect();
    let request = format!(
        "*2\r\n$12\r\nZANKV.EVENTS\r\n${}\r\n{letters}\r\n",
        letters.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut input = BytesMut::with_capacity(16 * 1024);
    loop {
        while let Some(len) = frame_len(&input, Protocol::Resp2)? {
            let frame = input.split_to(len).freeze();
            if relay(&frame, flags, hub)? == Heard::Subscribed {
                if let Some(waiting) = waiting.take() {
                    waiting.listened();
                }
            }
        }
        if input.len() > MAX_FRAME {
            return Err("an event larger than any key".into());
        }
        input.reserve(16 * 1024);
        if socket
            .read_buf(&mut input)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Ok(());
        }
    }
}

/// What a node's frame was.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A confirmation that the connection listens.
    Subscribed,
    /// An event (published) or anything else (ignored).
    Other,
}

/// Publishes the event a node's message carries (`smessage <channel> <event> <key>`);
/// a subscription confirmation is told apart, an error ends the connection.
fn relay(frame: &Bytes, flags: u16, hub: &Hub) -> Result<Heard, String> {
    if frame.first() == Some(&b'-') {
        return Err(String::from_utf8_lossy(frame).trim_end().to_string());
    }
    let Some(items) = array_items(frame, Protocol::Resp2) else {
        return Ok(Heard::Other);
    };
    let [kind, channel, message] = items.as_slice() else {
        return Ok(Heard::Other);
    };
    match bulk_text(kind).as_deref() {
        Some(b"ssubscribe") => return Ok(Heard::Subscribed),
        Some(b"smessage") => {}
        _ => return Ok(Heard::Other),
    }
    let (Some(channel), Some(message)) = (bulk_text(channel), bulk_text(message)) else {
        return Ok(Heard::Other);
    };
    let class = std::str::from_utf8(channel.rsplit(|&b| b == b':').next().unwrap_or(&[]))
        .ok()
        .and_then(|letter| notify::parse(letter).ok())
        .unwrap_or(0);
    let Some(space) = message.iter().position(|&b| b == b' ') else {
        return Ok(Heard::Other);
    };
    let Ok(event) = std::str::from_utf8(&message[..space]) else {
        return Ok(Heard::Other);
    };
    let key = message.slice(space + 1..);
    notify::publish(flags, class, event, &key, |channel, message| {
        hub.publish(&channel, &message, false);
    });
    Ok(Heard::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_process::pubsub::Subscriptions;

    #[test]
    fn a_node_message_becomes_the_redis_channels_the_setting_asks_for() {
        let hub = Arc::new(Hub::default());
        let mut subs = Subscriptions::new(hub.clone(), 1);
        subs.subscribe(
            zankv_commands::pubsub::Kind::Pattern,
            &[Bytes::from_static(b"__key*__:*")],
        );
        let frame = |channel: &str, message: &str| {
            Bytes::from(format!(
                "*3\r\n$8\r\nsmessage\r\n${}\r\n{channel}\r\n${}\r\n{message}\r\n",
                channel.len(),
                message.len()
            ))
        };
        let flags = notify::parse("KEl").unwrap();
        relay(&frame("__zankv_events__:l", "lpush my key"), flags, &hub).unwrap();
        // A class the setting does not name is not published.
        relay(&frame("__zankv_events__:s", "sadd k"), flags, &hub).unwrap();
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
    }
}

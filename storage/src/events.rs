//! Keyspace notifications on a storage node: the events a partition's writes cause
//! (recorded by the commands as Redis records them, [`crate::data::Txn::notify`]) are
//! published by the replica that leads the partition, once they are applied, to the
//! node's own subscribers as `notify-keyspace-events` says (`__keyspace@0__:<key>`,
//! `__keyevent@0__:<event>`), and to the proxies that listen (`ZANKV.EVENTS`), which pass
//! them on to their own subscribers.
//!
//! A proxy's listening connection sends `ZANKV.EVENTS <class letters>` (not in the command
//! table) and is subscribed to the internal shard channel `__zankv_events__`, whose
//! messages are batches of the events of the classes any listener asked for, one batch
//! per applied run of changes (so that a burst of events does not make a listener fall
//! behind); a shard channel keeps them from clients' patterns.
//!
//! Invariants: events are recorded only for the classes someone wants ([`Notifier::wanted`]:
//! the node's own setting when it publishes anything, and every listener's classes), so a
//! node nobody listens to records nothing; a listener is registered exactly while its
//! [`Listening`] guard lives. Events are published after the change is applied and in
//! apply order per partition; around a leader change (leadership is as of the leader's
//! last tick) an event may be published twice or not at all, as notifications are not
//! delivered reliably in Redis either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use zankv_commands::notify;
use zankv_process::pubsub::Hub;

/// One keyspace event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its class (`zankv_commands::notify`).
    pub class: u16,
    /// Its name (`set`, `lpush`, `expired`, ...).
    pub name: &'static str,
    /// The key.
    pub key: Bytes,
}

/// Largest batch of events sent to the listeners in one message.
const MAX_BATCH: usize = 1 << 20;

/// The node's keyspace notifications: its setting, the proxies listening, and its hub.
pub struct Notifier {
    hub: Arc<Hub>,
    /// The node's own `notify-keyspace-events`.
    flags: AtomicU16,
    /// The classes each listening connection (by client id) wants.
    listeners: Mutex<HashMap<u64, u16>>,
    /// The union of the listeners' classes.
    listened: AtomicU16,
}

impl Notifier {
    /// Publishes to `hub`'s subscribers, with the node's setting `flags`.
    pub fn new(hub: Arc<Hub>, flags: u16) -> Notifier {
        Notifier {
            hub,
            flags: AtomicU16::new(flags),
            listeners: Mutex::new(HashMap::new()),
            listened: AtomicU16::new(0),
        }
    }

    /// The event classes anyone wants recorded.
    pub fn wanted(&self) -> u16 {
        let flags = self.flags.load(Ordering::Relaxed);
        let own = if notify::active(flags) { flags } else { 0 };
        (own | self.listened.load(Ordering::Relaxed)) & !(notify::KEYSPACE | notify::KEYEVENT)
    }

    /// CONFIG SET notify-keyspace-events on the node.
    pub fn set_flags(&self, flags: u16) {
        self.flags.store(flags, Ordering::Relaxed);
    }

    /// Registers client `id` as a listener for `classes` while the guard lives.
    pub fn listen(self: &Arc<Self>, id: u64, classes: u16) -> Listening {
        let mut listeners = self.lock();
        listeners.insert(id, classes);
        self.recount(&listeners);
        Listening {
            notifier: self.clone(),
            id,
        }
    }

    /// Keeps `listened` the union of the listeners' classes.
    fn recount(&self, listeners: &HashMap<u64, u16>) {
        self.listened
            .store(listeners.values().fold(0, |a, c| a | c), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u16>> {
        self.listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes applied events: to the node's subscribers as its setting says, and to the
    /// listeners, in batches ([`notify::LISTEN_CHANNEL`]).
    pub fn publish(&self, events: &[Event]) {
        let flags = self.flags.load(Ordering::Relaxed);
        let listened = self.listened.load(Ordering::Relaxed);
        let channel = Bytes::from_static(notify::LISTEN_CHANNEL);
        let mut batch = BytesMut::new();
        for event in events {
            notify::publish(
                flags,
                event.class,
                event.name,
                &event.key,
                |channel, message| {
                    self.hub.publish(&channel, &message, false);
                },
            );
            if listened & event.class != 0 {
                notify::append_event(&mut batch, event.class, event.name, &event.key);
                if batch.len() >= MAX_BATCH {
                    self.hub.publish(&channel, &batch.split().freeze(), true);
                }
            }
        }
        if !batch.is_empty() {
            self.hub.publish(&channel, &batch.freeze(), true);
        }
    }
}

/// A listening connection's registration; dropping it ends it.
pub struct Listening {
    notifier: Arc<Notifier>,
    id: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut listeners = self.notifier.lock();
        listeners.remove(&self.id);
        self.notifier.recount(&listeners);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_process::pubsub::Subscriptions;

    fn event(class: u16, name: &'static str, key: &str) -> Event {
        Event {
            class,
            name,
            key: Bytes::copy_from_slice(key.as_bytes()),
        }
    }

    #[test]
    fn only_wanted_classes_are_recorded_and_listeners_hear_theirs() {
        let hub = Arc::new(Hub::default());
        let notifier = Arc::new(Notifier::new(hub.clone(), 0));
        assert_eq!(notifier.wanted(), 0, "nobody wants anything");
        notifier.set_flags(notify::parse("Kl").unwrap());
        assert_eq!(notifier.wanted(), notify::LIST);
        notifier.set_flags(notify::parse("A").unwrap());
        assert_eq!(
            notifier.wanted(),
            0,
            "classes without K or E publish nothing"
        );
        {
            let _listening = notifier.listen(7, notify::SET | notify::HASH);
            assert_eq!(notifier.wanted(), notify::SET | notify::HASH);
            let mut subs = Subscriptions::new(hub.clone(), 7);
            subs.subscribe(
                zankv_commands::pubsub::Kind::Shard,
                &[Bytes::from_static(notify::LISTEN_CHANNEL)],
            );
            notifier.publish(&[
                event(notify::SET, "sadd", "k 1"),
                event(notify::ZSET, "zadd", "z"),
                event(notify::HASH, "hset", "h"),
            ]);
            let got = subs.ready();
            assert_eq!(got.len(), 1, "one batch");
            let mut out = BytesMut::new();
            got[0].write(zankv_commands::Protocol::Resp2, &mut out);
            assert!(out.ends_with(b"$20\r\nssadd 3 k 1hhset 1 h\r\n"), "{out:?}");
        }
        assert_eq!(notifier.wanted(), 0, "the listener is gone");
    }
}

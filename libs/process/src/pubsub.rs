//! A server's Pub/Sub: who subscribes to what ([`Hub`], one per process) and each
//! connection's own subscriptions ([`Subscriptions`]), written once for the storage node
//! and the proxy. Messages reach a subscriber through a bounded queue that its connection
//! task drains between requests.
//!
//! Invariants:
//! - the hub lists a connection under a channel, pattern or shard channel exactly while
//!   the connection's [`Subscriptions`] holds it (dropping the subscriptions, or RESET,
//!   removes every entry);
//! - messages published by one caller reach each subscriber in publish order;
//! - a subscriber that does not keep up (its queue holds [`QUEUE`] messages or
//!   [`QUEUE_BYTES`] bytes) is cut off: the hub forgets it and its connection is closed, as
//!   Redis closes a client over its Pub/Sub output buffer limit; nobody else waits for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use zankv_commands::pattern::glob_match;
use zankv_commands::pubsub::{self, Kind, PubSubCommand};
use zankv_commands::{Command, CommandError, CommandSpec, ConnectionCommand, Protocol, Reply};

/// Messages waiting for one subscriber before it is cut off.
pub const QUEUE: usize = 8192;
/// Bytes of messages waiting for one subscriber before it is cut off (Redis's default
/// hard limit for Pub/Sub clients).
pub const QUEUE_BYTES: usize = 32 << 20;

/// A message on its way to a subscriber, encoded once for all the subscribers it reaches
/// the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message as a RESP2 array; a RESP3 push differs only in its first byte.
    resp2: Bytes,
}

impl Message {
    fn new(kind: Kind, pattern: Option<&Bytes>, channel: &Bytes, payload: &Bytes) -> Message {
        let mut out = bytes::BytesMut::new();
        pubsub::message(kind, pattern, channel, payload).encode(Protocol::Resp2, &mut out);
        Message {
            resp2: out.freeze(),
        }
    }

    /// Appends the message as a subscriber speaking `protocol` receives it (a push).
    pub fn write(&self, protocol: Protocol, out: &mut bytes::BytesMut) {
        match protocol {
            Protocol::Resp2 => out.extend_from_slice(&self.resp2),
            Protocol::Resp3 => {
                out.extend_from_slice(b">");
                out.extend_from_slice(&self.resp2[1..]);
            }
        }
    }
}

/// One connection as the hub knows it.
struct Subscriber {
    tx: mpsc::Sender<Message>,
    /// Bytes queued for it and not yet taken.
    queued: Arc<AtomicUsize>,
    /// Set when it fell behind and was cut off.
    cut: Arc<AtomicBool>,
    /// Whether it may hear keyspace notifications (a connection restricted to one
    /// namespace may not: they name every namespace's keys).
    keyspace_events: Arc<AtomicBool>,
    /// What it subscribes to (so that forgetting it touches only those names).
    names: HashSet<(Kind, Bytes)>,
}

#[derive(Default)]
struct Registry {
    subscribers: HashMap<u64, Subscriber>,
    /// Per kind, each name's subscribers (patterns apart: a publish walks them all).
    names: HashMap<Kind, HashMap<Bytes, HashSet<u64>>>,
}

impl Registry {
    fn of(&self, kind: Kind) -> impl Iterator<Item = (&Bytes, &HashSet<u64>)> {
        self.names.get(&kind).into_iter().flatten()
    }

    fn add(&mut self, id: u64, kind: Kind, name: &Bytes) {
        self.names
            .entry(kind)
            .or_default()
            .entry(name.clone())
            .or_default()
            .insert(id);
        if let Some(s) = self.subscribers.get_mut(&id) {
            s.names.insert((kind, name.clone()));
        }
    }

    fn remove(&mut self, id: u64, kind: Kind, name: &Bytes) {
        if let Some(of_kind) = self.names.get_mut(&kind) {
            if let Some(ids) = of_kind.get_mut(name) {
                ids.remove(&id);
                if ids.is_empty() {
                    of_kind.remove(name);
                }
            }
        }
        if let Some(s) = self.subscribers.get_mut(&id) {
            s.names.remove(&(kind, name.clone()));
        }
    }

    fn forget(&mut self, id: u64) {
        if let Some(s) = self.subscribers.remove(&id) {
            for (kind, name) in s.names {
                self.remove(id, kind, &name);
            }
        }
    }
}

/// Every subscription of the process's connections.
#[derive(Default)]
pub struct Hub {
    registry: Mutex<Registry>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes `payload` to `channel` (a shard channel if `shard`): the number of
    /// subscriptions it reached (a connection subscribed to the channel and to two
    /// matching patterns counts three times, as in Redis).
    pub fn publish(&self, channel: &Bytes, payload: &Bytes, shard: bool) -> usize {
        let mut registry = self.lock();
        let mut deliveries: Vec<(u64, Message)> = Vec::new();
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        if let Some(ids) = registry.names.get(&kind).and_then(|n| n.get(channel)) {
            let message = Message::new(kind, None, channel, payload);
            deliveries.extend(ids.iter().map(|&id| (id, message.clone())));
        }
        if !shard {
            for (pattern, ids) in registry.of(Kind::Pattern) {
                if glob_match(pattern, channel) {
                    let message = Message::new(Kind::Pattern, Some(pattern), channel, payload);
                    deliveries.extend(ids.iter().map(|&id| (id, message.clone())));
                }
            }
        }
        let keyspace =
            !shard && (channel.starts_with(b"__keyspace@") || channel.starts_with(b"__keyevent@"));
        let mut reached = 0;
        let mut behind = Vec::new();
        for (id, message) in deliveries {
            let Some(s) = registry.subscribers.get(&id) else {
                continue;
            };
            if keyspace && !s.keyspace_events.load(Ordering::Relaxed) {
                continue;
            }
            reached += 1;
            let size = message.resp2.len();
            let queued = s.queued.fetch_add(size, Ordering::Relaxed) + size;
            if queued > QUEUE_BYTES || s.tx.try_send(message).is_err() {
                s.cut.store(true, Ordering::Relaxed);
                behind.push(id);
            }
        }
        for id in behind {
            registry.forget(id);
        }
        reached
    }

    /// PUBSUB CHANNELS / SHARDCHANNELS: the channels with subscribers, matching `pattern`.
    pub fn channels(&self, shard: bool, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        let mut channels: Vec<Bytes> = self
            .lock()
            .of(kind)
            .map(|(name, _)| name)
            .filter(|name| pattern.is_none_or(|p| glob_match(p, name)))
            .cloned()
            .collect();
        channels.sort();
        channels
    }

    /// PUBSUB NUMSUB / SHARDNUMSUB: each channel's subscribers.
    pub fn numsub(&self, shard: bool, channels: &[Bytes]) -> Vec<usize> {
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        let registry = self.lock();
        channels
            .iter()
            .map(|c| {
                registry
                    .names
                    .get(&kind)
                    .and_then(|n| n.get(c))
                    .map_or(0, HashSet::len)
            })
            .collect()
    }

    /// The patterns with subscribers.
    pub fn patterns(&self) -> Vec<Bytes> {
        self.lock()
            .of(Kind::Pattern)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// INFO's counts: the channels, patterns and shard channels with subscribers.
    pub fn counts(&self) -> (u64, u64, u64) {
        let registry = self.lock();
        let n = |kind| registry.of(kind).count() as u64;
        (n(Kind::Channel), n(Kind::Pattern), n(Kind::Shard))
    }

    /// PUBSUB NUMPAT: the patterns with subscribers.
    pub fn numpat(&self) -> usize {
        self.lock().of(Kind::Pattern).count()
    }
}

/// The reply to a Pub/Sub command from this process's own subscriptions (a proxy adds the
/// other proxies' to PUBLISH's and PUBSUB's answers).
pub fn answer(cmd: &PubSubCommand, subs: &mut Subscriptions, hub: &Hub) -> Reply {
    let bulks = |names: Vec<Bytes>| Reply::Array(names.into_iter().map(Reply::Bulk).collect());
    match cmd {
        PubSubCommand::Subscribe(kind, names) => subs.subscribe(*kind, names),
        PubSubCommand::Unsubscribe(kind, names) => subs.unsubscribe(*kind, names),
        PubSubCommand::Publish {
            shard,
            channel,
            message,
        } => Reply::Integer(hub.publish(channel, message, *shard) as i64),
        PubSubCommand::Channels { shard, pattern } => {
            bulks(hub.channels(*shard, pattern.as_deref()))
        }
        PubSubCommand::NumSub { shard, channels } => {
            numsub_reply(channels, &hub.numsub(*shard, channels))
        }
        PubSubCommand::NumPat => Reply::Integer(hub.numpat() as i64),
        PubSubCommand::Help => PubSubCommand::help(),
    }
}

/// PUBSUB NUMSUB's reply: each channel followed by its count.
pub fn numsub_reply(channels: &[Bytes], counts: &[usize]) -> Reply {
    Reply::Array(
        channels
            .iter()
            .zip(counts)
            .flat_map(|(c, n)| [Reply::Bulk(c.clone()), Reply::Integer(*n as i64)])
            .collect(),
    )
}

/// How a connection with subscriptions answers the request `argv` (`parsed`), when not as
/// usual: a RESP2 connection may send only the subscription commands, PING (answered
/// `[pong, message]`), QUIT and RESET. As in Redis, an unknown command or a wrong number
/// of arguments is answered as such first, and the context is checked before the other
/// arguments.
pub fn while_subscribed(
    subs: &Subscriptions,
    protocol: Protocol,
    argv: &[Bytes],
    parsed: &Result<(Command, &'static CommandSpec), CommandError>,
) -> Option<Reply> {
    if protocol != Protocol::Resp2 || !subs.active() {
        return None;
    }
    let spec = match parsed {
        Ok((_, spec)) => *spec,
        Err(
            CommandError::UnknownCommand { .. }
            | CommandError::UnknownSubcommand { .. }
            | CommandError::WrongArity(_),
        ) => return None,
        Err(_) => zankv_commands::lookup(&argv[0])?,
    };
    if !pubsub::allowed_while_subscribed(spec) {
        return Some(Reply::Error(CommandError::SubscribedContext(
            spec.name.to_string(),
        )));
    }
    match parsed {
        Ok((Command::Connection(ConnectionCommand::Ping(message)), _)) => {
            Some(pubsub::subscribed_pong(message.clone()))
        }
        _ => None,
    }
}

/// One connection's subscriptions.
pub struct Subscriptions {
    hub: Arc<Hub>,
    id: u64,
    /// Per kind, in the order they were made (UNSUBSCRIBE without names ends them in it).
    names: HashMap<Kind, Vec<Bytes>>,
    rx: Option<mpsc::Receiver<Message>>,
    /// Bytes queued for it (shared with the hub's entry).
    queued: Arc<AtomicUsize>,
    cut: Arc<AtomicBool>,
    /// Whether it may hear keyspace notifications (shared with the hub's entry).
    keyspace_events: Arc<AtomicBool>,
}

impl Subscriptions {
    /// No subscriptions yet, for the connection with client id `id`.
    pub fn new(hub: Arc<Hub>, id: u64) -> Subscriptions {
        Subscriptions {
            hub,
            id,
            names: HashMap::new(),
            rx: None,
            queued: Arc::new(AtomicUsize::new(0)),
            cut: Arc::new(AtomicBool::new(false)),
            keyspace_events: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the connection may hear keyspace notifications (`__keyspace@...`,
    /// `__keyevent@...`): not while its password restricts it to one namespace, since they
    /// name the keys of every namespace.
    pub fn allow_keyspace_events(&self, allowed: bool) {
        self.keyspace_events.store(allowed, Ordering::Relaxed);
    }

    fn of(&self, kind: Kind) -> &[Bytes] {
        self.names.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// Channels and patterns subscribed (what SUBSCRIBE's and PSUBSCRIBE's confirmations
    /// count); shard channels count apart.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.of(Kind::Shard).len(),
            _ => self.of(Kind::Channel).len() + self.of(Kind::Pattern).len(),
        }
    }

    /// Whether the connection subscribes to anything (a RESP2 connection is then limited
    /// to the subscription commands).
    pub fn active(&self) -> bool {
        self.names.values().any(|v| !v.is_empty())
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: one confirmation per name.
    pub fn subscribe(&mut self, kind: Kind, names: &[Bytes]) -> Reply {
        let mut registry = self.hub.lock();
        // Cut off (set under the hub's lock): nothing more is registered, and the
        // connection closes once it has written what was queued ([`Subscriptions::next`]).
        if self.cut.load(Ordering::Relaxed) {
            return Reply::Frames(Vec::new());
        }
        if let std::collections::hash_map::Entry::Vacant(entry) =
            registry.subscribers.entry(self.id)
        {
            let (tx, rx) = mpsc::channel(QUEUE);
            self.rx = Some(rx);
            self.cut = Arc::new(AtomicBool::new(false));
            self.queued = Arc::new(AtomicUsize::new(0));
            entry.insert(Subscriber {
                tx,
                queued: self.queued.clone(),
                cut: self.cut.clone(),
                keyspace_events: self.keyspace_events.clone(),
                names: HashSet::new(),
            });
        }
        let mut confirmations = Vec::with_capacity(names.len());
        for name in names {
            let mine = self.names.entry(kind).or_default();
            if !mine.contains(name) {
                mine.push(name.clone());
                registry.add(self.id, kind, name);
            }
            confirmations.push(pubsub::confirmation(
                kind,
                true,
                Some(name.clone()),
                self.count(kind),
            ));
        }
        Reply::Frames(confirmations)
    }

    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: one confirmation per name (none: per
    /// subscription of the kind, or one with a null name when there is none).
    pub fn unsubscribe(&mut self, kind: Kind, names: &[Bytes]) -> Reply {
        let names: Vec<Bytes> = if names.is_empty() {
            self.of(kind).to_vec()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            return pubsub::confirmation(kind, false, None, self.count(kind));
        }
        let mut registry = self.hub.lock();
        let mut confirmations = Vec::with_capacity(names.len());
        for name in names {
            let mine = self.names.entry(kind).or_default();
            if let Some(at) = mine.iter().position(|n| *n == name) {
                mine.remove(at);
                registry.remove(self.id, kind, &name);
            }
            confirmations.push(pubsub::confirmation(
                kind,
                false,
                Some(name),
                self.count(kind),
            ));
        }
        if !self.active() {
            registry.subscribers.remove(&self.id);
        }
        Reply::Frames(confirmations)
    }

    /// Messages already waiting, to be written before the reply of the request at hand
    /// (so that a message published before an UNSUBSCRIBE arrives before its
    /// confirmation).
    pub fn ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(rx) = &mut self.rx {
            while let Ok(m) = rx.try_recv() {
                self.queued.fetch_sub(m.resp2.len(), Ordering::Relaxed);
                out.push(m);
            }
        }
        out
    }

    /// The messages already waiting, encoded for `protocol` in one buffer; None when none
    /// waits.
    pub fn ready_encoded(&mut self, protocol: Protocol) -> Option<Bytes> {
        let messages = self.ready();
        if messages.is_empty() {
            return None;
        }
        let mut out = bytes::BytesMut::new();
        for m in messages {
            m.write(protocol, &mut out);
        }
        Some(out.freeze())
    }

    /// The next message; pending while nothing is subscribed. `None` once the hub cut this
    /// connection off for falling behind: the connection is to be closed.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            match &mut self.rx {
                Some(rx) => match rx.recv().await {
                    Some(m) => {
                        self.queued.fetch_sub(m.resp2.len(), Ordering::Relaxed);
                        return Some(m);
                    }
                    // Every sender gone: cut off, or no subscription left.
                    None if self.cut.load(Ordering::Relaxed) => return None,
                    None => self.rx = None,
                },
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Ends every subscription without confirmations (RESET).
    pub fn clear(&mut self) {
        self.names.clear();
        self.hub.lock().forget(self.id);
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        if self.active() || self.rx.is_some() {
            self.hub.lock().forget(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn messages_reach_channel_and_pattern_subscribers_in_order() {
        let hub = Arc::new(Hub::default());
        let mut a = Subscriptions::new(hub.clone(), 1);
        let mut p = Subscriptions::new(hub.clone(), 2);
        assert!(!a.active());
        a.subscribe(Kind::Channel, &[b("news"), b("news")]);
        p.subscribe(Kind::Pattern, &[b("n*"), b("x*")]);
        assert_eq!(hub.publish(&b("news"), &b("1"), false), 2);
        assert_eq!(hub.publish(&b("news"), &b("2"), false), 2);
        assert_eq!(hub.publish(&b("other"), &b("3"), false), 0);
        assert_eq!(
            hub.publish(&b("news"), &b("s"), true),
            0,
            "not a shard channel"
        );
        let written = |m: &Message, protocol| {
            let mut out = bytes::BytesMut::new();
            m.write(protocol, &mut out);
            out
        };
        let first = a.next().await.unwrap();
        assert_eq!(
            &written(&first, Protocol::Resp2)[..],
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$1\r\n1\r\n"
        );
        assert_eq!(
            &written(&first, Protocol::Resp3)[..],
            b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$1\r\n1\r\n"
        );
        let rest = a.ready();
        assert_eq!(rest.len(), 1);
        assert!(written(&rest[0], Protocol::Resp2).ends_with(b"$1\r\n2\r\n"));
        let m = p.next().await.unwrap();
        assert!(written(&m, Protocol::Resp2)
            .starts_with(b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n"));
        assert_eq!(hub.channels(false, None), vec![b("news")]);
        assert_eq!(hub.numsub(false, &[b("news"), b("zz")]), vec![1, 0]);
        assert_eq!(hub.numpat(), 2);
        assert_eq!(hub.counts(), (1, 2, 0));
        drop(p);
        assert_eq!(hub.numpat(), 0, "a dropped connection leaves the hub");
    }

    #[tokio::test]
    async fn a_connection_kept_from_keyspace_events_hears_only_other_channels() {
        let hub = Arc::new(Hub::default());
        let mut restricted = Subscriptions::new(hub.clone(), 1);
        restricted.allow_keyspace_events(false);
        restricted.subscribe(Kind::Pattern, &[Bytes::from_static(b"*")]);
        let mut open = Subscriptions::new(hub.clone(), 2);
        open.subscribe(Kind::Pattern, &[Bytes::from_static(b"*")]);
        let event = Bytes::from_static(b"__keyspace@0__:secret");
        assert_eq!(hub.publish(&event, &Bytes::from_static(b"set"), false), 1);
        assert_eq!(
            hub.publish(&Bytes::from_static(b"news"), &Bytes::new(), false),
            2
        );
        assert_eq!(restricted.ready().len(), 1, "the plain channel only");
        assert_eq!(open.ready().len(), 2);
        restricted.allow_keyspace_events(true);
        assert_eq!(hub.publish(&event, &Bytes::from_static(b"set"), false), 2);
    }

    #[tokio::test]
    async fn unsubscribing_everything_confirms_each_and_leaves_the_hub() {
        let hub = Arc::new(Hub::default());
        let mut a = Subscriptions::new(hub.clone(), 1);
        let mut out = bytes::BytesMut::new();
        a.unsubscribe(Kind::Channel, &[])
            .encode(zankv_commands::Protocol::Resp2, &mut out);
        assert_eq!(&out[..], b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        a.subscribe(Kind::Channel, &[b("a"), b("b")]);
        a.subscribe(Kind::Shard, &[b("s")]);
        match a.unsubscribe(Kind::Channel, &[]) {
            Reply::Frames(f) => assert_eq!(f.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(a.active(), "the shard channel is left");
        assert_eq!(hub.channels(true, Some(b"s*")), vec![b("s")]);
        a.clear();
        assert!(!a.active());
        assert_eq!(hub.numsub(true, &[b("s")]), vec![0]);
    }

    #[tokio::test]
    async fn a_subscriber_cut_off_cannot_subscribe_again() {
        let hub = Arc::new(Hub::default());
        let mut slow = Subscriptions::new(hub.clone(), 1);
        slow.subscribe(Kind::Channel, &[b("c")]);
        for i in 0..=QUEUE {
            hub.publish(&b("c"), &Bytes::from(i.to_string()), false);
        }
        assert_eq!(
            slow.subscribe(Kind::Channel, &[b("d")]),
            Reply::Frames(vec![])
        );
        assert_eq!(hub.numsub(false, &[b("c"), b("d")]), vec![0, 0]);
        for _ in 0..QUEUE {
            assert!(slow.next().await.is_some());
        }
        assert_eq!(slow.next().await, None, "its connection closes");
    }

    #[tokio::test]
    async fn a_subscriber_holding_too_many_bytes_is_cut_off() {
        let hub = Arc::new(Hub::default());
        let mut slow = Subscriptions::new(hub.clone(), 1);
        slow.subscribe(Kind::Channel, &[b("c")]);
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        let fits = QUEUE_BYTES / (big.len() + 64);
        for _ in 0..fits {
            assert_eq!(hub.publish(&b("c"), &big, false), 1);
        }
        // Taking them frees their room.
        assert_eq!(slow.ready().len(), fits);
        for _ in 0..fits {
            hub.publish(&b("c"), &big, false);
        }
        assert_eq!(hub.numsub(false, &[b("c")]), vec![1]);
        hub.publish(&b("c"), &big, false);
        assert_eq!(hub.numsub(false, &[b("c")]), vec![0], "over the byte limit");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_cut_off_alone() {
        let hub = Arc::new(Hub::default());
        let mut slow = Subscriptions::new(hub.clone(), 1);
        let mut quick = Subscriptions::new(hub.clone(), 2);
        slow.subscribe(Kind::Channel, &[b("c")]);
        quick.subscribe(Kind::Channel, &[b("c")]);
        for i in 0..=QUEUE {
            hub.publish(&b("c"), &Bytes::from(i.to_string()), false);
            let mut out = bytes::BytesMut::new();
            for m in quick.ready() {
                m.write(Protocol::Resp2, &mut out);
            }
            assert!(out.ends_with(format!("{i}\r\n").as_bytes()));
        }
        assert_eq!(
            hub.numsub(false, &[b("c")]),
            vec![1],
            "the slow one is gone"
        );
        for _ in 0..QUEUE {
            assert!(slow.next().await.is_some());
        }
        assert_eq!(slow.next().await, None, "then its connection closes");
    }
}

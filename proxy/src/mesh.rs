//! Pub/Sub across proxies: a message published through any proxy reaches the subscribers
//! of every proxy, and PUBLISH answers the receivers of all of them.
//!
//! Every proxy reports to PD each second where the others reach it (`peer_announce_addr`,
//! or its client address; `/proxy/peers/heartbeat`) and takes the list of live proxies
//! ([`crate::peers`]). PUBLISH delivers to this proxy's subscribers and sends
//! `ZANKV.PUBLISH <channel> <message>` to every other live proxy, which delivers to its own
//! and answers how many it reached; the reply is the sum. PUBSUB CHANNELS, NUMSUB and NUMPAT
//! gather the other proxies' answers the same way (`ZANKV.PUBSUB ...`). These internal
//! commands are outside the command table.
//!
//! Invariants: one pipelined connection per peer, and a publisher's requests are queued to
//! it in the order the proxy read them, so one publisher's messages reach every subscriber
//! in publish order; a peer that does not answer (gone, partitioned) counts no receivers
//! and its subscribers miss the message, which Pub/Sub never promises to deliver anyway.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use zankv_commands::pubsub::PubSubCommand;
use zankv_commands::{CommandError, Protocol, Reply};
use zankv_process::pubsub::{numsub_reply, Hub};

use crate::backend::{BackendPool, ReplyReceiver};
use crate::forward::encode_request;
use crate::peers::Peers;
use crate::reply_frames::{array_items, bulk_text, integer};

/// Delivers a message to the receiving proxy's own subscribers.
const PUBLISH: &[u8] = b"zankv.publish";
/// The same for a shard channel.
const SPUBLISH: &[u8] = b"zankv.spublish";
/// The receiving proxy's own answer to PUBSUB CHANNELS, SHARDCHANNELS, NUMSUB, SHARDNUMSUB,
/// or PATTERNS (the patterns it has subscribers for).
const PUBSUB: &[u8] = b"zankv.pubsub";

/// The other proxies, and how to reach them.
pub struct Mesh {
    /// The live proxies, this one included.
    pub peers: Arc<Peers>,
    /// Sent with AUTH on each connection to another proxy (its `requirepass`, which every
    /// proxy of a cluster shares).
    pub password: Option<Bytes>,
}

impl Mesh {
    /// Sends `argv` to every other live proxy; the receivers of their replies.
    async fn to_others(&self, pool: &BackendPool, argv: &[Bytes]) -> Vec<ReplyReceiver> {
        let request = encode_request(argv);
        let me = &self.peers.me().id;
        let mut replies = Vec::new();
        for peer in self.peers.live().into_iter().filter(|p| p.id != *me) {
            let link = pool.peer(peer.addr, self.password.clone());
            replies.push(link.send(request.clone()).await);
        }
        replies
    }
}

/// What a command answered by every proxy combines.
pub enum Gather {
    /// PUBLISH, SPUBLISH: the receivers so far.
    Publish(i64),
    /// PUBSUB CHANNELS, SHARDCHANNELS: the channels so far.
    Channels(BTreeSet<Bytes>),
    /// PUBSUB NUMSUB, SHARDNUMSUB: the channels and their subscribers so far.
    NumSub(Vec<Bytes>, Vec<usize>),
    /// PUBSUB NUMPAT: the patterns so far.
    NumPat(BTreeSet<Bytes>),
}

/// Starts `cmd` on every proxy, if it is answered by all of them: this proxy's part, and
/// the other proxies' replies to wait for. None for the commands on this connection's own
/// subscriptions (SUBSCRIBE, ...) and for PUBSUB HELP.
pub async fn start(
    cmd: &PubSubCommand,
    hub: &Hub,
    mesh: &Mesh,
    pool: &BackendPool,
) -> Option<(Gather, Vec<ReplyReceiver>)> {
    let word = |s: &'static str| Bytes::from_static(s.as_bytes());
    let (gather, argv) = match cmd {
        PubSubCommand::Publish {
            shard,
            channel,
            message,
        } => {
            let local = hub.publish(channel, message, *shard) as i64;
            let name = if *shard { SPUBLISH } else { PUBLISH };
            (
                Gather::Publish(local),
                vec![Bytes::from_static(name), channel.clone(), message.clone()],
            )
        }
        PubSubCommand::Channels { shard, pattern } => {
            let local = hub.channels(*shard, pattern.as_deref());
            let mut argv = vec![
                Bytes::from_static(PUBSUB),
                word(if *shard { "SHARDCHANNELS" } else { "CHANNELS" }),
            ];
            argv.extend(pattern.clone());
            (Gather::Channels(local.into_iter().collect()), argv)
        }
        PubSubCommand::NumSub { shard, channels } => {
            let local = hub.numsub(*shard, channels);
            let mut argv = vec![
                Bytes::from_static(PUBSUB),
                word(if *shard { "SHARDNUMSUB" } else { "NUMSUB" }),
            ];
            argv.extend(channels.iter().cloned());
            (Gather::NumSub(channels.clone(), local), argv)
        }
        PubSubCommand::NumPat => (
            Gather::NumPat(hub.patterns().into_iter().collect()),
            vec![Bytes::from_static(PUBSUB), word("PATTERNS")],
        ),
        PubSubCommand::Subscribe(..) | PubSubCommand::Unsubscribe(..) | PubSubCommand::Help => {
            return None
        }
    };
    Some((gather, mesh.to_others(pool, &argv).await))
}

/// How long the other proxies' parts are waited for (a stopped proxy must not hold up
/// every PUBLISH).
const PEER_DEADLINE: Duration = Duration::from_secs(1);

/// Waits for the other proxies' parts and answers the whole, encoded for `protocol`.
pub async fn finish(mut gather: Gather, replies: Vec<ReplyReceiver>, protocol: Protocol) -> Bytes {
    let deadline = tokio::time::Instant::now() + PEER_DEADLINE;
    let parts = join_all(
        replies
            .into_iter()
            .map(|rx| tokio::time::timeout_at(deadline, rx)),
    )
    .await;
    for part in parts {
        // A peer that failed or is late adds nothing.
        let Ok(Ok(Ok(reply))) = part else { continue };
        match &mut gather {
            Gather::Publish(total) => *total += integer(&reply).unwrap_or(0),
            Gather::Channels(all) | Gather::NumPat(all) => all.extend(names(&reply)),
            Gather::NumSub(_, counts) => {
                let theirs = array_items(&reply, Protocol::Resp2).unwrap_or_default();
                for (count, item) in counts.iter_mut().zip(theirs) {
                    *count += integer(&item)
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    let reply = match gather {
        Gather::Publish(total) => Reply::Integer(total),
        Gather::Channels(all) => Reply::Array(all.into_iter().map(Reply::Bulk).collect()),
        Gather::NumSub(channels, counts) => numsub_reply(&channels, &counts),
        Gather::NumPat(all) => Reply::Integer(all.len() as i64),
    };
    let mut out = bytes::BytesMut::new();
    reply.encode(protocol, &mut out);
    out.freeze()
}

/// The bulk strings of an array reply.
fn names(reply: &Bytes) -> Vec<Bytes> {
    array_items(reply, Protocol::Resp2)
        .unwrap_or_default()
        .iter()
        .filter_map(bulk_text)
        .collect()
}

/// Whether `argv` is a request of another proxy ([`answer_peer`] answers it).
pub fn is_peer_request(argv: &[Bytes]) -> bool {
    [PUBLISH, SPUBLISH, PUBSUB]
        .iter()
        .any(|name| argv[0].eq_ignore_ascii_case(name))
}

/// Answers another proxy's request from this proxy's own subscriptions.
pub fn answer_peer(argv: &[Bytes], hub: &Hub) -> Reply {
    let bulks = |names: Vec<Bytes>| Reply::Array(names.into_iter().map(Reply::Bulk).collect());
    let name = argv[0].to_ascii_lowercase();
    match (name.as_slice(), &argv[1..]) {
        (PUBLISH, [channel, message]) => {
            Reply::Integer(hub.publish(channel, message, false) as i64)
        }
        (SPUBLISH, [channel, message]) => {
            Reply::Integer(hub.publish(channel, message, true) as i64)
        }
        (PUBSUB, [sub, rest @ ..]) => {
            let sub = sub.to_ascii_lowercase();
            match (sub.as_slice(), rest) {
                (b"channels", [] | [_]) => bulks(hub.channels(false, rest.first().map(|p| &p[..]))),
                (b"shardchannels", [] | [_]) => {
                    bulks(hub.channels(true, rest.first().map(|p| &p[..])))
                }
                (b"numsub" | b"shardnumsub", channels) => Reply::Array(
                    hub.numsub(sub.as_slice() == b"shardnumsub", channels)
                        .into_iter()
                        .map(|n| Reply::Integer(n as i64))
                        .collect(),
                ),
                (b"patterns", []) => bulks(hub.patterns()),
                _ => Reply::Error(CommandError::Syntax),
            }
        }
        _ => Reply::Error(CommandError::Syntax),
    }
}

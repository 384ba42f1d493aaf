//! Pub/Sub commands: specs, parsing, and the shapes of their replies and messages.
//!
//! SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, SSUBSCRIBE, SUNSUBSCRIBE, PUBLISH,
//! SPUBLISH and PUBSUB are connection commands: the server that holds the connection
//! answers them from its subscriptions (the registry is `zankv_process::pubsub`), never a
//! partition. This module owns what does not depend on the server: the commands, the
//! confirmations and messages as Redis 7.0 shapes them (pushes in RESP3, arrays in RESP2),
//! and the rule of which commands a RESP2 connection may send while subscribed.

use bytes::Bytes;

use crate::error::CommandError;
use crate::reply::Reply;
use crate::spec::{container, spec, Access, CommandSpec, ALL_KEYS, NO_KEYS, ONE_KEY};

const C: Access = Access::Connection;
const G: &str = "pubsub";
const SUB_FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];
const SUB_ACL: &[&str] = &["pubsub", "slow"];
const PUB_FLAGS: &[&str] = &["pubsub", "loading", "stale", "fast"];
const PUB_ACL: &[&str] = &["pubsub", "fast"];
const INTROSPECT_FLAGS: &[&str] = &["pubsub", "loading", "stale"];

/// Specs of the Pub/Sub family.
pub static SPECS: &[CommandSpec] = &[
    spec(
        "subscribe",
        -2,
        C,
        SUB_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.0.0",
        "Listens for messages published to channels.",
    ),
    spec(
        "unsubscribe",
        -1,
        C,
        SUB_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.0.0",
        "Stops listening to messages posted to channels.",
    ),
    spec(
        "psubscribe",
        -2,
        C,
        SUB_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.0.0",
        "Listens for messages published to channels that match one or more patterns.",
    ),
    spec(
        "punsubscribe",
        -1,
        C,
        SUB_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.0.0",
        "Stops listening to messages published to channels that match one or more patterns.",
    ),
    spec(
        "ssubscribe",
        -2,
        C,
        SUB_FLAGS,
        ALL_KEYS,
        SUB_ACL,
        G,
        "7.0.0",
        "Listens for messages published to shard channels.",
    ),
    spec(
        "sunsubscribe",
        -1,
        C,
        SUB_FLAGS,
        ALL_KEYS,
        SUB_ACL,
        G,
        "7.0.0",
        "Stops listening to messages posted to shard channels.",
    ),
    spec(
        "publish",
        3,
        C,
        PUB_FLAGS,
        NO_KEYS,
        PUB_ACL,
        G,
        "2.0.0",
        "Posts a message to a channel.",
    ),
    spec(
        "spublish",
        3,
        C,
        PUB_FLAGS,
        ONE_KEY,
        PUB_ACL,
        G,
        "7.0.0",
        "Post a message to a shard channel",
    ),
    container(
        "pubsub",
        "A container for Pub/Sub commands.",
        G,
        "2.8.0",
        PUBSUB_SUBCOMMANDS,
    ),
];

/// PUBSUB's subcommands.
pub static PUBSUB_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "pubsub|channels",
        -2,
        C,
        INTROSPECT_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.8.0",
        "Returns the active channels.",
    ),
    spec(
        "pubsub|numsub",
        -2,
        C,
        INTROSPECT_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.8.0",
        "Returns a count of subscribers to channels.",
    ),
    spec(
        "pubsub|numpat",
        2,
        C,
        INTROSPECT_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "2.8.0",
        "Returns a count of unique pattern subscriptions.",
    ),
    spec(
        "pubsub|shardchannels",
        -2,
        C,
        INTROSPECT_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "7.0.0",
        "Returns the active shard channels.",
    ),
    spec(
        "pubsub|shardnumsub",
        -2,
        C,
        INTROSPECT_FLAGS,
        NO_KEYS,
        SUB_ACL,
        G,
        "7.0.0",
        "Returns the count of subscribers of shard channels.",
    ),
    spec(
        "pubsub|help",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow"],
        G,
        "6.2.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// What a subscription names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A channel (SUBSCRIBE).
    Channel,
    /// A glob-style pattern of channels (PSUBSCRIBE).
    Pattern,
    /// A shard channel (SSUBSCRIBE).
    Shard,
}

impl Kind {
    /// The confirmation's name for a subscription (`unsubscribe`: for its end).
    fn confirmation(self, subscribe: bool) -> &'static str {
        match (self, subscribe) {
            (Kind::Channel, true) => "subscribe",
            (Kind::Channel, false) => "unsubscribe",
            (Kind::Pattern, true) => "psubscribe",
            (Kind::Pattern, false) => "punsubscribe",
            (Kind::Shard, true) => "ssubscribe",
            (Kind::Shard, false) => "sunsubscribe",
        }
    }
}

/// A typed Pub/Sub command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubCommand {
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: the names.
    Subscribe(Kind, Vec<Bytes>),
    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: the names (none: every one).
    Unsubscribe(Kind, Vec<Bytes>),
    /// PUBLISH and SPUBLISH (`shard`).
    Publish {
        /// SPUBLISH.
        shard: bool,
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// `PUBSUB CHANNELS [pattern]`, `PUBSUB SHARDCHANNELS [pattern]`.
    Channels {
        /// SHARDCHANNELS.
        shard: bool,
        /// Only the channels matching it.
        pattern: Option<Bytes>,
    },
    /// `PUBSUB NUMSUB [channel ...]`, `PUBSUB SHARDNUMSUB [channel ...]`.
    NumSub {
        /// SHARDNUMSUB.
        shard: bool,
        /// The channels.
        channels: Vec<Bytes>,
    },
    /// PUBSUB NUMPAT.
    NumPat,
    /// PUBSUB HELP.
    Help,
}

impl PubSubCommand {
    /// Parses a Pub/Sub command; `name` is lower case (`pubsub|numsub` for a subcommand)
    /// and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        let names = || args.to_vec();
        Ok(match name {
            "subscribe" => PubSubCommand::Subscribe(Kind::Channel, names()),
            "psubscribe" => PubSubCommand::Subscribe(Kind::Pattern, names()),
            "ssubscribe" => PubSubCommand::Subscribe(Kind::Shard, names()),
            "unsubscribe" => PubSubCommand::Unsubscribe(Kind::Channel, names()),
            "punsubscribe" => PubSubCommand::Unsubscribe(Kind::Pattern, names()),
            "sunsubscribe" => PubSubCommand::Unsubscribe(Kind::Shard, names()),
            "publish" | "spublish" => PubSubCommand::Publish {
                shard: name == "spublish",
                channel: args[0].clone(),
                message: args[1].clone(),
            },
            "pubsub|channels" | "pubsub|shardchannels" => match &args[1..] {
                [] => PubSubCommand::Channels {
                    shard: name == "pubsub|shardchannels",
                    pattern: None,
                },
                [pattern] => PubSubCommand::Channels {
                    shard: name == "pubsub|shardchannels",
                    pattern: Some(pattern.clone()),
                },
                _ => {
                    return Err(CommandError::SubcommandArgs {
                        sub: String::from_utf8_lossy(&args[0]).into_owned(),
                        command: "PUBSUB",
                    })
                }
            },
            "pubsub|numsub" | "pubsub|shardnumsub" => PubSubCommand::NumSub {
                shard: name == "pubsub|shardnumsub",
                channels: args[1..].to_vec(),
            },
            "pubsub|numpat" => PubSubCommand::NumPat,
            "pubsub|help" => PubSubCommand::Help,
            _ => unreachable!("pubsub family dispatched an unknown name: {name}"),
        })
    }

    /// PUBSUB HELP's text.
    pub fn help() -> Reply {
        Reply::Array(
            [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|l| Reply::Status(l))
            .collect(),
        )
    }
}

/// The confirmation of one subscription's start or end: `[subscribe, name, count]`, the
/// name null when an unsubscribe found nothing to end.
pub fn confirmation(kind: Kind, subscribe: bool, name: Option<Bytes>, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::bulk(kind.confirmation(subscribe)),
        name.map_or(Reply::Nil, Reply::Bulk),
        Reply::Integer(count as i64),
    ])
}

/// A message as a subscriber receives it: `[message, channel, payload]`, `[pmessage,
/// pattern, channel, payload]` for a pattern subscription, `[smessage, channel, payload]`
/// for a shard channel.
pub fn message(kind: Kind, pattern: Option<&Bytes>, channel: &Bytes, payload: &Bytes) -> Reply {
    let mut items = vec![Reply::bulk(match kind {
        Kind::Channel => "message",
        Kind::Pattern => "pmessage",
        Kind::Shard => "smessage",
    })];
    if let Some(pattern) = pattern {
        items.push(Reply::Bulk(pattern.clone()));
    }
    items.push(Reply::Bulk(channel.clone()));
    items.push(Reply::Bulk(payload.clone()));
    Reply::Push(items)
}

/// Whether a RESP2 connection with subscriptions may send the command `spec` names: only
/// the subscription commands, PING, QUIT and RESET (RESP3 connections may send anything).
pub fn allowed_while_subscribed(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "subscribe"
            | "unsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// PING's answer to a RESP2 connection with subscriptions: `[pong, message]`.
pub fn subscribed_pong(message: Option<Bytes>) -> Reply {
    Reply::Array(vec![
        Reply::bulk("pong"),
        Reply::Bulk(message.unwrap_or_default()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{argv, parse, Command, ConnectionCommand};

    fn pubsub(words: &[&str]) -> PubSubCommand {
        match parse(&argv(words)) {
            Ok((Command::Connection(ConnectionCommand::PubSub(c)), _)) => c,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    #[test]
    fn commands_parse_into_their_kinds() {
        assert_eq!(
            pubsub(&["SUBSCRIBE", "a", "b"]),
            PubSubCommand::Subscribe(Kind::Channel, argv(&["a", "b"]))
        );
        assert_eq!(
            pubsub(&["punsubscribe"]),
            PubSubCommand::Unsubscribe(Kind::Pattern, vec![])
        );
        assert_eq!(
            pubsub(&["spublish", "c", "m"]),
            PubSubCommand::Publish {
                shard: true,
                channel: "c".into(),
                message: "m".into()
            }
        );
        assert_eq!(
            pubsub(&["pubsub", "SHARDCHANNELS", "x*"]),
            PubSubCommand::Channels {
                shard: true,
                pattern: Some("x*".into())
            }
        );
        assert_eq!(pubsub(&["pubsub", "numpat"]), PubSubCommand::NumPat);
        assert!(matches!(
            parse(&argv(&["pubsub", "channels", "a", "b"])),
            Err(CommandError::SubcommandArgs { .. })
        ));
        assert!(matches!(
            parse(&argv(&["pubsub", "numpat", "x"])),
            Err(CommandError::WrongArity(_))
        ));
    }

    #[test]
    fn messages_and_confirmations_have_redis_shapes() {
        let mut out = bytes::BytesMut::new();
        message(Kind::Pattern, Some(&"h*".into()), &"hi".into(), &"x".into())
            .encode(crate::Protocol::Resp2, &mut out);
        assert_eq!(
            &out[..],
            b"*4\r\n$8\r\npmessage\r\n$2\r\nh*\r\n$2\r\nhi\r\n$1\r\nx\r\n"
        );
        out.clear();
        confirmation(Kind::Channel, false, None, 0).encode(crate::Protocol::Resp3, &mut out);
        assert_eq!(&out[..], b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
    }
}

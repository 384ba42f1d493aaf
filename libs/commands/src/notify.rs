//! Keyspace notifications (`notify-keyspace-events`) as data: the event classes and their
//! letters, the setting's text as Redis parses and prints it, and the channels an event
//! is published on. Where events happen is each server's business.
//!
//! Invariants: [`text`] of what [`parse`] accepted is what Redis's CONFIG GET shows
//! (`A` stands for every type class and hides `n`), and parsing it again gives the same
//! classes.

use bytes::{BufMut, Bytes, BytesMut};

/// `K`: events are published on `__keyspace@0__:<key>`, the event as the message.
pub const KEYSPACE: u16 = 1 << 0;
/// `E`: events are published on `__keyevent@0__:<event>`, the key as the message.
pub const KEYEVENT: u16 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u16 = 1 << 2;
/// `$`: string commands.
pub const STRING: u16 = 1 << 3;
/// `l`: list commands.
pub const LIST: u16 = 1 << 4;
/// `s`: set commands.
pub const SET: u16 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u16 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u16 = 1 << 7;
/// `x`: a key deleted because it expired.
pub const EXPIRED: u16 = 1 << 8;
/// `e`: a key evicted for maxmemory (never, here).
pub const EVICTED: u16 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u16 = 1 << 10;
/// `m`: a key missed by a read (not part of `A`).
pub const KEY_MISS: u16 = 1 << 11;
/// `d`: module events.
pub const MODULE: u16 = 1 << 13;
/// `n`: a new key (not part of `A`).
pub const NEW: u16 = 1 << 14;
/// `A`: g$lshzxetd.
pub const ALL: u16 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Each letter and its class, in the order Redis prints them.
const LETTERS: [(char, u16); 14] = [
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
    ('n', NEW),
    ('K', KEYSPACE),
    ('E', KEYEVENT),
    ('m', KEY_MISS),
];

/// The classes `text` names, or Redis's complaint about it.
pub fn parse(text: &str) -> Result<u16, &'static str> {
    let mut flags = 0u16;
    for c in text.chars() {
        flags |= if c == 'A' {
            ALL
        } else {
            LETTERS
                .iter()
                .find(|(l, _)| *l == c)
                .map(|(_, bit)| *bit)
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?
        };
    }
    Ok(flags)
}

/// `flags` as CONFIG GET shows them.
pub fn text(flags: u16) -> String {
    let mut out = String::new();
    let (types, rest) = LETTERS.split_at(11);
    if flags & ALL == ALL {
        // As Redis prints it: `A` stands for the type classes and hides `n`.
        out.push('A');
    } else {
        out.extend(
            types
                .iter()
                .filter(|(_, b)| flags & b != 0)
                .map(|(l, _)| *l),
        );
    }
    out.extend(rest.iter().filter(|(_, b)| flags & b != 0).map(|(l, _)| *l));
    out
}

/// The letter of one class (`None` for K and E, which are not classes of events).
pub fn letter(class: u16) -> Option<char> {
    LETTERS[..11]
        .iter()
        .chain(&LETTERS[13..])
        .find(|(_, b)| *b == class)
        .map(|(l, _)| *l)
}

/// The letters of the classes in `flags`, one each (K and E are not classes).
pub fn letters(flags: u16) -> impl Iterator<Item = char> {
    LETTERS[..11]
        .iter()
        .chain(&LETTERS[13..])
        .filter(move |(_, b)| flags & b != 0)
        .map(|(l, _)| *l)
}

/// Whether `flags` publish anything at all: some class, and K or E.
pub fn active(flags: u16) -> bool {
    flags & (KEYSPACE | KEYEVENT) != 0 && flags & !(KEYSPACE | KEYEVENT) != 0
}

/// `__keyspace@0__:<key>`.
pub fn keyspace_channel(key: &[u8]) -> Bytes {
    channel(b"__keyspace@0__:", key)
}

/// `__keyevent@0__:<event>`.
pub fn keyevent_channel(event: &str) -> Bytes {
    channel(b"__keyevent@0__:", event.as_bytes())
}

fn channel(prefix: &[u8], name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + name.len());
    out.put_slice(prefix);
    out.put_slice(name);
    out.freeze()
}

/// Publishes one event of `class` as `flags` say (the keyspace channel, the keyevent
/// channel, both or neither) with `publish(channel, message)`.
pub fn publish(
    flags: u16,
    class: u16,
    event: &str,
    key: &Bytes,
    mut publish: impl FnMut(Bytes, Bytes),
) {
    if flags & class == 0 {
        return;
    }
    if flags & KEYSPACE != 0 {
        publish(
            keyspace_channel(key),
            Bytes::copy_from_slice(event.as_bytes()),
        );
    }
    if flags & KEYEVENT != 0 {
        publish(keyevent_channel(event), key.clone());
    }
}

/// The internal shard channel a storage node sends its events to listening proxies on;
/// each message a batch of events ([`append_event`], [`read_events`]).
pub const LISTEN_CHANNEL: &[u8] = b"__zankv_events__";

/// Appends one event to a batch: its class letter, its name, a space, the key's length in
/// decimal, a space, the key.
pub fn append_event(out: &mut BytesMut, class: u16, event: &str, key: &[u8]) {
    let Some(letter) = letter(class) else {
        return;
    };
    let mut buf = [0u8; 4];
    out.put_slice(letter.encode_utf8(&mut buf).as_bytes());
    out.put_slice(event.as_bytes());
    out.put_u8(b' ');
    out.put_slice(key.len().to_string().as_bytes());
    out.put_u8(b' ');
    out.put_slice(key);
}

/// Reads a batch of events, calling `visit(class, event, key)` for each, in order; stops
/// at the first malformed one (returning false).
pub fn read_events(batch: &Bytes, mut visit: impl FnMut(u16, &str, Bytes)) -> bool {
    let mut rest = &batch[..];
    while let Some(&first) = rest.first() {
        let class = match LETTERS.iter().find(|(l, _)| *l as u32 == u32::from(first)) {
            Some((_, class)) if *class & (KEYSPACE | KEYEVENT) == 0 => *class,
            _ => return false,
        };
        rest = &rest[1..];
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            return false;
        };
        let Ok(event) = std::str::from_utf8(&rest[..space]) else {
            return false;
        };
        rest = &rest[space + 1..];
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            return false;
        };
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            return false;
        };
        rest = &rest[space + 1..];
        let Some(key) = rest.get(..len) else {
            return false;
        };
        visit(class, event, batch.slice_ref(key));
        rest = &rest[len..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_and_prints_as_redis_does() {
        // Measured against redis-server 7.0.
        for (set, shown) in [
            ("nAKEm", "AKEm"),
            ("KEA", "AKE"),
            ("Kx", "xK"),
            ("gE$", "g$E"),
            ("Eghlsz", "glshzE"),
            ("", ""),
            ("tdn", "tdn"),
            ("AKEn", "AKE"),
        ] {
            let flags = parse(set).unwrap();
            assert_eq!(text(flags), shown, "{set}");
            assert_eq!(text(parse(shown).unwrap()), shown);
        }
        assert!(parse("q").is_err());
    }

    #[test]
    fn only_classes_with_k_or_e_publish() {
        assert!(!active(parse("A").unwrap()));
        assert!(!active(parse("KE").unwrap()));
        assert!(active(parse("Kl").unwrap()));
        let mut sent = Vec::new();
        let key = Bytes::from_static(b"k");
        publish(parse("KEl").unwrap(), LIST, "lpush", &key, |c, m| {
            sent.push((c, m))
        });
        publish(parse("KEl").unwrap(), SET, "sadd", &key, |c, m| {
            sent.push((c, m))
        });
        assert_eq!(
            sent,
            vec![
                (
                    Bytes::from_static(b"__keyspace@0__:k"),
                    Bytes::from_static(b"lpush")
                ),
                (
                    Bytes::from_static(b"__keyevent@0__:lpush"),
                    Bytes::from_static(b"k")
                ),
            ]
        );
        assert_eq!(letter(LIST), Some('l'));
        assert_eq!(
            letters(parse("AKm").unwrap()).collect::<String>(),
            "g$lshzxetdm"
        );
        assert_eq!(letter(KEYSPACE), None);
    }

    #[test]
    fn a_batch_of_events_reads_back_as_written() {
        let events: [(u16, &str, &[u8]); 4] = [
            (LIST, "lpush", b"my list"),
            (GENERIC, "del", b""),
            (STRING, "set", b"k \r\n 9 x"),
            (NEW, "new", b"\xff\x00"),
        ];
        let mut out = BytesMut::new();
        for (class, event, key) in events {
            append_event(&mut out, class, event, key);
        }
        let mut read = Vec::new();
        assert!(read_events(&out.freeze(), |c, e, k| read.push((
            c,
            e.to_string(),
            k
        ))));
        let expected: Vec<(u16, String, Bytes)> = events
            .iter()
            .map(|(c, e, k)| (*c, e.to_string(), Bytes::copy_from_slice(k)))
            .collect();
        assert_eq!(read, expected);
        assert!(!read_events(
            &Bytes::from_static(b"lpush 9 short"),
            |_, _, _| {}
        ));
        assert!(!read_events(&Bytes::from_static(b"Kset 1 k"), |_, _, _| {}));
    }
}

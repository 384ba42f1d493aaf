//! WATCH on a leader: which watched keys were written since they were watched. Owned by the
//! store loop, which sees every write a leader proposes, in log order.
//!
//! WATCH registers its keys in the group's table and answers a token per key naming the
//! group, the leader's term and the table's logical clock then. Every write the leader
//! proposes afterwards (client commands, transactions, background expiry) marks the watched
//! keys it names as touched at the clock's next value; a keyless write (FLUSHDB, FLUSHALL)
//! touches every watched key. When a transaction is proposed, each token must show an
//! unchanged key: same group, same term (the node led without interruption, so it proposed
//! every entry since), the key watched continuously since the token's time and not touched
//! after it. Otherwise the transaction is not proposed and EXEC answers a null array.
//!
//! Writes proposed before the WATCH and applied after it can only touch a key later than
//! the token too (they were in flight, and the client's reads after WATCH may not have
//! seen them): such an EXEC fails, which is what the client would want.
//!
//! A key no client watched for [`WATCH_TTL_TICKS`] leaves the table; a token older than
//! that then fails. The table is per group and cleared when its term changes.
//!
//! What this leaves to the applied change ([`crate::change::Change::Transaction`]): a key
//! that expires between WATCH and EXEC without a deletion proposed yet; the change carries
//! the time of each WATCH and every replica checks the key's expiry against it.

use std::collections::HashMap;

use bytes::Bytes;
use zankv_commands::Reply;

use super::log_store::GroupId;

/// Ticks a key stays in the table after its last WATCH (10 minutes at the default 100 ms
/// tick).
pub const WATCH_TTL_TICKS: u64 = 6000;
/// Most keys watched per group; a WATCH beyond it forgets the least recently watched key.
const MAX_KEYS: usize = 1 << 20;

/// A WATCH token, as the connection keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The group the key belongs to.
    pub group: GroupId,
    /// The leader's term at WATCH.
    pub term: u64,
    /// The table's clock at WATCH.
    pub seq: u64,
    /// The leader's clock (ms since the Unix epoch) at WATCH.
    pub at_ms: i64,
}

impl Token {
    /// The token's bytes (opaque to clients and the proxy).
    pub fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "w1:{}:{}:{}:{}",
            self.group, self.term, self.seq, self.at_ms
        ))
    }

    /// Reads [`Token::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Option<Token> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.strip_prefix("w1:")?.split(':');
        let token = Token {
            group: fields.next()?.parse().ok()?,
            term: fields.next()?.parse().ok()?,
            seq: fields.next()?.parse().ok()?,
            at_ms: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(token)
    }
}

#[derive(Debug, Clone, Copy)]
struct KeyWatch {
    /// The clock when the key entered the table.
    since: u64,
    /// The clock when a proposed write last touched it (0: not since it entered).
    touched: u64,
    /// The tick of its last WATCH.
    watched_at: u64,
    /// When background expiry last deleted it (the clock then, and the expiry it had): a
    /// client that watched it already expired sees no change in that (as in Redis).
    expired: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct GroupWatches {
    term: u64,
    clock: u64,
    keys: HashMap<Bytes, KeyWatch>,
}

impl GroupWatches {
    /// The table for `term`: emptied when the term changed.
    fn in_term(&mut self, term: u64) -> &mut Self {
        if self.term != term {
            self.keys.clear();
            self.term = term;
        }
        self
    }
}

/// Every group's watched keys.
#[derive(Debug, Default)]
pub struct WatchTables {
    groups: HashMap<GroupId, GroupWatches>,
}

impl WatchTables {
    /// WATCH `keys` of `group`, led in `term`: one token per key, as a RESP array.
    pub fn watch(
        &mut self,
        group: GroupId,
        term: u64,
        keys: &[Bytes],
        now_ms: i64,
        tick: u64,
    ) -> Reply {
        let table = self.groups.entry(group).or_default().in_term(term);
        table.clock += 1;
        let seq = table.clock;
        for key in keys {
            if table.keys.len() >= MAX_KEYS && !table.keys.contains_key(key) {
                let oldest = table
                    .keys
                    .iter()
                    .min_by_key(|(_, w)| w.watched_at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    table.keys.remove(&oldest);
                }
            }
            table
                .keys
                .entry(key.clone())
                .and_modify(|w| w.watched_at = tick)
                .or_insert(KeyWatch {
                    since: seq,
                    touched: 0,
                    watched_at: tick,
                    expired: None,
                });
        }
        let token = Token {
            group,
            term,
            seq,
            at_ms: now_ms,
        }
        .encode();
        Reply::Array(keys.iter().map(|_| Reply::Bulk(token.clone())).collect())
    }

    /// Whether `group` has watched keys (then proposed writes must be looked at).
    pub fn any(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|t| !t.keys.is_empty())
    }

    /// For a write proposed in `group` in `term`: its table (if it watches any key) and the
    /// clock's next value, which the write's touches carry.
    fn advance(&mut self, group: GroupId, term: u64) -> Option<(&mut GroupWatches, u64)> {
        let table = self.groups.get_mut(&group)?.in_term(term);
        if table.keys.is_empty() {
            return None;
        }
        table.clock += 1;
        let now = table.clock;
        Some((table, now))
    }

    /// A write naming `keys` was proposed in `group` in `term`; `None`: a keyless write,
    /// which touches every watched key.
    pub fn touch<'k>(
        &mut self,
        group: GroupId,
        term: u64,
        keys: Option<impl IntoIterator<Item = &'k [u8]>>,
    ) {
        let Some((table, now)) = self.advance(group, term) else {
            return;
        };
        match keys {
            None => table.keys.values_mut().for_each(|w| w.touched = now),
            Some(keys) => {
                for key in keys {
                    if let Some(w) = table.keys.get_mut(key) {
                        w.touched = now;
                    }
                }
            }
        }
    }

    /// Background expiry deleting `keys` (each with the expiry it had) was proposed in
    /// `group` in `term`: a change for the clients that watched a key while it was live,
    /// none for those that watched it already expired (judged per token by
    /// [`WatchTables::unchanged`]).
    pub fn expire<'k>(
        &mut self,
        group: GroupId,
        term: u64,
        keys: impl IntoIterator<Item = (&'k [u8], u64)>,
    ) {
        let Some((table, now)) = self.advance(group, term) else {
            return;
        };
        for (key, expire_at) in keys {
            if let Some(w) = table.keys.get_mut(key) {
                w.expired = Some((now, expire_at));
            }
        }
    }

    /// For a transaction of `group` led in `term`: the WATCH time of each watched key when
    /// none changed since its token, `None` otherwise (EXEC fails).
    pub fn unchanged(
        &mut self,
        group: GroupId,
        term: u64,
        watched: &[(Bytes, Bytes)],
    ) -> Option<Vec<(Bytes, i64)>> {
        if watched.is_empty() {
            return Some(Vec::new());
        }
        let table = self.groups.get_mut(&group)?.in_term(term);
        watched
            .iter()
            .map(|(key, token)| {
                let token = Token::decode(token)?;
                let w = table.keys.get(key)?;
                (token.group == group
                    && token.term == term
                    && w.since <= token.seq
                    && w.touched < token.seq
                    && w.expired.is_none_or(|(clock, expire_at)| {
                        clock < token.seq || expire_at as i64 <= token.at_ms
                    }))
                .then(|| (key.clone(), token.at_ms))
            })
            .collect()
    }

    /// Forgets the keys not watched for [`WATCH_TTL_TICKS`] before `tick`. A group's table
    /// stays (its clock must never go back, or an old token could pass for a new one).
    pub fn prune(&mut self, tick: u64) {
        for table in self.groups.values_mut() {
            table
                .keys
                .retain(|_, w| w.watched_at + WATCH_TTL_TICKS > tick);
        }
    }

    /// Forgets a group this node no longer hosts.
    pub fn forget(&mut self, group: GroupId) {
        self.groups.remove(&group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(reply: Reply) -> Vec<Bytes> {
        match reply {
            Reply::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Reply::Bulk(b) => b,
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn key(k: &str) -> Bytes {
        Bytes::from(k.to_string())
    }

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        let t = Token {
            group: 7,
            term: 3,
            seq: 9,
            at_ms: 1_700_000_000_000,
        };
        assert_eq!(Token::decode(&t.encode()), Some(t));
        for junk in ["", "w1:1:2:3", "w1:1:2:3:4:5", "w2:1:2:3:4", "w1:a:2:3:4"] {
            assert_eq!(Token::decode(junk.as_bytes()), None, "{junk}");
        }
    }

    #[test]
    fn a_write_after_watch_fails_the_transaction_and_one_before_does_not() {
        let mut w = WatchTables::default();
        w.touch(1, 5, Some([&b"a"[..]]));
        let t = tokens(w.watch(1, 5, &[key("a"), key("b")], 100, 0));
        let watched = vec![(key("a"), t[0].clone()), (key("b"), t[1].clone())];
        assert_eq!(
            w.unchanged(1, 5, &watched),
            Some(vec![(key("a"), 100), (key("b"), 100)])
        );
        // A write to another key changes nothing.
        w.touch(1, 5, Some([&b"c"[..]]));
        assert!(w.unchanged(1, 5, &watched).is_some());
        w.touch(1, 5, Some([&b"b"[..]]));
        assert_eq!(w.unchanged(1, 5, &watched), None);
        // Watched again: a new token is good.
        let t = tokens(w.watch(1, 5, &[key("b")], 200, 1));
        assert!(w.unchanged(1, 5, &[(key("b"), t[0].clone())]).is_some());
    }

    #[test]
    fn expiry_deleting_a_key_changes_it_only_for_those_who_watched_it_live() {
        let mut w = WatchTables::default();
        // Watched at 100 ms: "gone" had expired at 50, "live" expires at 150.
        let t = tokens(w.watch(1, 5, &[key("gone"), key("live")], 100, 0));
        w.expire(1, 5, [(&b"gone"[..], 50)]);
        let gone = vec![(key("gone"), t[0].clone())];
        assert!(
            w.unchanged(1, 5, &gone).is_some(),
            "already expired at WATCH"
        );
        w.expire(1, 5, [(&b"live"[..], 150)]);
        assert_eq!(w.unchanged(1, 5, &[(key("live"), t[1].clone())]), None);
        // Recreated after its deletion: a change again.
        w.touch(1, 5, Some([&b"gone"[..]]));
        assert_eq!(w.unchanged(1, 5, &gone), None);
    }

    #[test]
    fn keyless_writes_term_changes_and_other_groups_fail_it() {
        let mut w = WatchTables::default();
        let t = tokens(w.watch(1, 5, &[key("a")], 100, 0));
        let watched = vec![(key("a"), t[0].clone())];
        assert_eq!(w.unchanged(2, 5, &watched), None, "another group");
        assert_eq!(w.unchanged(1, 6, &watched), None, "another term");
        let t = tokens(w.watch(1, 6, &[key("a")], 100, 0));
        let watched = vec![(key("a"), t[0].clone())];
        assert!(w.unchanged(1, 6, &watched).is_some());
        w.touch(1, 6, None::<Vec<&[u8]>>);
        assert_eq!(w.unchanged(1, 6, &watched), None, "FLUSHDB");
    }

    #[test]
    fn keys_watched_long_ago_are_forgotten_and_their_tokens_fail() {
        let mut w = WatchTables::default();
        let t = tokens(w.watch(1, 5, &[key("a")], 100, 0));
        let watched = vec![(key("a"), t[0].clone())];
        w.prune(WATCH_TTL_TICKS - 1);
        assert!(w.unchanged(1, 5, &watched).is_some());
        w.prune(WATCH_TTL_TICKS);
        assert!(!w.any(1));
        assert_eq!(w.unchanged(1, 5, &watched), None);
        // Re-entering the table later does not revive the old token.
        w.watch(1, 5, &[key("a")], 100, WATCH_TTL_TICKS);
        assert_eq!(w.unchanged(1, 5, &watched), None);
    }
}

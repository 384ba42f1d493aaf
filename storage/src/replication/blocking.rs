//! Clients blocked in BLPOP, BLMOVE, BZPOPMIN and the other blocking pops, on the groups
//! this node leads: who waits for which keys, in which order, until when. Owned by the
//! store loop, which proposes their pops.
//!
//! A blocked client's pop is an ordinary replicated write (its non-blocking form, as in
//! MULTI). It is proposed when the client blocks, and again whenever a write naming one of
//! its keys is proposed: raft orders the pop after that write, so the pop sees it. A pop
//! that finds nothing leaves the client waiting.
//!
//! Invariants:
//! - per key, clients are served first blocked, first served: a write to the key wakes its
//!   oldest idle waiter only; a waiter whose pop took something wakes the next idle waiter
//!   of each key its command names (the write may have added more than one element, and
//!   BLMOVE pushed to its destination); a waiter whose pop found nothing waits again in its
//!   place;
//! - a waiter has at most one pop in flight; a write proposed meanwhile marks it to try
//!   again if that pop finds nothing, so no wake-up is lost;
//! - a waiter is answered exactly once, and only while no pop of it is in flight, except
//!   with that pop's own reply: its timeout and the loss of leadership are answered once
//!   its pop is back, so an element taken is always delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use zankv_commands::{blocking, CommandError, Reply};

use super::log_store::GroupId;

/// A waiter's number: waiters block in increasing order.
pub type WaiterId = u64;

/// What a blocking pop takes from: lists (BLPOP, BLMOVE, BLMPOP, ...) or sorted sets
/// (BZPOPMIN, BZMPOP, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Lists.
    List,
    /// Sorted sets.
    SortedSet,
}

impl Family {
    /// The family of a spec's group (`list`, `sorted-set`), if any.
    fn of_group(group: &str) -> Option<Family> {
        match group {
            "list" => Some(Family::List),
            "sorted-set" => Some(Family::SortedSet),
            _ => None,
        }
    }
}

/// The list and sorted-set writes that only take away (or change in place): they never
/// give a waiter something to pop.
const REMOVE_ONLY: &[&str] = &[
    "lpop",
    "rpop",
    "lmpop",
    "lrem",
    "ltrim",
    "lset",
    "zpopmin",
    "zpopmax",
    "zmpop",
    "zrem",
    "zremrangebyscore",
    "zremrangebyrank",
    "zremrangebylex",
];

/// Which waiters a write may give something to pop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakes {
    /// None: it writes strings, hashes or sets, or only removes (`REMOVE_ONLY`).
    Nothing,
    /// Those of one family (a list or sorted-set command).
    Family(Family),
    /// Any (a generic command: RENAME, COPY, SORT ... STORE, ...).
    Any,
}

impl Wakes {
    /// Which waiters the write command `argv` may give something to pop.
    pub fn of(argv: &[Bytes]) -> Wakes {
        let Some(spec) = argv.first().and_then(|n| zankv_commands::lookup(n)) else {
            return Wakes::Nothing;
        };
        if REMOVE_ONLY.contains(&spec.name) {
            return Wakes::Nothing;
        }
        match Family::of_group(spec.group) {
            Some(family) => Wakes::Family(family),
            None if spec.group == "generic" => Wakes::Any,
            None => Wakes::Nothing,
        }
    }

    fn families(self) -> &'static [Family] {
        match self {
            Wakes::Nothing => &[],
            Wakes::Family(Family::List) => &[Family::List],
            Wakes::Family(Family::SortedSet) => &[Family::SortedSet],
            Wakes::Any => &[Family::List, Family::SortedSet],
        }
    }
}

/// One blocked client.
struct Waiter {
    group: GroupId,
    /// What it pops from.
    family: Family,
    /// The leader's term when it blocked: a new term means this node lost the lead since.
    term: u64,
    keys: Vec<Bytes>,
    /// The command, proposed as is for every try.
    argv: Vec<Bytes>,
    /// The id its proxy gave it (so that a pop sent again never pops twice).
    pop_id: Option<Bytes>,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Reply>,
    in_flight: bool,
    /// The key whose write woke it: its pop tries that key first, as Redis serves a
    /// blocked client from the key that became ready.
    woken_by: Option<Bytes>,
    /// A key written while its pop was in flight (it tries again if that pop found
    /// nothing).
    again: Option<Bytes>,
    /// Its first pop was applied: later ones are tries after a wake-up, which pass over
    /// keys of another type ([`crate::data::Txn::waiting`]).
    tried: bool,
    /// `tried` before the pop answered last.
    tried_before: bool,
}

/// A blocking pop as a client sent it.
pub struct BlockedPop {
    /// The keys it waits on.
    pub keys: Vec<Bytes>,
    /// The command.
    pub argv: Vec<Bytes>,
    /// The id a proxy gave it, if any.
    pub id: Option<Bytes>,
}

/// One try of a waiter's pop, as the store loop proposes it
/// ([`crate::change::Change::Pop`]).
pub struct PopTry {
    /// Its group.
    pub group: GroupId,
    /// The command, the key that woke the waiter first among its source keys.
    pub argv: Vec<Bytes>,
    /// Its proxy's id, if any.
    pub id: Option<Bytes>,
    /// Not the first try.
    pub retry: bool,
}

/// What a pop's reply means for its waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Popped {
    /// The client got its reply; these waiters' pops are to be proposed now.
    Answered(Vec<WaiterId>),
    /// Propose its pop again now: a write came in while it was in flight.
    TryAgain,
    /// It waits on (or was gone already).
    Waiting,
}

/// The blocked clients of every group this node leads.
#[derive(Default)]
pub struct BlockedClients {
    next: WaiterId,
    waiters: BTreeMap<WaiterId, Waiter>,
    by_key: HashMap<(GroupId, Bytes), BTreeSet<WaiterId>>,
    deadlines: BTreeSet<(Instant, WaiterId)>,
    /// How many wait in each group.
    per_group: HashMap<GroupId, usize>,
}

impl BlockedClients {
    /// Whether anyone waits in `group`.
    pub fn any(&self, group: GroupId) -> bool {
        self.per_group.contains_key(&group)
    }

    /// Blocks a client on the keys of `pop` in `group` (led in `term`) until `deadline`
    /// (None: for ever); its first pop is to be proposed now (it is in flight from here on).
    pub fn block(
        &mut self,
        group: GroupId,
        term: u64,
        pop: BlockedPop,
        deadline: Option<Instant>,
        reply: oneshot::Sender<Reply>,
    ) -> WaiterId {
        let BlockedPop {
            keys,
            argv,
            id: pop_id,
        } = pop;
        self.next += 1;
        let id = self.next;
        for key in &keys {
            self.by_key
                .entry((group, key.clone()))
                .or_default()
                .insert(id);
        }
        // Its deadline counts once it is idle (one with a pop in flight is answered when
        // the pop is back).
        *self.per_group.entry(group).or_default() += 1;
        let family = zankv_commands::lookup(&argv[0])
            .and_then(|spec| Family::of_group(spec.group))
            .unwrap_or(Family::List);
        self.waiters.insert(
            id,
            Waiter {
                group,
                family,
                term,
                keys,
                argv,
                pop_id,
                deadline,
                reply,
                in_flight: true,
                woken_by: None,
                again: None,
                tried: false,
                tried_before: false,
            },
        );
        id
    }

    /// Waiter `id`'s pop to propose now.
    pub fn pop_of(&self, id: WaiterId) -> Option<PopTry> {
        let w = self.waiters.get(&id)?;
        let argv = match (&w.woken_by, zankv_commands::lookup(&w.argv[0])) {
            (Some(key), Some(spec)) => blocking::with_source_first(spec, &w.argv, key),
            _ => w.argv.clone(),
        };
        Some(PopTry {
            group: w.group,
            argv,
            id: w.pop_id.clone(),
            retry: w.tried,
        })
    }

    /// A write naming `keys` that `wakes` those waiters was proposed in `group`: the
    /// waiters whose pops are to be proposed now, each marked in flight.
    pub fn touched<'a>(
        &mut self,
        group: GroupId,
        keys: impl IntoIterator<Item = &'a [u8]>,
        wakes: Wakes,
    ) -> Vec<WaiterId> {
        let mut wake = Vec::new();
        for key in keys {
            let key = Bytes::copy_from_slice(key);
            for &family in wakes.families() {
                self.wake_first(group, &key, family, &mut wake);
            }
        }
        wake
    }

    /// Wakes the oldest idle waiter of `family` on `key` into `wake`, or, when every such
    /// waiter has a pop in flight, marks them to try again. Waiters whose client is gone
    /// are forgotten on the way (none of them may take an element).
    fn wake_first(
        &mut self,
        group: GroupId,
        key: &Bytes,
        family: Family,
        wake: &mut Vec<WaiterId>,
    ) {
        let Some(ids) = self.by_key.get(&(group, key.clone())) else {
            return;
        };
        let mut gone = Vec::new();
        let mut idle = None;
        let mut busy = Vec::new();
        for &id in ids {
            let Some(w) = self.waiters.get(&id) else {
                continue;
            };
            if w.family != family {
                continue;
            }
            if w.in_flight {
                busy.push(id);
            } else if w.reply.is_closed() {
                gone.push(id);
            } else {
                idle = Some(id);
                break;
            }
        }
        for id in gone {
            self.remove(id);
        }
        match idle {
            Some(id) => {
                if let Some(w) = self.waiters.get_mut(&id) {
                    w.in_flight = true;
                    w.woken_by = Some(key.clone());
                    if let Some(at) = w.deadline {
                        self.deadlines.remove(&(at, id));
                    }
                }
                wake.push(id);
            }
            None => {
                for id in busy {
                    if let Some(w) = self.waiters.get_mut(&id) {
                        w.again = Some(key.clone());
                    }
                }
            }
        }
    }

    /// Waiter `id`'s pop answered `reply`.
    pub fn popped(&mut self, id: WaiterId, reply: Reply, now: Instant) -> Popped {
        let Some(w) = self.waiters.get_mut(&id) else {
            return Popped::Waiting;
        };
        let nothing = match &reply {
            Reply::Nil | Reply::NilArray => true,
            // Not applied: raft dropped it, or this node stopped leading first.
            Reply::Error(CommandError::ClusterChanged(_)) => true,
            _ => false,
        };
        w.tried_before = w.tried;
        w.tried |= !matches!(reply, Reply::Error(CommandError::ClusterChanged(_)));
        if !nothing {
            let retry = w.tried_before;
            let took = !matches!(reply, Reply::Error(_));
            let w = self.remove(id).expect("present");
            let _ = w.reply.send(reply);
            let mut wake = Vec::new();
            if took || retry {
                // Its keys may hold more (or, when a retry failed, still hold what woke
                // it), and BLMOVE's destination got an element: the next waiters try.
                let named = zankv_commands::lookup(&w.argv[0])
                    .map(|spec| spec.key_positions(&w.argv).collect::<Vec<_>>())
                    .unwrap_or_default();
                for key in named.into_iter().map(|i| &w.argv[i]) {
                    self.wake_first(w.group, key, w.family, &mut wake);
                }
            }
            return Popped::Answered(wake);
        }
        // Past its deadline, it is answered whatever was written meanwhile.
        let late = w.deadline.is_some_and(|at| at <= now);
        if let Some(key) = w.again.take().filter(|_| !late) {
            w.woken_by = Some(key);
            return Popped::TryAgain;
        }
        w.in_flight = false;
        match w.deadline {
            Some(at) if at <= now => {
                let w = self.remove(id).expect("present");
                let _ = w.reply.send(blocking::timed_out());
            }
            Some(at) => {
                self.deadlines.insert((at, id));
            }
            None => {}
        }
        Popped::Waiting
    }

    /// Answers the idle waiters whose timeout passed, and forgets those whose client is
    /// gone.
    pub fn expire(&mut self, now: Instant) {
        let due: Vec<WaiterId> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            if self.waiters.get(&id).is_some_and(|w| !w.in_flight) {
                if let Some(w) = self.remove(id) {
                    let _ = w.reply.send(blocking::timed_out());
                }
            }
        }
        let gone: Vec<WaiterId> = self
            .waiters
            .iter()
            .filter(|(_, w)| !w.in_flight && w.reply.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(id);
        }
    }

    /// The earliest deadline of a waiter, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The groups and terms in which clients wait.
    pub fn terms(&self) -> BTreeSet<(GroupId, u64)> {
        self.waiters.values().map(|w| (w.group, w.term)).collect()
    }

    /// Answers `refusal` to the idle waiters that blocked in `group` in `term`, which this
    /// node no longer leads (their clients try the new leader). Those with a pop in flight
    /// are answered once it is back.
    pub fn refuse(&mut self, group: GroupId, term: u64, refusal: &CommandError) {
        let lost: Vec<WaiterId> = self
            .waiters
            .iter()
            .filter(|(_, w)| !w.in_flight && w.group == group && w.term == term)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(w) = self.remove(id) {
                let _ = w.reply.send(Reply::Error(refusal.clone()));
            }
        }
    }

    fn remove(&mut self, id: WaiterId) -> Option<Waiter> {
        let w = self.waiters.remove(&id)?;
        for key in &w.keys {
            let k = (w.group, key.clone());
            if let Some(ids) = self.by_key.get_mut(&k) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
        if let Some(at) = w.deadline {
            self.deadlines.remove(&(at, id));
        }
        if let Some(n) = self.per_group.get_mut(&w.group) {
            *n -= 1;
            if *n == 0 {
                self.per_group.remove(&w.group);
            }
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn block(
        c: &mut BlockedClients,
        keys: &[&str],
        deadline: Option<Instant>,
    ) -> (WaiterId, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let keys: Vec<Bytes> = keys.iter().map(|k| b(k)).collect();
        let mut argv = vec![b("blpop")];
        argv.extend(keys.iter().cloned());
        argv.push(b("0"));
        let pop = BlockedPop {
            keys,
            argv,
            id: None,
        };
        (c.block(1, 7, pop, deadline, tx), rx)
    }

    fn touch(c: &mut BlockedClients, key: &str) -> Vec<WaiterId> {
        c.touched(1, [key.as_bytes()], Wakes::Family(Family::List))
    }

    fn element(key: &str, e: &str) -> Reply {
        Reply::Array(vec![Reply::Bulk(b(key)), Reply::Bulk(b(e))])
    }

    #[test]
    fn the_first_blocked_is_served_first_and_wakes_the_next() {
        let now = Instant::now();
        let mut c = BlockedClients::default();
        let (a, mut ra) = block(&mut c, &["q"], None);
        let (b_, mut rb) = block(&mut c, &["q"], None);
        // Both first pops found nothing.
        assert_eq!(c.popped(a, Reply::NilArray, now), Popped::Waiting);
        assert_eq!(c.popped(b_, Reply::NilArray, now), Popped::Waiting);
        // A push wakes the oldest only.
        assert_eq!(touch(&mut c, "q"), vec![a]);
        // Its pop took an element: it is answered and the next one tries.
        assert_eq!(
            c.popped(a, element("q", "x"), now),
            Popped::Answered(vec![b_])
        );
        assert_eq!(ra.try_recv().unwrap(), element("q", "x"));
        // The next one found nothing (one element only): it waits on.
        assert_eq!(c.popped(b_, Reply::NilArray, now), Popped::Waiting);
        assert!(rb.try_recv().is_err());
        assert!(c.any(1));
    }

    #[test]
    fn a_waiter_kept_busy_by_writes_still_times_out() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(10);
        let mut c = BlockedClients::default();
        let (a, mut ra) = block(&mut c, &["q"], Some(soon));
        assert_eq!(touch(&mut c, "q"), Vec::<WaiterId>::new());
        // A write came in during its pop, but its time is up: answered, not tried again.
        assert_eq!(c.popped(a, Reply::NilArray, soon), Popped::Waiting);
        assert_eq!(ra.try_recv().unwrap(), Reply::NilArray);
        // Pops and removals wake nobody.
        let lpop = [b("lpop"), b("q")];
        assert_eq!(Wakes::of(&lpop), Wakes::Nothing);
        let lpush = [b("lpush"), b("q"), b("x")];
        assert_eq!(Wakes::of(&lpush), Wakes::Family(Family::List));
    }

    #[test]
    fn a_write_during_a_pop_in_flight_is_not_lost() {
        let now = Instant::now();
        let mut c = BlockedClients::default();
        let (a, mut ra) = block(&mut c, &["q"], None);
        // Written while the first pop is in flight: nobody idle to wake, so it tries again.
        assert_eq!(touch(&mut c, "q"), Vec::<WaiterId>::new());
        assert_eq!(c.popped(a, Reply::NilArray, now), Popped::TryAgain);
        assert_eq!(
            c.popped(a, element("q", "y"), now),
            Popped::Answered(vec![])
        );
        assert_eq!(ra.try_recv().unwrap(), element("q", "y"));
        assert!(!c.any(1));
    }

    #[test]
    fn timeouts_wait_for_the_pop_in_flight() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(10);
        let mut c = BlockedClients::default();
        let (a, mut ra) = block(&mut c, &["q"], Some(soon));
        // Its first pop is in flight: no deadline to sleep for yet.
        assert_eq!(c.next_deadline(), None);
        c.expire(soon);
        assert!(ra.try_recv().is_err());
        // The pop came back empty after the deadline: the timeout is answered.
        assert_eq!(c.popped(a, Reply::NilArray, soon), Popped::Waiting);
        assert_eq!(ra.try_recv().unwrap(), Reply::NilArray);
        assert_eq!(c.next_deadline(), None);
        // An idle waiter times out at its deadline.
        let (b_, mut rb) = block(&mut c, &["q"], Some(soon));
        assert_eq!(c.popped(b_, Reply::NilArray, now), Popped::Waiting);
        assert_eq!(c.next_deadline(), Some(soon));
        c.expire(now);
        assert!(rb.try_recv().is_err());
        c.expire(soon);
        assert_eq!(rb.try_recv().unwrap(), Reply::NilArray);
        assert!(!c.any(1));
    }

    #[test]
    fn a_woken_waiter_tries_the_written_key_first_and_then_as_a_retry() {
        let now = Instant::now();
        let mut c = BlockedClients::default();
        let (a, _ra) = block(&mut c, &["q1", "q2"], None);
        let first = c.pop_of(a).unwrap();
        assert!(!first.retry);
        assert_eq!(first.argv, vec![b("blpop"), b("q1"), b("q2"), b("0")]);
        assert_eq!(c.popped(a, Reply::NilArray, now), Popped::Waiting);
        assert_eq!(touch(&mut c, "q2"), vec![a]);
        let woken = c.pop_of(a).unwrap();
        assert!(woken.retry);
        assert_eq!(woken.argv, vec![b("blpop"), b("q2"), b("q1"), b("0")]);
        // A write to q1 while that pop is in flight: the next try starts with q1.
        assert_eq!(touch(&mut c, "q1"), Vec::<WaiterId>::new());
        assert_eq!(c.popped(a, Reply::NilArray, now), Popped::TryAgain);
        assert_eq!(c.pop_of(a).unwrap().argv[1], b("q1"));
        // A WRONGTYPE of a retry comes from a destination (sources of another type are
        // passed over): it is the client's answer.
        let wrong = Reply::Error(CommandError::WrongType);
        assert_eq!(c.popped(a, wrong, now), Popped::Answered(vec![]));
    }

    #[test]
    fn losing_the_lead_refuses_idle_waiters_only() {
        let now = Instant::now();
        let mut c = BlockedClients::default();
        let (a, mut ra) = block(&mut c, &["q"], None);
        let (_b, mut rb) = block(&mut c, &["r"], None);
        assert_eq!(c.popped(a, Reply::NilArray, now), Popped::Waiting);
        assert_eq!(c.terms(), BTreeSet::from([(1, 7)]));
        c.refuse(1, 7, &CommandError::ClusterChanged("not the leader".into()));
        assert!(matches!(ra.try_recv(), Ok(Reply::Error(_))));
        // `b`'s first pop is still in flight: it is answered with that pop's reply.
        assert!(rb.try_recv().is_err());
        assert!(c.any(1));
    }

    #[test]
    fn writes_wake_only_waiters_of_their_family_and_skip_gone_clients() {
        let now = Instant::now();
        let mut c = BlockedClients::default();
        let (a, _ra) = block(&mut c, &["k"], None);
        let (z, _rz) = {
            let (tx, rx) = oneshot::channel();
            let pop = BlockedPop {
                keys: vec![b("k")],
                argv: vec![b("bzpopmin"), b("k"), b("0")],
                id: None,
            };
            (c.block(1, 7, pop, None, tx), rx)
        };
        c.popped(a, Reply::NilArray, now);
        c.popped(z, Reply::NilArray, now);
        // A hash write gives nothing to pop; a ZADD only to the sorted-set waiter, even
        // behind an older list waiter; a generic write to both.
        let hset = [b("hset"), b("k"), b("f"), b("v")];
        assert_eq!(
            c.touched(1, [&b"k"[..]], Wakes::of(&hset)),
            Vec::<WaiterId>::new()
        );
        let zadd = [b("zadd"), b("k"), b("1"), b("m")];
        assert_eq!(c.touched(1, [&b"k"[..]], Wakes::of(&zadd)), vec![z]);
        c.popped(z, Reply::NilArray, now);
        let rename = [b("rename"), b("x"), b("k")];
        let mut woken = c.touched(1, [&b"k"[..]], Wakes::of(&rename));
        woken.sort_unstable();
        assert_eq!(woken, vec![a, z]);
        c.popped(a, Reply::NilArray, now);
        // A client gone while idle is never woken (it could not receive an element).
        let (gone, rgone) = block(&mut c, &["q"], None);
        c.popped(gone, Reply::NilArray, now);
        drop(rgone);
        let (next, _rnext) = block(&mut c, &["q"], None);
        c.popped(next, Reply::NilArray, now);
        assert_eq!(touch(&mut c, "q"), vec![next]);
    }

    #[test]
    fn a_retry_that_fails_wakes_the_next_waiter() {
        let now = Instant::now();
        let mut c = BlockedClients::default();
        let (a, mut ra) = block(&mut c, &["src"], None);
        let (b_, _rb) = block(&mut c, &["src"], None);
        c.popped(a, Reply::NilArray, now);
        c.popped(b_, Reply::NilArray, now);
        assert_eq!(touch(&mut c, "src"), vec![a]);
        // A BLMOVE into a destination of another type: answered, element left in place.
        let wrong = Reply::Error(CommandError::WrongType);
        assert_eq!(c.popped(a, wrong.clone(), now), Popped::Answered(vec![b_]));
        assert_eq!(ra.try_recv().unwrap(), wrong);
    }
}

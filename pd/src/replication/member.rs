//! One PD member's raft node, on a thread of its own.
//!
//! The thread owns the raft-rs `RawNode` over the [`MetaLog`]: it ticks it, steps the
//! messages other members send (`POST /raft/messages`), proposes new metadata for the
//! cluster owner and answers once it is committed and applied, persists every ready before
//! the messages that depend on it leave, and publishes the committed metadata and who leads.
//! Messages to other members go out as HTTP calls on the async runtime (lost ones are
//! retransmitted by raft).
//!
//! Invariant: a proposal is answered `Ok` only once its entry is committed (on a quorum's
//! disks) and applied here; an entry of another term at its index answers it with an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{EntryType, Message};
use raft::{Config, RawNode, StateRole};
use tokio::sync::watch;
use tracing::info;
use zankv_pd_api::Secret;

use super::log::MetaLog;

/// Inputs queued for the raft thread before senders are refused.
const QUEUE: usize = 4096;
/// Deadline of one call carrying raft messages to another member.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Who leads, as this member sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberState {
    /// The leader's member id (0 = none known).
    pub leader: u64,
    /// This member leads and has applied everything committed before its term: its
    /// metadata is current and it may propose.
    pub leading: bool,
    /// Current term.
    pub term: u64,
}

/// The committed metadata as last applied, with its index.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Raft index of the entry (or snapshot) it came from.
    pub index: u64,
    /// The metadata, as JSON.
    pub data: Arc<Vec<u8>>,
}

/// Where a proposal's outcome goes.
type Reply = SyncSender<Result<(), String>>;

enum Input {
    Step(Vec<Message>),
    Propose {
        data: Vec<u8>,
        reply: SyncSender<Result<(), String>>,
    },
    Stop,
}

/// Raft timing and the other members.
pub struct MemberSettings {
    /// This member's id.
    pub id: u64,
    /// Every member's HTTP address, this one included.
    pub members: BTreeMap<u64, SocketAddr>,
    /// Length of one tick.
    pub tick: Duration,
    /// Ticks without a leader before a campaign.
    pub election_ticks: usize,
    /// Sent with raft messages when set.
    pub token: Option<Secret>,
}

/// A handle to the raft thread.
#[derive(Clone)]
pub struct MemberHandle {
    id: u64,
    tx: SyncSender<Input>,
    state: watch::Receiver<MemberState>,
    committed: watch::Receiver<Committed>,
}

impl MemberHandle {
    /// Proposes `data` (the next metadata) and waits until it is committed and applied, or
    /// `timeout` passes. Blocking: called from the cluster owner's thread.
    pub fn propose_and_wait(&self, data: Vec<u8>, timeout: Duration) -> Result<(), String> {
        let (reply, answer) = sync_channel(1);
        self.tx
            .try_send(Input::Propose { data, reply })
            .map_err(|_| {
                "E_FAILED_ON_NOT_LEADER: the raft thread is busy or stopped".to_string()
            })?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the change was not committed within {timeout:?} (the other PD members may be unreachable); it may still be"
            )),
        }
    }

    /// Queues messages from another member; false when the queue is full (they are
    /// dropped: raft retransmits).
    pub fn step(&self, messages: Vec<Message>) -> bool {
        match self.tx.try_send(Input::Step(messages)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Who leads now.
    pub fn state(&self) -> MemberState {
        *self.state.borrow()
    }

    /// The committed metadata, to watch.
    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// Stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.try_send(Input::Stop);
    }
}

/// Encodes messages as one body: each a big-endian u32 length and the protobuf.
pub fn encode_messages(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let bytes = m
            .write_to_bytes()
            .expect("encoding into memory cannot fail");
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Decodes [`encode_messages`]'s form.
pub fn decode_messages(mut body: &[u8]) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len: [u8; 4] = body
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("truncated message length")?;
        let len = u32::from_be_bytes(len) as usize;
        let bytes = body.get(4..4 + len).ok_or("truncated message")?;
        out.push(Message::parse_from_bytes(bytes).map_err(|e| e.to_string())?);
        body = &body[4 + len..];
    }
    Ok(out)
}

struct Member {
    node: RawNode<MetaLog>,
    settings: MemberSettings,
    runtime: tokio::runtime::Handle,
    state: watch::Sender<MemberState>,
    committed: watch::Sender<Committed>,
    /// Proposals waiting for their entry: (index, term, reply).
    pending: Vec<(u64, u64, Reply)>,
}

/// Starts the raft thread of member `settings.id` over `log`.
pub fn spawn(
    settings: MemberSettings,
    log: MetaLog,
    runtime: tokio::runtime::Handle,
) -> Result<(MemberHandle, JoinHandle<()>), String> {
    let applied = log.snapshot_index();
    let committed = Committed {
        index: applied,
        data: Arc::new(log.snapshot_data().to_vec()),
    };
    let config = Config {
        id: settings.id,
        election_tick: settings.election_ticks,
        heartbeat_tick: (settings.election_ticks / 5).max(1),
        applied,
        pre_vote: true,
        check_quorum: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 64,
        ..Config::default()
    };
    let node = RawNode::new(&config, log, &zankv_raft_tracing::logger())
        .map_err(|e| format!("cannot start PD's raft node: {e}"))?;
    let (tx, rx) = sync_channel(QUEUE);
    let (state_tx, state) = watch::channel(MemberState::default());
    let (committed_tx, committed_rx) = watch::channel(committed);
    let member = Member {
        node,
        settings,
        runtime,
        state: state_tx,
        committed: committed_tx,
        pending: Vec::new(),
    };
    let id = member.settings.id;
    let thread = std::thread::Builder::new()
        .name("pd-raft".into())
        .spawn(move || member.run(rx))
        .map_err(|e| format!("cannot start PD's raft thread: {e}"))?;
    Ok((
        MemberHandle {
            id,
            tx,
            state,
            committed: committed_rx,
        },
        thread,
    ))
}

impl Member {
    fn run(mut self, rx: Receiver<Input>) {
        let mut next_tick = Instant::now() + self.settings.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Input::Step(messages)) => {
                    for m in messages {
                        // Stale or misaddressed messages are rejected by raft-rs itself.
                        let _ = self.node.step(m);
                    }
                }
                Ok(Input::Propose { data, reply }) => self.propose(data, reply),
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.settings.tick;
            }
            if let Err(e) = self.ready() {
                // The log cannot be written: this member must not go on acknowledging.
                tracing::error!(error = %e, "PD's raft log cannot be written; the raft thread stops");
                break;
            }
            self.publish_state();
        }
        for (_, _, reply) in self.pending.drain(..) {
            let _ = reply.send(Err("E_FAILED_ON_NOT_LEADER: PD is stopping".into()));
        }
        info!("PD raft thread stopped");
    }

    fn propose(&mut self, data: Vec<u8>, reply: SyncSender<Result<(), String>>) {
        if !self.state.borrow().leading {
            let leader = self.node.raft.leader_id;
            let _ = reply.send(Err(format!(
                "E_FAILED_ON_NOT_LEADER: this PD member does not lead (leader: {leader})"
            )));
            return;
        }
        match self.node.propose(Vec::new(), data) {
            Ok(()) => {
                let index = self.node.raft.raft_log.last_index();
                let term = self.node.raft.term;
                self.pending.push((index, term, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(format!(
                    "E_FAILED_ON_NOT_LEADER: proposal dropped: {e}"
                )));
            }
        }
    }

    fn publish_state(&mut self) {
        let raft = &self.node.raft;
        let leader = raft.state == StateRole::Leader;
        // Leading means the no-op of this term is applied: everything earlier is applied.
        let applied_term = raft.raft_log.term(raft.raft_log.applied).unwrap_or(0);
        let state = MemberState {
            leader: raft.leader_id,
            leading: leader && applied_term == raft.term,
            term: raft.term,
        };
        if !leader && !self.pending.is_empty() {
            for (_, _, reply) in self.pending.drain(..) {
                let _ = reply.send(Err(
                    "E_FAILED_ON_NOT_LEADER: leadership was lost before the change committed; it may still be".into(),
                ));
            }
        }
        let before = *self.state.borrow();
        if before != state {
            if before.leader != state.leader {
                info!(
                    leader = state.leader,
                    term = state.term,
                    "PD leader changed"
                );
            }
            self.state.send_replace(state);
        }
    }

    fn send(&self, messages: Vec<Message>) {
        let mut by_member: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for m in messages {
            by_member.entry(m.to).or_default().push(m);
        }
        for (to, batch) in by_member {
            let Some(addr) = self.settings.members.get(&to).copied() else {
                continue;
            };
            let body = encode_messages(&batch);
            let token = self.settings.token.clone();
            self.runtime.spawn(async move {
                let sent = zankv_pd_api::client::call(
                    addr,
                    "POST",
                    "/raft/messages",
                    Some(body),
                    token.as_ref().map(Secret::expose),
                    SEND_TIMEOUT,
                )
                .await;
                if let Err(e) = sent {
                    tracing::debug!(to, error = %e, "raft messages to a PD member lost");
                }
            });
        }
    }

    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>) {
        for e in entries {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                self.committed.send_replace(Committed {
                    index: e.index,
                    data: Arc::new(e.data.to_vec()),
                });
            }
            let (index, term) = (e.index, e.term);
            self.pending.retain(|(i, t, reply)| {
                if *i > index {
                    return true;
                }
                let result = if *i == index && *t == term {
                    Ok(())
                } else {
                    Err("E_FAILED_ON_NOT_LEADER: another leader's entry took this change's place; it was not applied".into())
                };
                let _ = reply.send(result);
                false
            });
        }
    }

    fn ready(&mut self) -> Result<(), String> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        self.send(rd.take_messages());
        let mut changed = false;
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.committed.send_replace(Committed {
                index: snap.get_metadata().index,
                data: Arc::new(snap.data.to_vec()),
            });
            self.node.mut_store().apply_snapshot(snap);
            changed = true;
        }
        let committed = rd.take_committed_entries();
        if !rd.entries().is_empty() {
            self.node.mut_store().append(rd.entries());
            changed = true;
        }
        if let Some(hs) = rd.hs() {
            self.node.mut_store().set_hard_state(hs.clone());
            changed = true;
        }
        if changed {
            self.node.store().persist()?;
        }
        self.apply(committed);
        self.send(rd.take_persisted_messages());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.node.store().hard_state().clone();
            hs.commit = commit;
            self.node.mut_store().set_hard_state(hs);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.node.advance_apply();
        // Compact everything applied into the snapshot: the log holds only what is not.
        let applied = self.node.raft.raft_log.applied;
        if applied > self.node.store().snapshot_index() {
            let data = self.committed.borrow().data.to_vec();
            self.node.mut_store().compact(applied, data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let a = Message {
            to: 2,
            term: 7,
            ..Default::default()
        };
        let b = Message {
            to: 3,
            ..Default::default()
        };
        let body = encode_messages(&[a.clone(), b.clone()]);
        assert_eq!(decode_messages(&body).unwrap(), vec![a, b]);
        assert!(decode_messages(&body[..body.len() - 1]).is_err());
        assert!(decode_messages(&[0, 0, 0, 9, 1]).is_err());
        assert!(decode_messages(&[]).unwrap().is_empty());
    }
}

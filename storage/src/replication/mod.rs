//! Replication of a partition by its own raft group (raft-rs).
//!
//! - [`log_store`]: one group's raft log, hard state and snapshot metadata, kept in memory
//!   for raft-rs and persisted as write operations on the node's shared raft-log engine;
//! - [`peer`]: one replica of one partition around raft-rs `RawNode`: a pure state machine
//!   (no IO, no clock: time enters as ticks) whose `Ready` handling is split so that a store
//!   loop can persist the output of every group in one batch with one fsync.
//!
//! What is not here yet (see the replication issue): the store loop driving all peers of a
//! node, the transport between nodes, snapshots as RocksDB checkpoints, ReadIndex reads and
//! membership operations.

pub mod log_store;
pub mod peer;
pub mod store;
pub mod transport;

#[cfg(test)]
mod sim;

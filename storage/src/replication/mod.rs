//! Replication of a partition by its own raft group (raft-rs).
//!
//! - [`log_store`]: one group's raft log, hard state and snapshot metadata, kept in memory
//!   for raft-rs and persisted as write operations on the node's shared raft-log engine;
//! - [`peer`]: one replica of one partition around raft-rs `RawNode`: a pure state machine
//!   (no IO, no clock: time enters as ticks) whose `Ready` handling is split so that a store
//!   loop can persist the output of every group in one batch with one fsync;
//! - [`store`]: every peer of a node, persisted with one batch and one fsync per iteration;
//! - [`membership`]: decisions for adding, promoting and removing replicas and moving
//!   leadership;
//! - [`store_loop`]: the thread that drives the store with real time, the transport and the
//!   partition workers, and turns client batches into proposals and ReadIndex reads;
//!   [`watches`] and [`blocking`]: the WATCHed keys and the clients blocked in BLPOP and
//!   its kin, in the groups this node leads, which the store loop owns;
//! - [`transport`]: batched raft messages between nodes; [`snapshot`]: partition
//!   checkpoints streamed to lagging followers and swapped in there. (raft-rs's logs go to
//!   `tracing` through the `zankv-raft-tracing` crate.)

pub mod blocking;
pub mod log_store;
pub mod membership;
pub mod peer;
pub mod scripts;
pub mod snapshot;
pub mod store;
pub mod store_loop;
pub mod transport;
pub mod watches;

#[cfg(test)]
mod sim;

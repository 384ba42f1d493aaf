//! zankv storage node: executes Redis commands on RocksDB.
//!
//! Layers, bottom up:
//! - [`engine`]: the narrow storage interface (RocksDB and in-memory implementations);
//! - [`keys`] and [`records`]: the on-disk layout;
//! - [`data`]: command execution on a view (reads) or a write transaction (writes);
//! - [`change`]: deterministic changes, what writes become before they are applied;
//! - [`partition`]: a partition's state machine (apply changes with their applied index,
//!   answer reads);
//! - [`worker`]: the thread that owns a partition and group-commits its writes;
//! - [`server`]: the RESP front end; [`node`]: wiring; [`config`]: settings.

pub mod change;
pub mod config;
pub mod data;
pub mod engine;
pub mod keys;
pub mod node;
pub mod node_stats;
pub mod partition;
pub mod records;
pub mod replication;
pub mod server;
pub mod worker;

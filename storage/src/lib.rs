//! zankv storage node: executes Redis commands on RocksDB.
//!
//! Layers, bottom up:
//! - [`engine`]: the narrow storage interface (RocksDB and in-memory implementations);
//! - [`keys`] and [`records`]: the on-disk layout;
//! - [`data`]: command execution on a view (reads) or a write transaction (writes);
//! - [`change`]: deterministic changes, what writes become before they are applied;
//! - [`partition`]: a partition's state machine (apply changes with their applied index,
//!   answer reads);
//! - [`replication`]: raft groups (peers, log, store loop, transport);
//! - [`worker`]: a partition's worker, which applies its committed entries and runs reads
//!   at linearizable positions; [`apply_pool`]: the threads workers run on;
//! - [`routing`]: which partition a command belongs to; [`replicas`]: opening hosted
//!   partitions and starting their workers; [`hosting`]: hosting and deleting replicas at
//!   run time; [`pd_link`]: heartbeats to PD and applying its catalog;
//! - [`server`]: the RESP and HTTP front ends; [`node`]: wiring; [`config`]: settings.

pub mod apply_pool;
pub mod change;
pub mod clock;
pub mod config;
pub mod data;
pub mod engine;
pub mod events;
pub mod hosting;
pub mod keys;
pub mod node;
pub mod node_stats;
pub mod partition;
pub mod pd_link;
pub mod records;
pub mod replicas;
pub mod replication;
pub mod routing;
pub mod script;
pub mod server;
pub mod worker;

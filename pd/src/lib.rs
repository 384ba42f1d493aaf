//! The zankv placement driver (PD): the cluster's metadata (namespaces, storage nodes, where
//! each partition was created), the placement of new partitions, the convergence of storage
//! nodes to it, and the routing tables smart clients and proxies read.
//!
//! - [`meta`]: the durable metadata (one file replaced atomically, or [`replication`]:
//!   replicated by raft across PD's members);
//! - [`placement`]: where a new namespace's partitions go (pure);
//! - [`schedule`]: checkers and balancers that turn a cluster snapshot into operators
//!   (pure); [`command`]: the admin calls those operators make to storage nodes;
//! - [`cluster`]: the model of the cluster, driven by heartbeats, API calls and time (pure,
//!   apart from persisting metadata);
//! - [`server`]: the thread that owns the model and sends commands to storage nodes;
//! - [`api`]: the HTTP API; [`metrics`]: Prometheus metrics; [`config`]: settings;
//! - [`proxies`]: the live proxies, which share Redis Cluster's slots for cluster clients;
//! - [`node`]: wiring, start and shutdown.

pub mod api;
pub mod cluster;
pub mod command;
pub mod config;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod proxies;
pub mod replication;
pub mod schedule;
pub mod server;

//! Network front ends of the storage node. Only this module touches client sockets (the
//! raft transport has its own in `replication`).

pub mod admin;
pub mod http;
pub mod resp;
pub mod scripting;
pub mod transaction;

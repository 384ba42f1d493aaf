//! PD's metadata replicated by raft across its members (`members` in the configuration).
//!
//! - [`log`]: the raft log and its durable file; every entry is a whole metadata value and
//!   the log is compacted into a snapshot of the applied metadata after each apply;
//! - [`member`]: the raft thread of one member (ticks, messages over HTTP, proposals,
//!   persistence), publishing who leads and the committed metadata.
//!
//! The leader's cluster owner proposes each metadata change and waits for it to commit
//! (`crate::meta::MetaStore::update`); followers take in what is committed and answer
//! reads of it, and tell callers of anything else which member leads.

pub mod log;
pub mod member;

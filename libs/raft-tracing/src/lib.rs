//! raft-rs logs through `slog`; this drain forwards its records to `tracing` (target
//! `raft`), so a process has one log stream and one filter. raft-rs's info records
//! (elections, configuration switches) become debug: per-group chatter would drown a
//! storage node hosting many partitions; the storage node's store loop and PD log leader
//! changes themselves.

use std::fmt::Write as _;

use slog::{Drain, Level, Never, OwnedKVList, Record, KV};

/// A slog drain that writes to tracing.
struct TracingDrain;

/// Collects a record's key-value pairs as ` key=value` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), Never> {
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{}", kv.0),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{}", kv.0),
            Level::Info | Level::Debug => tracing::debug!(target: "raft", "{msg}{}", kv.0),
            Level::Trace => tracing::trace!(target: "raft", "{msg}{}", kv.0),
        }
        Ok(())
    }
}

/// The logger handed to raft-rs.
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}

//! HyperLogLog commands (PFADD, PFCOUNT, PFMERGE): typed forms, parsers and specs.
//!
//! Every one of them writes: PFCOUNT of one key stores the cardinality it computed in the
//! value's header, as Redis does (and propagates to its replicas), so that the value stays
//! byte for byte Redis's. The sketches themselves are the storage
//! node's (`zankv_storage::data::hll`).

use bytes::Bytes;

use crate::spec::{spec, Access, Combine, CommandSpec, Fanout, ALL_KEYS, NO_KEYS, ONE_KEY};

const G: &str = "hyperloglog";

/// Specs of the HyperLogLog family.
pub static SPECS: &[CommandSpec] = &[
    spec(
        "pfadd",
        -2,
        Access::Write,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        &["write", "hyperloglog", "fast"],
        G,
        "2.8.9",
        "Adds the specified elements to the specified HyperLogLog.",
    ),
    spec(
        "pfcount",
        -2,
        Access::Write,
        &["readonly"],
        ALL_KEYS,
        &["read", "hyperloglog", "slow"],
        G,
        "2.8.9",
        "Return the approximated cardinality of the set(s) observed by the HyperLogLog at key(s).",
    ),
    spec(
        "pfmerge",
        -2,
        Access::Write,
        &["write", "denyoom"],
        ALL_KEYS,
        &["write", "hyperloglog", "slow"],
        G,
        "2.8.9",
        "Merge N different HyperLogLogs into a single one.",
    ),
    spec(
        "pfdebug",
        3,
        Access::Write,
        &["write", "denyoom", "admin"],
        (2, 2, 1),
        &["write", "hyperloglog", "admin", "slow", "dangerous"],
        G,
        "2.8.9",
        "Internal commands for debugging HyperLogLog values",
    ),
    spec(
        "pfselftest",
        1,
        Access::Write,
        &["admin"],
        NO_KEYS,
        &["hyperloglog", "admin", "slow", "dangerous"],
        G,
        "2.8.9",
        "An internal command for testing HyperLogLog values",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
];

/// A parsed HyperLogLog command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HllCommand {
    /// `PFADD key [element ...]`
    Add(Bytes, Vec<Bytes>),
    /// `PFCOUNT key [key ...]`
    Count(Vec<Bytes>),
    /// `PFMERGE destkey [sourcekey ...]` (the destination is merged too).
    Merge(Bytes, Vec<Bytes>),
    /// `PFDEBUG GETREG|DECODE|ENCODING|TODENSE key`: the subcommand as sent (checked after
    /// the key, as Redis does), and the key.
    Debug(Bytes, Bytes),
    /// `PFSELFTEST`: checks the sketch code on generated data.
    SelfTest,
}

impl HllCommand {
    /// Parses a HyperLogLog command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Self {
        match name {
            "pfadd" => HllCommand::Add(args[0].clone(), args[1..].to_vec()),
            "pfcount" => HllCommand::Count(args.to_vec()),
            "pfmerge" => HllCommand::Merge(args[0].clone(), args[1..].to_vec()),
            "pfdebug" => HllCommand::Debug(args[0].clone(), args[1].clone()),
            "pfselftest" => HllCommand::SelfTest,
            _ => unreachable!("hyperloglog family dispatched an unknown name: {name}"),
        }
    }
}

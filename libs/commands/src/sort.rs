//! SORT and SORT_RO: typed form, parser and specs.
//!
//! BY and GET patterns name other keys (`weight_*` with an element for `*`, `obj_*->field`
//! for a hash field). Those keys must be in the sorted key's partition; which patterns can
//! only form such keys is the storage node's routing to decide ([`pattern_keys`] lists them).

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::parse_i64;
use crate::spec::{spec, Access, CommandSpec, Movable, ONE_KEY};

/// Specs of the SORT family.
pub static SPECS: &[CommandSpec] = &[
    spec(
        "sort",
        -2,
        Access::Write,
        &["write", "denyoom", "movablekeys"],
        ONE_KEY,
        &["write", "set", "sortedset", "list", "slow", "dangerous"],
        "generic",
        "1.0.0",
        "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.",
    )
    .with_movable(Movable::SortStore),
    spec(
        "sort_ro",
        -2,
        Access::Read,
        &["readonly", "movablekeys"],
        ONE_KEY,
        &["read", "set", "sortedset", "list", "slow", "dangerous"],
        "generic",
        "7.0.0",
        "Returns the sorted elements of a list, a set, or a sorted set.",
    ),
];

/// A parsed SORT or SORT_RO.
#[derive(Debug, Clone, PartialEq)]
pub struct SortCommand {
    /// The list, set or sorted set to sort.
    pub key: Bytes,
    /// The last BY pattern, when it has a `*`.
    pub by: Option<Bytes>,
    /// Some BY pattern had no `*`: keep the elements' own order.
    pub dont_sort: bool,
    /// LIMIT offset count (defaults 0, -1).
    pub limit: (i64, i64),
    /// GET patterns, in order (`#` is the element itself).
    pub gets: Vec<Bytes>,
    /// DESC.
    pub desc: bool,
    /// ALPHA: compare as strings rather than numbers.
    pub alpha: bool,
    /// STORE destination (SORT only).
    pub store: Option<Bytes>,
}

/// Where SORT's (last) `STORE destination` is, reading the options as Redis's key
/// extraction does (LIMIT skips two arguments, GET and BY one).
pub fn store_position(argv: &[Bytes]) -> Option<usize> {
    let mut found = None;
    let mut i = 2;
    while i < argv.len() {
        let a = &argv[i];
        if a.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"get") || a.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"store") && i + 1 < argv.len() {
            found = Some(i + 1);
        }
        i += 1;
    }
    found
}

/// Which option a pattern came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternOption {
    /// BY.
    By,
    /// GET.
    Get,
}

/// The patterns of a request of `spec` (`argv` with the name first) that make it read keys
/// formed from its elements: the BY and GET patterns with a `*` of SORT and SORT_RO (a GET
/// of `#` reads the element; a pattern without `*` reads nothing); none for other commands.
pub fn pattern_keys<'a>(spec: &CommandSpec, argv: &'a [Bytes]) -> Vec<(PatternOption, &'a Bytes)> {
    if SPECS.iter().any(|s| std::ptr::eq(s, spec)) {
        patterns(argv)
    } else {
        Vec::new()
    }
}

fn patterns(argv: &[Bytes]) -> Vec<(PatternOption, &Bytes)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i < argv.len() {
        let a = &argv[i];
        if a.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if let Some(p) = argv.get(i + 1) {
            let which = if a.eq_ignore_ascii_case(b"by") {
                Some(PatternOption::By)
            } else if a.eq_ignore_ascii_case(b"get") {
                Some(PatternOption::Get)
            } else {
                None
            };
            if let Some(which) = which {
                if p.contains(&b'*') {
                    out.push((which, p));
                }
                i += 1;
            }
        }
        i += 1;
    }
    out
}

impl SortCommand {
    /// Parses SORT (`read_only` false) or SORT_RO; arity has been checked.
    pub fn parse(args: &[Bytes], read_only: bool) -> Result<Self, CommandError> {
        let mut cmd = SortCommand {
            key: args[0].clone(),
            by: None,
            dont_sort: false,
            limit: (0, -1),
            gets: Vec::new(),
            desc: false,
            alpha: false,
            store: None,
        };
        let mut j = 1;
        while j < args.len() {
            let opt = &args[j];
            let left = args.len() - j - 1;
            if opt.eq_ignore_ascii_case(b"asc") {
                cmd.desc = false;
            } else if opt.eq_ignore_ascii_case(b"desc") {
                cmd.desc = true;
            } else if opt.eq_ignore_ascii_case(b"alpha") {
                cmd.alpha = true;
            } else if opt.eq_ignore_ascii_case(b"limit") && left >= 2 {
                let start = parse_i64(&args[j + 1]).ok_or(CommandError::NotInteger)?;
                let count = parse_i64(&args[j + 2]).ok_or(CommandError::NotInteger)?;
                cmd.limit = (start, count);
                j += 2;
            } else if !read_only && opt.eq_ignore_ascii_case(b"store") && left >= 1 {
                cmd.store = Some(args[j + 1].clone());
                j += 1;
            } else if opt.eq_ignore_ascii_case(b"by") && left >= 1 {
                // The last BY names the key to sort by; any BY without `*` (whenever
                // given) turns sorting off, as in Redis.
                let pattern = &args[j + 1];
                let real = pattern.contains(&b'*');
                cmd.by = real.then(|| pattern.clone());
                cmd.dont_sort |= !real;
                j += 1;
            } else if opt.eq_ignore_ascii_case(b"get") && left >= 1 {
                cmd.gets.push(args[j + 1].clone());
                j += 1;
            } else {
                return Err(CommandError::Syntax);
            }
            j += 1;
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv;

    #[test]
    fn store_and_patterns_are_found_as_redis_finds_them() {
        let a = argv(&["sort", "k", "limit", "0", "store", "get", "x", "store", "d"]);
        assert_eq!(store_position(&a), Some(8));
        let a = argv(&["sort", "k", "by", "store", "get", "#"]);
        assert_eq!(store_position(&a), None);
        let a = argv(&[
            "sort", "k", "by", "w_*", "get", "#", "get", "o_*->f", "by", "nosort",
        ]);
        let found: Vec<_> = patterns(&a)
            .into_iter()
            .map(|(o, p)| (o, p.clone()))
            .collect();
        assert_eq!(
            found,
            vec![
                (PatternOption::By, Bytes::from("w_*")),
                (PatternOption::Get, Bytes::from("o_*->f"))
            ]
        );
    }
}

//! CONFIG GET/SET over every parameter Redis 7.0 has ([`params::PARAMS`]), with Redis's
//! validation, normalisation and error texts.
//!
//! A process owns one [`Config`]: the values CONFIG GET shows. It starts from Redis's
//! defaults with the process's own [`Override`]s on top (its port, its limits, what its
//! durability really is); an override marked `fixed` is a setting zankv cannot change at run
//! time, and CONFIG SET refuses it as Redis refuses an immutable one. Every other parameter
//! is validated exactly as Redis does and stored, and [`Config::set`] hands the process the
//! changes so it can apply the few that take effect (docs/proxy.md lists them).
//!
//! Invariants: a stored value is always in the form CONFIG GET of redis-server would show
//! after the same CONFIG SET (`1kb` is stored `1024`, `YES` is `yes`); a CONFIG SET with
//! any bad pair changes nothing.

mod params;

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::{parse_double, parse_i64};
use crate::pattern::glob_match;
use crate::reply::Reply;

pub use params::PARAMS;

/// What values a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `yes` or `no`.
    Bool,
    /// One of these words (case-insensitive).
    Enum(&'static [&'static str]),
    /// Any of `default save nosave now force` (SHUTDOWN's options for a signal).
    ShutdownFlags,
    /// An integer (`string2ll` rules) within these bounds.
    Int {
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
    },
    /// A byte count with an optional unit (`b`, `k`, `kb`, `m`, `mb`, `g`, `gb`).
    Memory {
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
    },
    /// A byte count, or a percentage of `maxmemory` written `N%`.
    MemoryOrPercent,
    /// Any text.
    Str,
    /// A host name: letters, digits, hyphens and dots.
    Hostname,
    /// `proc-title-template`: text with `{variable}`s Redis knows.
    ProcTitleTemplate,
    /// `save`: pairs of seconds (at least 1) and changes.
    Save,
    /// `client-output-buffer-limit`: `class hard soft seconds` groups.
    ClientOutputBufferLimit,
    /// `notify-keyspace-events`: event class letters.
    NotifyKeyspaceEvents,
    /// `oom-score-adj-values`: three integers in -2000..=2000.
    OomScoreAdjValues,
    /// `latency-tracking-info-percentiles`: numbers in 0..=100.
    Percentiles,
}

/// Whether CONFIG SET may change a parameter in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Settable.
    Mutable,
    /// Set at start only.
    Immutable,
    /// Settable only with `enable-protected-configs`, which is off.
    Protected,
}

/// One of Redis's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Its older name, answering to the same value.
    pub alias: Option<&'static str>,
    /// What values it takes.
    pub kind: Kind,
    /// Redis's default, as CONFIG GET shows it.
    pub default: &'static str,
    /// Whether CONFIG SET may change it.
    pub mutability: Mutability,
}

/// A process's own value for a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The parameter's name.
    pub name: &'static str,
    /// Its value in this process.
    pub value: String,
    /// Whether the process cannot change it at run time (CONFIG SET answers as for an
    /// immutable parameter).
    pub fixed: bool,
}

impl Override {
    /// A value CONFIG SET may change.
    pub fn settable(name: &'static str, value: impl ToString) -> Override {
        Override {
            name,
            value: value.to_string(),
            fixed: false,
        }
    }

    /// A value fixed while the process runs.
    pub fn fixed(name: &'static str, value: impl ToString) -> Override {
        Override {
            name,
            value: value.to_string(),
            fixed: true,
        }
    }
}

/// What is true of a zankv process (proxy or storage node), shown by CONFIG in place of
/// Redis's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFacts {
    /// The address clients connect to.
    pub bind: String,
    /// Its port.
    pub port: u16,
    /// Most simultaneous clients.
    pub max_clients: usize,
    /// Largest bulk string accepted.
    pub max_bulk_len: usize,
    /// Largest unparsed input a client may accumulate.
    pub max_query_buffer: usize,
    /// Whether clients must AUTH (the password itself is never shown).
    pub password_set: bool,
    /// The process's working directory.
    pub dir: String,
}

/// The overrides every zankv process shares: its listening address and limits, fixed while
/// it runs; a masked `requirepass`; and durability as it really is (every acknowledged
/// write is in an fsynced raft log, no snapshot schedule), which CONFIG SET may overwrite
/// in the table without changing it.
pub fn process_overrides(facts: &ProcessFacts) -> Vec<Override> {
    vec![
        Override::fixed("bind", &facts.bind),
        Override::fixed("port", facts.port),
        Override::fixed("maxclients", facts.max_clients),
        Override::fixed("proto-max-bulk-len", facts.max_bulk_len),
        Override::fixed("client-query-buffer-limit", facts.max_query_buffer),
        Override::fixed(
            "requirepass",
            if facts.password_set { "********" } else { "" },
        ),
        Override::fixed("databases", 1),
        Override::fixed("daemonize", "no"),
        Override::fixed("tls-port", 0),
        Override::settable("dir", &facts.dir),
        Override::settable("appendonly", "yes"),
        Override::settable("appendfsync", "always"),
        Override::settable("save", ""),
    ]
}

/// One name CONFIG knows: a parameter's name or its alias.
struct Name {
    name: &'static str,
    param: usize,
}

/// The names in the order CONFIG GET lists them: each parameter, then its alias.
fn names() -> impl Iterator<Item = Name> {
    PARAMS.iter().enumerate().flat_map(|(param, p)| {
        std::iter::once(Name {
            name: p.name,
            param,
        })
        .chain(p.alias.map(|name| Name { name, param }))
    })
}

fn lookup(name: &[u8]) -> Option<Name> {
    names().find(|n| n.name.as_bytes().eq_ignore_ascii_case(name))
}

/// A process's configuration values, as CONFIG shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The value of each of [`PARAMS`], by index.
    values: Vec<String>,
    /// Whether the process fixed each one.
    fixed: Vec<bool>,
}

impl Config {
    /// Redis's defaults with `overrides` on top.
    ///
    /// # Panics
    /// If an override names no parameter (a programming error; a test covers every
    /// process's list).
    pub fn new(overrides: &[Override]) -> Config {
        let mut config = Config {
            values: PARAMS.iter().map(|p| p.default.to_string()).collect(),
            fixed: vec![false; PARAMS.len()],
        };
        for o in overrides {
            let Some(n) = lookup(o.name.as_bytes()) else {
                panic!("no parameter named {}", o.name);
            };
            config.values[n.param] = o.value.clone();
            config.fixed[n.param] |= o.fixed;
        }
        config
    }

    /// The value of `name` (a parameter or alias name).
    ///
    /// # Panics
    /// If no parameter has that name.
    pub fn value(&self, name: &str) -> &str {
        let n = lookup(name.as_bytes()).unwrap_or_else(|| panic!("no parameter named {name}"));
        &self.values[n.param]
    }

    /// CONFIG GET: every name matching one of `patterns` (glob, case-insensitive) with its
    /// value. A pattern without glob characters names one parameter and is echoed as sent.
    pub fn get(&self, patterns: &[Bytes]) -> Reply {
        let mut out: Vec<(Bytes, usize)> = Vec::new();
        let push = |name: Bytes, param: usize, out: &mut Vec<(Bytes, usize)>| {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, param));
            }
        };
        for pattern in patterns {
            if !pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                if let Some(n) = lookup(pattern) {
                    push(pattern.clone(), n.param, &mut out);
                }
                continue;
            }
            let lowered = pattern.to_ascii_lowercase();
            for n in names().filter(|n| glob_match(&lowered, n.name.as_bytes())) {
                push(Bytes::from_static(n.name.as_bytes()), n.param, &mut out);
            }
        }
        Reply::Map(
            out.into_iter()
                .map(|(name, param)| (Reply::Bulk(name), Reply::bulk(self.values[param].clone())))
                .collect(),
        )
    }

    /// CONFIG SET: checks every pair as Redis does before any applies (first every name:
    /// unknown, immutable, protected, given twice; then every value), stores the new values
    /// and answers them by parameter name (an alias's change is reported under its
    /// parameter's name), in order.
    pub fn set(
        &mut self,
        pairs: &[(Bytes, Bytes)],
    ) -> Result<Vec<(&'static str, String)>, CommandError> {
        let mut named: Vec<Name> = Vec::with_capacity(pairs.len());
        for (name, _) in pairs {
            let shown = || String::from_utf8_lossy(name).into_owned();
            let Some(n) = lookup(name) else {
                return Err(CommandError::ConfigUnknownOption(shown()));
            };
            let param = &PARAMS[n.param];
            if param.mutability == Mutability::Immutable || self.fixed[n.param] {
                return Err(CommandError::ConfigSetFailed(
                    shown(),
                    "can't set immutable config".into(),
                ));
            }
            if param.mutability == Mutability::Protected {
                return Err(CommandError::ConfigSetFailed(
                    shown(),
                    "can't set protected config".into(),
                ));
            }
            // Redis tells a name from its alias here: `a-alias 1 a 2` passes.
            if named.iter().any(|m| m.name == n.name) {
                return Err(CommandError::ConfigSetFailed(
                    n.name.to_string(),
                    "duplicate parameter".into(),
                ));
            }
            named.push(n);
        }
        let mut out = Vec::with_capacity(pairs.len());
        for ((_, value), n) in pairs.iter().zip(&named) {
            let param = &PARAMS[n.param];
            let normalised = normalise(param, value, &self.values[n.param])
                .map_err(|why| CommandError::ConfigSetFailed(n.name.to_string(), why))?;
            out.push((param.name, normalised));
        }
        for ((_, value), n) in out.iter().zip(&named) {
            self.values[n.param] = value.clone();
        }
        Ok(out)
    }
}

/// `value` in the form CONFIG GET shows for `param` (whose value is `current`), or why Redis
/// refuses it.
fn normalise(param: &Param, value: &[u8], current: &str) -> Result<String, String> {
    let text = String::from_utf8_lossy(value);
    match param.kind {
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            v @ ("yes" | "no") => Ok(v.to_string()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        },
        Kind::Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(&text))
            .map(|w| w.to_string())
            .ok_or_else(|| one_of(words)),
        Kind::ShutdownFlags => shutdown_flags(&text),
        Kind::Int { min, max } => {
            let v = parse_i64(value).ok_or("argument couldn't be parsed into an integer")?;
            let v = within(i128::from(v), min, max)?;
            Ok(match param.name {
                // Redis keeps hz within 1..=500 whatever is set.
                "hz" => v.clamp(1, 500).to_string(),
                _ => v.to_string(),
            })
        }
        Kind::Memory { min, max } => {
            let v = parse_memory(value).ok_or("argument must be a memory value")?;
            let v = within(i128::from(v), min, max)?;
            Ok(match param.name {
                // Redis never keeps a backlog under 16 KiB.
                "repl-backlog-size" => v.max(16 * 1024).to_string(),
                _ => v.to_string(),
            })
        }
        Kind::MemoryOrPercent => memory_or_percent(value),
        Kind::Str => Ok(text.into_owned()),
        Kind::Hostname => hostname(&text),
        Kind::ProcTitleTemplate => proc_title_template(&text),
        Kind::Save => save(&text),
        Kind::ClientOutputBufferLimit => client_output_buffer_limit(&text, current),
        Kind::NotifyKeyspaceEvents => keyspace_events(&text),
        Kind::OomScoreAdjValues => oom_score_adj_values(&text),
        Kind::Percentiles => percentiles(&text),
    }
}

fn one_of(words: &[&str]) -> String {
    format!(
        "argument(s) must be one of the following: {}",
        words.join(", ")
    )
}

fn within(v: i128, min: i128, max: i128) -> Result<i128, String> {
    if v < min || v > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(v)
}

/// A byte count as Redis's `memtoull` reads it: digits (none is 0; too many saturate),
/// then an optional unit; no sign, no space, no fraction.
pub fn parse_memory(value: &[u8]) -> Option<u64> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    let unit = match value[digits..].to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    let n = value[..digits].iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(n.saturating_mul(unit))
}

fn memory_or_percent(value: &[u8]) -> Result<String, String> {
    const BAD: &str = "argument must be a memory or percent value";
    if let Some(number) = value.strip_suffix(b"%") {
        let pct = parse_i64(number).filter(|p| *p >= 0).ok_or(BAD)?;
        if pct > 100 {
            return Err("percentage argument must be less or equal to 100".into());
        }
        return Ok(if pct == 0 {
            "0".into()
        } else {
            format!("{pct}%")
        });
    }
    let v = parse_memory(value).ok_or(BAD)?;
    // Redis keeps a percentage as a negative byte count: a byte count past i64::MAX reads
    // back as one.
    match v as i64 {
        bytes if bytes >= 0 => Ok(bytes.to_string()),
        negative => match negative.unsigned_abs() {
            pct if pct > 100 => Err("percentage argument must be less or equal to 100".into()),
            pct => Ok(format!("{pct}%")),
        },
    }
}

fn hostname(text: &str) -> Result<String, String> {
    if text.len() > 255 {
        return Err("Hostnames must be less than 256 characters".into());
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err("Hostnames may only contain alphanumeric characters, hyphens or dots".into());
    }
    Ok(text.to_string())
}

/// The variables a process title template may use, and whether each expands to text in a
/// zankv process (the check below needs only that).
const TITLE_VARIABLES: [(&str, bool); 7] = [
    ("title", false),
    ("listen-addr", true),
    ("server-mode", false),
    ("port", true),
    ("tls-port", true),
    ("unixsocket", false),
    ("config-file", false),
];

/// Redis's check of a title template: `{{` and `}}` stand for braces, every `{variable}`
/// must be known, and the title must not be empty (or only spaces) with an empty
/// `{title}`.
fn proc_title_template(text: &str) -> Result<String, String> {
    const BAD: &str = "template format is invalid or contains unknown variables";
    let mut expanded = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '{' if rest.starts_with("{{") => {
                expanded.push('{');
                rest = &rest[2..];
            }
            '}' if rest.starts_with("}}") => {
                expanded.push('}');
                rest = &rest[2..];
            }
            '}' => return Err(BAD.into()),
            '{' => {
                let close = rest.find('}').ok_or(BAD)?;
                let (_, non_empty) = TITLE_VARIABLES
                    .iter()
                    .find(|(name, _)| *name == &rest[1..close])
                    .ok_or(BAD)?;
                if *non_empty {
                    expanded.push('x');
                }
                rest = &rest[close + 1..];
            }
            c => {
                expanded.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if expanded.trim_matches(' ').is_empty() {
        return Err(BAD.into());
    }
    Ok(text.to_string())
}

/// SHUTDOWN's option words, in the order Redis prints them.
const SHUTDOWN_WORDS: [&str; 5] = ["default", "save", "nosave", "now", "force"];

fn shutdown_flags(text: &str) -> Result<String, String> {
    let mut on = [false; 5];
    if text.split_whitespace().next().is_none() {
        return Err(one_of(&SHUTDOWN_WORDS));
    }
    for word in text.split_whitespace() {
        let i = SHUTDOWN_WORDS
            .iter()
            .position(|w| w.eq_ignore_ascii_case(word))
            .ok_or_else(|| one_of(&SHUTDOWN_WORDS))?;
        on[i] = true;
    }
    if on[1] && on[2] {
        return Err("shutdown options SAVE and NOSAVE can't be used simultaneously".into());
    }
    let set: Vec<&str> = (1..5)
        .filter(|&i| on[i])
        .map(|i| SHUTDOWN_WORDS[i])
        .collect();
    Ok(if set.is_empty() {
        "default".into()
    } else {
        set.join(" ")
    })
}

/// C's `strtoll` on a whole token: leading spaces and a sign allowed, nothing after the
/// digits, overflow saturating. `None` when something follows the number.
fn strtoll(token: &str) -> Option<i64> {
    let t = token.trim_start();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0i128, |n, d| {
        (n * 10 + i128::from(d - b'0')).min(i128::from(i64::MAX) + 1)
    });
    let v = if negative { -magnitude } else { magnitude };
    Some(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

fn save(text: &str) -> Result<String, String> {
    const BAD: &str = "Invalid save parameters";
    let tokens = words(text);
    if !tokens.len().is_multiple_of(2) {
        return Err(BAD.into());
    }
    let mut out = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let v = strtoll(token).ok_or(BAD)?;
        let least = if i % 2 == 0 { 1 } else { 0 };
        if v < least {
            return Err(BAD.into());
        }
        out.push(v.to_string());
    }
    Ok(out.join(" "))
}

/// Output buffer classes in the order Redis prints them, and the names CONFIG SET takes.
const BUFFER_CLASSES: [(&str, &[&str]); 3] = [
    ("normal", &["normal"]),
    ("slave", &["slave", "replica"]),
    ("pubsub", &["pubsub"]),
];

/// Redis's default `client-output-buffer-limit`.
const DEFAULT_BUFFER_LIMITS: [[u64; 3]; 3] = [
    [0, 0, 0],
    [256 << 20, 64 << 20, 60],
    [32 << 20, 8 << 20, 60],
];

/// The limits `current` (a stored `client-output-buffer-limit`) holds, by class.
fn buffer_limits(current: &str) -> [[u64; 3]; 3] {
    let mut limits = DEFAULT_BUFFER_LIMITS;
    let words: Vec<&str> = current.split_whitespace().collect();
    for group in words.chunks_exact(4) {
        if let Some(class) = BUFFER_CLASSES.iter().position(|(n, _)| *n == group[0]) {
            for (slot, word) in limits[class].iter_mut().zip(&group[1..]) {
                *slot = word.parse().unwrap_or(*slot);
            }
        }
    }
    limits
}

/// Sets the classes `text` names; the others keep their limits in `current`.
fn client_output_buffer_limit(text: &str, current: &str) -> Result<String, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut limits = buffer_limits(current);
    for group in words.chunks_exact(4) {
        let class = BUFFER_CLASSES
            .iter()
            .position(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(group[0])))
            .ok_or("Invalid client class specified in buffer limit configuration.")?;
        let bad = "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let hard = parse_memory(group[1].as_bytes()).ok_or(bad)?;
        let soft = parse_memory(group[2].as_bytes()).ok_or(bad)?;
        let secs = strtoll(group[3]).filter(|s| *s >= 0).ok_or(bad)?;
        limits[class] = [hard, soft, secs as u64];
    }
    Ok(BUFFER_CLASSES
        .iter()
        .zip(limits)
        .map(|((name, _), [hard, soft, secs])| format!("{name} {hard} {soft} {secs}"))
        .collect::<Vec<_>>()
        .join(" "))
}

fn keyspace_events(text: &str) -> Result<String, String> {
    Ok(crate::notify::text(crate::notify::parse(text)?))
}

/// `text` split at every space as Redis's `sdssplitlen` does: nothing for empty text, and
/// an empty word between two spaces.
fn words(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split(' ').collect()
}

fn oom_score_adj_values(text: &str) -> Result<String, String> {
    let words = words(text);
    if words.len() != 3 {
        return Err("wrong number of arguments".into());
    }
    let values = words
        .iter()
        .map(|w| strtoll(w).filter(|v| (-2000..=2000).contains(v)))
        .collect::<Option<Vec<i64>>>()
        .ok_or("Invalid oom-score-adj-values, elements must be between -2000 and 2000.")?;
    Ok(values
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" "))
}

fn percentiles(text: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for word in words(text) {
        let v = parse_double(word.as_bytes())
            .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
        if !(0.0..=100.0).contains(&v) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                    .into(),
            );
        }
        out.push(fixed_trimmed(v));
    }
    Ok(out.join(" "))
}

/// C's `%f` without its trailing zeros (and without the point when nothing follows it).
fn fixed_trimmed(v: f64) -> String {
    let text = format!("{v:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    fn facts() -> ProcessFacts {
        ProcessFacts {
            bind: "127.0.0.1".into(),
            port: 6380,
            max_clients: 100,
            max_bulk_len: 1 << 20,
            max_query_buffer: 1 << 30,
            password_set: true,
            dir: "/data".into(),
        }
    }

    #[test]
    fn every_name_is_unique_and_every_default_is_valid() {
        let all: Vec<&str> = names().map(|n| n.name).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "names are unique");
        assert_eq!(all.len(), 192, "Redis 7.0 lists 192 names");
        for p in PARAMS
            .iter()
            .filter(|p| p.mutability == Mutability::Mutable)
        {
            assert_eq!(
                normalise(p, p.default.as_bytes(), p.default).as_deref(),
                Ok(p.default),
                "{}'s default reads back as itself",
                p.name
            );
        }
    }

    #[test]
    fn overrides_are_shown_and_fixed_ones_refused() {
        let mut config = Config::new(&process_overrides(&facts()));
        assert_eq!(config.value("port"), "6380");
        assert_eq!(
            config.value("requirepass"),
            "********",
            "never the password"
        );
        assert_eq!(config.value("appendfsync"), "always");
        assert_eq!(
            config.set(&[(b("port"), b("1"))]).unwrap_err().to_string(),
            "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
        );
        assert_eq!(
            config.set(&[(b("appendfsync"), b("No"))]),
            Ok(vec![("appendfsync", "no".to_string())])
        );
    }

    #[test]
    fn a_refused_pair_changes_nothing() {
        let mut config = Config::new(&[]);
        let err = config
            .set(&[(b("hz"), b("50")), (b("maxmemory"), b("1.5gb"))])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"
        );
        assert_eq!(config.value("hz"), "10");
        // An alias and its parameter share one value.
        config
            .set(&[(b("hash-max-ziplist-value"), b("1kb"))])
            .unwrap();
        assert_eq!(config.value("hash-max-listpack-value"), "1024");
    }

    #[test]
    fn values_are_normalised_as_redis_shows_them() {
        assert_eq!(parse_memory(b"5mb"), Some(5 << 20));
        assert_eq!(parse_memory(b"1G"), Some(1_000_000_000));
        assert_eq!(parse_memory(b""), Some(0));
        assert_eq!(parse_memory(b"99999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_memory(b"-1"), None);
        assert_eq!(parse_memory(b"1.5k"), None);
        assert_eq!(keyspace_events("KEA").as_deref(), Ok("AKE"));
        assert_eq!(keyspace_events("g$lshzxetmdnKE").as_deref(), Ok("AKEm"));
        assert_eq!(keyspace_events("KEn").as_deref(), Ok("nKE"));
        assert!(keyspace_events("Q").is_err());
        assert_eq!(save("01 1").as_deref(), Ok("1 1"));
        assert!(save("0 0").is_err());
        assert!(save("3600 1 ").is_err());
        assert_eq!(
            client_output_buffer_limit(
                "replica 1mb 2 3",
                "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
            )
            .as_deref(),
            Ok("normal 0 0 0 slave 1048576 2 3 pubsub 33554432 8388608 60")
        );
        assert_eq!(shutdown_flags("default NOW").as_deref(), Ok("now"));
        assert!(shutdown_flags("save nosave").is_err());
        assert_eq!(percentiles("1e1 99.99999").as_deref(), Ok("10 99.99999"));
        assert_eq!(memory_or_percent(b"10%").as_deref(), Ok("10%"));
        assert_eq!(
            memory_or_percent(b"18446744073709551616").as_deref(),
            Ok("1%")
        );
        assert!(proc_title_template("{title}").is_err());
        assert!(proc_title_template("{nope} x").is_err());
        assert_eq!(
            proc_title_template("{title} {port}").as_deref(),
            Ok("{title} {port}")
        );
    }
}

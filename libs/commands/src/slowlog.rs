//! The slow log (SLOWLOG), as data: a server decides how long a command took; this module
//! keeps the entries and builds the replies exactly as Redis 7.0 does.
//!
//! Invariants: the log holds at most `max_len` entries, newest first, with ids that only
//! grow; an entry keeps at most 32 arguments of at most 128 bytes each, the rest summarised
//! as Redis does.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::reply::Reply;

/// Arguments kept per entry (Redis's SLOWLOG_ENTRY_MAX_ARGC).
const MAX_ARGS: usize = 32;
/// Bytes kept per argument (Redis's SLOWLOG_ENTRY_MAX_STRING).
const MAX_ARG_BYTES: usize = 128;

/// One slow command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: u64,
    unix_secs: u64,
    micros: u64,
    args: Vec<Bytes>,
    client_addr: String,
    client_name: Bytes,
}

/// The slow log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowLog {
    entries: VecDeque<Entry>,
    next_id: u64,
    /// Commands taking at least this many microseconds are logged; negative: none.
    pub slower_than_us: i64,
    /// Most entries kept.
    pub max_len: usize,
}

impl SlowLog {
    /// An empty log with Redis's settings `slowlog-log-slower-than` and `slowlog-max-len`.
    pub fn new(slower_than_us: i64, max_len: usize) -> SlowLog {
        SlowLog {
            entries: VecDeque::new(),
            next_id: 0,
            slower_than_us,
            max_len,
        }
    }

    /// Logs `argv` if it took `took` or longer than the threshold.
    pub fn record(
        &mut self,
        took: Duration,
        argv: &[Bytes],
        client_addr: &str,
        client_name: Option<&Bytes>,
    ) {
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        if self.slower_than_us < 0 || (micros as i128) < i128::from(self.slower_than_us) {
            return;
        }
        let kept = argv.len().min(MAX_ARGS);
        let args = (0..kept)
            .map(|j| {
                if kept != argv.len() && j == kept - 1 {
                    Bytes::from(format!("... ({} more arguments)", argv.len() - kept + 1))
                } else if argv[j].len() > MAX_ARG_BYTES {
                    let mut a = argv[j][..MAX_ARG_BYTES].to_vec();
                    a.extend_from_slice(
                        format!("... ({} more bytes)", argv[j].len() - MAX_ARG_BYTES).as_bytes(),
                    );
                    Bytes::from(a)
                } else {
                    argv[j].clone()
                }
            })
            .collect();
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.entries.push_front(Entry {
            id: self.next_id,
            unix_secs,
            micros,
            args,
            client_addr: client_addr.to_string(),
            client_name: client_name.cloned().unwrap_or_default(),
        });
        self.next_id += 1;
        self.trim();
    }

    fn trim(&mut self) {
        self.entries.truncate(self.max_len);
    }

    /// Changes the most entries kept (dropping the oldest beyond it).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
        self.trim();
    }

    /// SLOWLOG GET's reply: the newest `count` entries (10 by default, all for -1).
    pub fn get(&self, count: Option<i64>) -> Reply {
        let n = match count {
            None => 10,
            Some(c) if c < 0 => usize::MAX,
            Some(c) => c as usize,
        };
        Reply::Array(
            self.entries
                .iter()
                .take(n)
                .map(|e| {
                    Reply::Array(vec![
                        Reply::Integer(e.id as i64),
                        Reply::Integer(e.unix_secs as i64),
                        Reply::Integer(e.micros as i64),
                        Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                        Reply::bulk(e.client_addr.clone()),
                        Reply::Bulk(e.client_name.clone()),
                    ])
                })
                .collect(),
        )
    }

    /// SLOWLOG LEN.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// SLOWLOG RESET.
    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn slow_commands_are_kept_newest_first_trimmed_as_redis_does() {
        let mut log = SlowLog::new(1000, 2);
        log.record(
            Duration::from_micros(999),
            &[b("GET"), b("fast")],
            "1.2.3.4:5",
            None,
        );
        assert!(log.is_empty(), "under the threshold");
        let mut long = vec![b("MSET")];
        long.extend((0..40).map(|i| b(&i.to_string())));
        log.record(
            Duration::from_micros(1000),
            &long,
            "1.2.3.4:5",
            Some(&b("app")),
        );
        let big = Bytes::from(vec![b'x'; 200]);
        log.record(
            Duration::from_millis(5),
            &[b("SET"), big],
            "1.2.3.4:6",
            None,
        );
        log.record(
            Duration::from_millis(7),
            &[b("DEL"), b("k")],
            "1.2.3.4:7",
            None,
        );
        assert_eq!(log.len(), 2, "max_len");
        let Reply::Array(entries) = log.get(None) else {
            panic!("an array")
        };
        let Reply::Array(newest) = &entries[0] else {
            panic!("an entry")
        };
        assert_eq!(newest[0], Reply::Integer(2));
        assert_eq!(newest[2], Reply::Integer(7000));
        let Reply::Array(second) = &entries[1] else {
            panic!("an entry")
        };
        let Reply::Array(args) = &second[3] else {
            panic!("arguments")
        };
        let mut expected = vec![b'x'; 128];
        expected.extend_from_slice(b"... (72 more bytes)");
        assert_eq!(args[1], Reply::Bulk(Bytes::from(expected)));
        // 41 arguments: 31 kept and a note for the other 10.
        let mut log = SlowLog::new(0, 10);
        log.record(Duration::ZERO, &long, "a:1", None);
        let Reply::Array(entries) = log.get(Some(-1)) else {
            panic!("an array")
        };
        let Reply::Array(entry) = &entries[0] else {
            panic!("an entry")
        };
        let Reply::Array(args) = &entry[3] else {
            panic!("arguments")
        };
        assert_eq!(args.len(), 32);
        assert_eq!(args[31], Reply::bulk("... (10 more arguments)"));
        assert_eq!(log.get(Some(0)), Reply::Array(vec![]));
        let mut off = SlowLog::new(-1, 10);
        off.record(Duration::from_secs(9), &long, "a:1", None);
        assert!(off.is_empty(), "a negative threshold logs nothing");
        log.reset();
        assert!(log.is_empty());
    }
}

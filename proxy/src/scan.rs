//! SCAN through the proxy: one cursor over every partition, and pages filled across them.
//!
//! A proxy cursor carries the partition's index (in [`RoutingTables::all_partitions`]
//! order) in its low [`INDEX_BITS`] bits and the storage node's own cursor above them; 0
//! starts at the first partition and is answered once the last one is done. A page keeps
//! asking the next partition (or the same one further on) until it holds COUNT keys, every
//! partition is done, or [`MAX_STEPS`] node calls were made, so a small database comes back
//! in one call, as Redis returns it, and empty partitions never show as empty pages.
//!
//! [`RoutingTables::all_partitions`]: crate::routing::RoutingTables::all_partitions

use bytes::Bytes;
use zankv_commands::keyspace::{scan_cursor, scan_options};
use zankv_commands::{CommandError, Protocol, Reply};

use crate::routing::KeyTarget;

/// Low bits of a proxy SCAN cursor: the partition's index. The storage node's cursor (below
/// 2^47) takes the bits above.
pub const INDEX_BITS: u32 = 16;

/// Most node calls one page makes (a MATCH that few keys pass would otherwise walk the
/// whole database in one call); the page then ends early, as a Redis page may.
pub const MAX_STEPS: usize = 256;

/// A SCAN in progress: where it is and how to ask for more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The request's arguments (`SCAN cursor [MATCH ..] [COUNT ..] [TYPE ..]`); the cursor
    /// is replaced by the node's at each step.
    argv: Vec<Bytes>,
    /// Every partition, in cursor order.
    targets: Vec<KeyTarget>,
    /// The partition being asked.
    pub index: usize,
    /// Keys wanted in the page (COUNT, 10 by default).
    want: usize,
}

/// Where a proxy cursor points: the partition's index and the node's cursor in it.
fn split_cursor(cursor: u64) -> (usize, u64) {
    (
        (cursor & ((1 << INDEX_BITS) - 1)) as usize,
        cursor >> INDEX_BITS,
    )
}

impl ScanPage {
    /// The page SCAN `argv` asks for over `targets`, with its first step's request for the
    /// partition it starts in (the node's cursor in `argv[1]`); or the error to answer.
    pub fn start(
        mut argv: Vec<Bytes>,
        targets: &[KeyTarget],
    ) -> Result<(ScanPage, KeyTarget, Vec<Bytes>), CommandError> {
        if targets.len() > 1 << INDEX_BITS {
            return Err(CommandError::NotAcrossPartitions("scan".into()));
        }
        let cursor = scan_cursor(&argv[1])?;
        // A bad option is the node's to answer, with Redis's text.
        let want = scan_options(0, &argv[2..], true).map_or(10, |o| o.count);
        let (index, node_cursor) = split_cursor(cursor);
        let target = targets
            .get(index)
            .ok_or(CommandError::InvalidCursor)?
            .clone();
        argv[1] = Bytes::from(node_cursor.to_string());
        let page = ScanPage {
            argv: argv.clone(),
            targets: targets.to_vec(),
            index,
            want,
        };
        Ok((page, target, argv))
    }

    /// The proxy cursor after partition `index` answered `node_cursor`.
    fn next_cursor(&self, node_cursor: u64) -> u64 {
        match (node_cursor, self.index + 1 < self.targets.len()) {
            // This partition goes on.
            (n, _) if n > 0 => (n << INDEX_BITS) | self.index as u64,
            // It is done: the next partition from its start.
            (_, true) => (self.index + 1) as u64,
            // Every partition is done.
            (_, false) => 0,
        }
    }

    /// Takes one step's `[cursor, keys]` into `keys`; answers the proxy cursor and, when
    /// the page wants more, the next step's target and request. `None`: the reply was not
    /// a SCAN reply.
    pub fn take(
        &mut self,
        node_cursor: u64,
        step_keys: Vec<Bytes>,
        keys: &mut Vec<Bytes>,
        steps: usize,
    ) -> (u64, Option<(KeyTarget, Vec<Bytes>)>) {
        keys.extend(step_keys);
        let next = self.next_cursor(node_cursor);
        if next == 0 || keys.len() >= self.want || steps >= MAX_STEPS {
            return (next, None);
        }
        let (index, node_cursor) = split_cursor(next);
        self.index = index;
        let mut argv = self.argv.clone();
        argv[1] = Bytes::from(node_cursor.to_string());
        (next, Some((self.targets[index].clone(), argv)))
    }
}

/// The page's reply: the proxy cursor and the keys, encoded for `protocol`.
pub fn page_reply(cursor: u64, keys: &[Bytes], protocol: Protocol) -> Bytes {
    let mut out = bytes::BytesMut::new();
    Reply::bulk(cursor.to_string()).encode(protocol, &mut out);
    crate::reply_frames::array(&[out.freeze(), crate::reply_frames::array(keys)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::routing::NamespaceRoute;

    fn targets(n: u32) -> Vec<KeyTarget> {
        let ns = Arc::new(NamespaceRoute {
            name: "default".into(),
            epoch: 1,
            partitions: n,
            hash_tags: true,
            leaders: vec![None; n as usize],
            replicas: vec![vec![]; n as usize],
            stale_reads: false,
        });
        (0..n)
            .map(|partition| KeyTarget {
                namespace: ns.clone(),
                partition,
            })
            .collect()
    }

    fn argv(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::from(a.to_string())).collect()
    }

    fn keys(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("k{i}"))).collect()
    }

    #[test]
    fn a_page_goes_on_until_count_keys_or_the_last_partition() {
        let all = targets(4);
        let (mut page, first, step) =
            ScanPage::start(argv(&["SCAN", "0", "COUNT", "5"]), &all).expect("a page");
        assert_eq!((first.partition, &step[1][..]), (0, &b"0"[..]));
        let mut got = Vec::new();
        // Partition 0 is done with 2 keys: partition 1 from its start.
        let (next, then) = page.take(0, keys(2), &mut got, 1);
        assert_eq!(next, 1);
        let (target, step) = then.expect("wants more");
        assert_eq!((target.partition, &step[1][..]), (1, &b"0"[..]));
        // Partition 1 goes on at its cursor 9 with 3 more keys: COUNT is reached.
        let (next, then) = page.take(9, keys(3), &mut got, 2);
        assert_eq!(next, (9 << INDEX_BITS) | 1);
        assert!(then.is_none());
        assert_eq!(got.len(), 5);
        // Resuming there asks partition 1 at 9; the last partition's end ends the scan.
        let (mut page, first, step) =
            ScanPage::start(argv(&["SCAN", &next.to_string()]), &all).expect("a page");
        assert_eq!((first.partition, &step[1][..]), (1, &b"9"[..]));
        let mut got = Vec::new();
        let (_, then) = page.take(0, vec![], &mut got, 1);
        let (target, _) = then.expect("partition 2");
        assert_eq!(target.partition, 2);
        let (_, then) = page.take(0, vec![], &mut got, 2);
        assert_eq!(then.expect("partition 3").0.partition, 3);
        assert_eq!(page.take(0, keys(1), &mut got, 3), (0, None));
    }

    #[test]
    fn a_page_stops_after_its_step_budget_and_bad_cursors_are_refused() {
        let all = targets(2);
        let (mut page, _, _) = ScanPage::start(argv(&["SCAN", "0"]), &all).expect("a page");
        let mut got = Vec::new();
        let (next, then) = page.take(7, vec![], &mut got, MAX_STEPS);
        assert_eq!((next, then), ((7 << INDEX_BITS), None));
        for bad in ["2", "x"] {
            assert_eq!(
                ScanPage::start(argv(&["SCAN", bad]), &all).unwrap_err(),
                CommandError::InvalidCursor
            );
        }
    }
}

//! INFO of a storage node against `redis-server` 7.0: the same sections in the same order
//! for every way of asking (none, `default`, `all`, `everything`, several names, unknown
//! names), and in each section every field Redis writes, in Redis's order (zankv may add
//! `zankv_` ones).
//! Sections whose fields name commands or errors seen (commandstats, latencystats,
//! errorstats) or keys held (keyspace) are compared by their header only.

mod support;

use std::collections::BTreeMap;

use support::diff::{must_start_pair_on, Target};
use support::{Client, Frame};

/// Each section's header and its field names, in order.
fn sections(client: &mut Client, args: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut argv = vec!["INFO"];
    argv.extend_from_slice(args);
    let reply = client.cmd_str(&argv);
    let text = match &reply {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO {args:?}: {other:?}"),
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        match line.strip_prefix("# ") {
            Some(header) => out.push((header.to_string(), vec![])),
            None => {
                let (name, _) = line.split_once(':').unwrap_or((line, ""));
                out.last_mut()
                    .unwrap_or_else(|| panic!("a field before any header: {line}"))
                    .1
                    .push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn every_section_and_field_matches_redis() {
    let mut pair = must_start_pair_on(false, Target::Node);
    // Something in every section that depends on it.
    for client in [&mut pair.redis, &mut pair.zankv] {
        client.cmd_str(&["SET", "k", "v"]);
        client.cmd_str(&["NOSUCHCOMMAND"]);
    }
    let headers =
        |s: &[(String, Vec<String>)]| s.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>();
    for args in [
        &[][..],
        &["default"],
        &["all"],
        &["everything"],
        &["server", "Keyspace", "memory"],
        &["CPU"],
        &["nosuchsection"],
        &["server", "server"],
    ] {
        let want = sections(&mut pair.redis, args);
        let got = sections(&mut pair.zankv, args);
        assert_eq!(headers(&got), headers(&want), "INFO {args:?}");
    }
    let want: BTreeMap<String, Vec<String>> = sections(&mut pair.redis, &["everything"])
        .into_iter()
        .collect();
    let got: BTreeMap<String, Vec<String>> = sections(&mut pair.zankv, &["everything"])
        .into_iter()
        .collect();
    for (header, fields) in &want {
        if matches!(
            header.as_str(),
            "Commandstats" | "Latencystats" | "Errorstats" | "Keyspace"
        ) {
            continue;
        }
        // Redis's fields, in its order, among ours (which add `zankv_` ones, and the AOF
        // fields Redis writes only when its AOF is on, as zankv's log always is).
        let ours = &got[header];
        let mut at = 0;
        for field in fields {
            match ours[at..].iter().position(|f| f == field) {
                Some(i) => at += i + 1,
                None => panic!("# {header}: {field} missing or out of order in {ours:?}"),
            }
        }
    }
    // The error replies are counted by their first word.
    let errors = &got["Errorstats"];
    assert!(errors.iter().any(|f| f == "errorstat_ERR"), "{errors:?}");
    assert!(got["Keyspace"].iter().any(|f| f == "db0"), "{got:?}");
}

//! Long scripts through the proxy, with real processes: once a script has run past
//! `busy-reply-threshold`, its node answers BUSY (through the proxy too); SCRIPT KILL sent
//! through the proxy stops it with Redis's error and the node serves again; a script that
//! wrote cannot be killed (UNKILLABLE, as Redis), finishes, and its writes reach every
//! replica.

mod support;

use std::time::{Duration, Instant};

use support::proxy::ProxiedCluster;
use support::{Client, Frame};

/// Sets every node's busy-reply-threshold to `ms`.
fn busy_after(cluster: &ProxiedCluster, ms: u64) {
    for n in 0..3 {
        let reply = cluster.nodes.client(n).cmd_str(&[
            "CONFIG",
            "SET",
            "busy-reply-threshold",
            &ms.to_string(),
        ]);
        assert_eq!(reply, Frame::simple("OK"), "node {n}");
    }
}

/// Sends EVAL through the proxy without waiting for its reply.
fn start_script(cluster: &ProxiedCluster, body: &str, key: &str) -> Client {
    let mut c = cluster.proxy.client();
    c.set_read_timeout(Duration::from_secs(60));
    c.send_raw(&Client::encode(&[
        b"EVAL",
        body.as_bytes(),
        b"1",
        key.as_bytes(),
    ]));
    c
}

/// Sends GET through the proxy until the reply is BUSY. (A command that reached the node
/// before the threshold passed waits for the script instead: the first one is sent after.)
fn must_see_busy(cluster: &ProxiedCluster, key: &str) {
    std::thread::sleep(Duration::from_millis(600));
    let mut other = cluster.proxy.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match other.cmd_str(&["GET", key]) {
            Frame::Error(e) if e.starts_with(b"BUSY ") => {
                assert_eq!(
                    e,
                    b"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
                );
                return;
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "never BUSY while the script ran; last reply {other}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_long_script_is_stopped_by_script_kill_through_the_proxy() {
    let cluster = ProxiedCluster::must_start(1, 3, "");
    busy_after(&cluster, 200);
    let mut runner = start_script(
        &cluster,
        "local i = 0\nwhile true do i = i + 1 end",
        "{s}key",
    );
    must_see_busy(&cluster, "{s}key");
    let mut killer = cluster.proxy.client();
    // FUNCTION KILL does not stop a script (EVAL): Redis answers that only SCRIPT KILL may.
    assert_eq!(
        killer.cmd_str(&["FUNCTION", "KILL"]),
        Frame::error(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
    );
    assert_eq!(killer.cmd_str(&["SCRIPT", "KILL"]), Frame::simple("OK"));
    match runner.read_frame() {
        Some(Frame::Error(e)) => {
            let text = String::from_utf8_lossy(&e);
            assert!(
                text.starts_with("ERR Script killed by user with SCRIPT KILL... script: ")
                    && text.ends_with(", on @user_script:2."),
                "{text}"
            );
        }
        other => panic!("the killed script answered {other:?}"),
    }
    // The node serves again, and nothing runs any more.
    let mut after = cluster.proxy.client();
    assert_eq!(after.cmd_str(&["GET", "{s}key"]), Frame::Null);
    assert!(matches!(
        after.cmd_str(&["SCRIPT", "KILL"]),
        Frame::Error(e) if e == b"NOTBUSY No scripts in execution right now."
    ));
    assert_eq!(
        after.cmd_str(&["EVAL", "return redis.call('incr', KEYS[1])", "1", "{s}key"]),
        Frame::Integer(1)
    );
}

#[test]
fn a_script_that_wrote_cannot_be_killed_and_its_writes_reach_every_replica() {
    let cluster = ProxiedCluster::must_start(1, 3, "");
    busy_after(&cluster, 200);
    // Runs about two seconds by the server's clock, having written first.
    let body = "redis.call('set', KEYS[1], 'written')\n\
                local start = tonumber(redis.call('time')[1])\n\
                while tonumber(redis.call('time')[1]) - start < 2 do end\n\
                return 'done'";
    let mut runner = start_script(&cluster, body, "{w}key");
    must_see_busy(&cluster, "{w}key");
    let mut killer = cluster.proxy.client();
    assert!(matches!(
        killer.cmd_str(&["SCRIPT", "KILL"]),
        Frame::Error(e) if e.starts_with(b"UNKILLABLE Sorry the script already executed write commands")
    ));
    assert_eq!(runner.read_frame(), Some(Frame::bulk("done")));
    assert_eq!(
        cluster.proxy.client().cmd_str(&["GET", "{w}key"]),
        Frame::bulk("written")
    );
    // Every replica applied the script's effects (followers answer READONLY reads).
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..3 {
        let mut node = cluster.nodes.client(n);
        assert_eq!(node.cmd_str(&["READONLY"]), Frame::simple("OK"));
        loop {
            match node.cmd_str(&["GET", "{w}key"]) {
                Frame::Bulk(v) if v == b"written" => break,
                other => {
                    assert!(Instant::now() < deadline, "node {n} answers {other}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

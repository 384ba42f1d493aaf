//! Pub/Sub across proxies, with real processes: two proxies of one cluster (both requiring a
//! password, so their links to each other authenticate) find each other through PD; a
//! message published through one reaches the subscribers of the other, in publish order,
//! in RESP2 and RESP3; PUBLISH counts the receivers of both; PUBSUB NUMSUB, CHANNELS and
//! NUMPAT count both; and when a proxy dies the other goes on publishing to its own.

mod support;

use std::time::{Duration, Instant};

use support::proxy::{ProxiedCluster, ProxyProcess};
use support::{Client, Frame, ReadOutcome};

const PASSWORD: &str = "pubsub-secret";

fn client(port: u16) -> Client {
    let mut c = Client::connect(port);
    assert_eq!(c.cmd_str(&["AUTH", PASSWORD]), Frame::simple("OK"));
    c
}

/// A message or confirmation as a RESP2 client reads it (an array).
fn push(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(Frame::bulk).collect())
}

/// The same as a RESP3 client reads it (a push).
fn push3(items: &[&str]) -> Frame {
    Frame::Push(items.iter().map(Frame::bulk).collect())
}

/// A subscription's confirmation; `resp3`: as a push.
fn confirmed(kind: &str, name: &str, count: i64, resp3: bool) -> Frame {
    let items = vec![Frame::bulk(kind), Frame::bulk(name), Frame::Integer(count)];
    if resp3 {
        Frame::Push(items)
    } else {
        Frame::Array(items)
    }
}

/// PUBLISHes `message` to `channel` through `publisher` until it reaches `receivers`
/// (the proxies find each other within a few seconds of starting); answers how many
/// attempts it took. The subscribers get every attempt.
fn publish_until_reached(
    publisher: &mut Client,
    channel: &str,
    message: &str,
    receivers: i64,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 1.. {
        if publisher.cmd_str(&["PUBLISH", channel, message]) == Frame::Integer(receivers) {
            return attempt;
        }
        assert!(
            Instant::now() < deadline,
            "PUBLISH never reached {receivers} receivers"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

#[test]
fn messages_published_through_one_proxy_reach_subscribers_of_another() {
    let auth = format!("requirepass = \"{PASSWORD}\"\n");
    let cluster = ProxiedCluster::must_start(2, 3, &auth);
    let dir = tempfile::tempdir().expect("temp dir");
    let pd_ports: Vec<u16> = cluster.pds.iter().map(|p| p.port).collect();
    let other = ProxyProcess::must_start(dir.path(), &pd_ports, &auth);

    // A RESP2 subscriber on the first proxy, a RESP3 pattern subscriber on the second.
    let mut sub = client(cluster.proxy.port);
    sub.send_raw(&Client::encode(&[b"SUBSCRIBE", b"news"]));
    assert_eq!(
        sub.read_frame(),
        Some(confirmed("subscribe", "news", 1, false))
    );
    let mut psub = client(other.port);
    psub.hello3();
    psub.send_raw(&Client::encode(&[b"PSUBSCRIBE", b"n*"]));
    assert_eq!(
        psub.read_frame(),
        Some(confirmed("psubscribe", "n*", 1, true))
    );

    // Through the second proxy: once the proxies know each other, both subscribers count.
    let mut publisher = client(other.port);
    let attempts = publish_until_reached(&mut publisher, "news", "hello", 2);
    for _ in 0..attempts - 1 {
        // Earlier attempts reached the local pattern subscriber only.
        assert_eq!(
            psub.read_frame(),
            Some(push3(&["pmessage", "n*", "news", "hello"]))
        );
    }
    assert_eq!(sub.read_frame(), Some(push(&["message", "news", "hello"])));
    assert_eq!(
        psub.read_frame(),
        Some(push3(&["pmessage", "n*", "news", "hello"]))
    );

    // A pipelined burst through each proxy arrives whole and in order on the other.
    let burst: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let mut pipeline = Vec::new();
    for m in &burst {
        pipeline.extend(Client::encode(&[b"PUBLISH", b"news", m.as_bytes()]));
    }
    publisher.send_raw(&pipeline);
    for _ in &burst {
        assert_eq!(publisher.read_frame(), Some(Frame::Integer(2)));
    }
    for m in &burst {
        assert_eq!(sub.read_frame(), Some(push(&["message", "news", m])));
        assert_eq!(
            psub.read_frame(),
            Some(push3(&["pmessage", "n*", "news", m]))
        );
    }
    // Through the first proxy (which may learn of the second a moment later).
    let mut first = client(cluster.proxy.port);
    let attempts = publish_until_reached(&mut first, "news", "back", 2);
    for _ in 0..attempts {
        assert_eq!(sub.read_frame(), Some(push(&["message", "news", "back"])));
    }
    assert_eq!(
        psub.read_frame(),
        Some(push3(&["pmessage", "n*", "news", "back"]))
    );

    // Introspection counts the subscribers of both proxies.
    assert_eq!(
        first.cmd_str(&["PUBSUB", "NUMSUB", "news", "none"]),
        Frame::Array(vec![
            Frame::bulk("news"),
            Frame::Integer(1),
            Frame::bulk("none"),
            Frame::Integer(0)
        ])
    );
    assert_eq!(first.cmd_str(&["PUBSUB", "NUMPAT"]), Frame::Integer(1));
    // INFO counts each proxy's own.
    for (c, channels, patterns) in [(&mut first, 1, 0), (&mut publisher, 0, 1)] {
        let info = c.cmd_str(&["INFO", "stats"]);
        let text = String::from_utf8_lossy(info.as_bytes().expect("INFO's text")).into_owned();
        assert!(
            text.contains(&format!("pubsub_channels:{channels}\r\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("pubsub_patterns:{patterns}\r\n")),
            "{text}"
        );
    }
    assert_eq!(
        publisher.cmd_str(&["PUBSUB", "CHANNELS"]),
        Frame::Array(vec![Frame::bulk("news")])
    );

    // The second proxy dies: the first goes on with its own subscriber.
    drop(other);
    let started = Instant::now();
    assert_eq!(
        first.cmd_str(&["PUBLISH", "news", "alone"]),
        Frame::Integer(1)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "PUBLISH waited {:?} for a dead proxy",
        started.elapsed()
    );
    assert_eq!(sub.read_frame(), Some(push(&["message", "news", "alone"])));
    // Nothing else is waiting for the subscriber.
    sub.set_read_timeout(Duration::from_millis(300));
    assert!(matches!(sub.try_read_frame(), ReadOutcome::TimedOut));
}

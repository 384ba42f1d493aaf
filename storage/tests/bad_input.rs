//! Malformed and unusual RESP sent to a reference `redis-server` and to a zankv node: the
//! replies, whether the connection is closed afterwards, and whether the server still
//! serves the same connection (when it stays open) and a new one must all match.
//!
//! Some cases also pin Redis 7.0's own behaviour, so that a change of reference server
//! shows up as "reference redis did not behave as documented" rather than as a zankv bug.

mod support;

use std::time::Duration;

use support::{escape, Client, Frame, ReadOutcome, RedisServer, ZankvNode};

/// How long a case waits for each reply. Short, because a case that hangs is a mismatch.
const CASE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One piece of input and how many replies to read before probing the connection.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    replies: usize,
    /// Send the input one byte per write.
    byte_by_byte: bool,
    /// Redis 7.0's documented behaviour for this case: replies and whether it then closes.
    redis: Option<(Vec<Frame>, bool)>,
}

fn case(name: &'static str, input: &[u8], replies: usize) -> Case {
    Case {
        name,
        input: input.to_vec(),
        replies,
        byte_by_byte: false,
        redis: None,
    }
}

fn pinned(name: &'static str, input: &[u8], expected: Vec<Frame>, closes: bool) -> Case {
    Case {
        name,
        input: input.to_vec(),
        replies: expected.len(),
        byte_by_byte: false,
        redis: Some((expected, closes)),
    }
}

fn err(text: &str) -> Frame {
    Frame::error(text)
}

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    Client::encode(args)
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        pinned(
            "simple string inside a multibulk",
            b"*1\r\n+foo\r\n",
            vec![err("ERR Protocol error: expected '$', got '+'")],
            true,
        ),
        pinned(
            "integer as a multibulk argument",
            b"*2\r\n$3\r\nGET\r\n:1\r\n",
            vec![err("ERR Protocol error: expected '$', got ':'")],
            true,
        ),
        pinned(
            "non-numeric multibulk length",
            b"*abc\r\n",
            vec![err("ERR Protocol error: invalid multibulk length")],
            true,
        ),
        pinned(
            "multibulk length with junk",
            b"*1x\r\n",
            vec![err("ERR Protocol error: invalid multibulk length")],
            true,
        ),
        pinned(
            "multibulk length over INT_MAX",
            b"*3000000000\r\n",
            vec![err("ERR Protocol error: invalid multibulk length")],
            true,
        ),
        pinned(
            "negative bulk length",
            b"*1\r\n$-5\r\n",
            vec![err("ERR Protocol error: invalid bulk length")],
            true,
        ),
        pinned(
            "non-numeric bulk length",
            b"*1\r\n$abc\r\n",
            vec![err("ERR Protocol error: invalid bulk length")],
            true,
        ),
        pinned(
            "bulk length with junk",
            b"*1\r\n$4x\r\n",
            vec![err("ERR Protocol error: invalid bulk length")],
            true,
        ),
        pinned(
            "bulk length over 512 MB",
            b"*1\r\n$600000000\r\n",
            vec![err("ERR Protocol error: invalid bulk length")],
            true,
        ),
        pinned("null multibulk is ignored", b"*-1\r\n", vec![], false),
        pinned("empty multibulk is ignored", b"*0\r\n", vec![], false),
        pinned(
            "inline PING",
            b"PING\r\n",
            vec![Frame::simple("PONG")],
            false,
        ),
        pinned(
            "inline PING with bare LF",
            b"PING\n",
            vec![Frame::simple("PONG")],
            false,
        ),
        pinned(
            "inline in mixed case",
            b"pInG\r\n",
            vec![Frame::simple("PONG")],
            false,
        ),
        pinned(
            "inline PING with argument",
            b"ping hello\r\n",
            vec![Frame::bulk("hello")],
            false,
        ),
        pinned(
            "inline double quotes",
            b"set inl \"b c\"\r\nget inl\r\n",
            vec![Frame::simple("OK"), Frame::bulk("b c")],
            false,
        ),
        pinned(
            "inline single quotes",
            b"set inl2 'x y' \r\nget inl2\r\n",
            vec![Frame::simple("OK"), Frame::bulk("x y")],
            false,
        ),
        pinned(
            "inline escapes in double quotes",
            b"set inl3 \"a\\x41\\n\\\"q\\\"\\t\"\r\nget inl3\r\n",
            vec![Frame::simple("OK"), Frame::bulk("aA\n\"q\"\t")],
            false,
        ),
        pinned(
            "inline with non-UTF-8 bytes",
            b"set inl4 caf\xc3\xa9\xff\r\nget inl4\r\n",
            vec![Frame::simple("OK"), Frame::bulk(b"caf\xc3\xa9\xff")],
            false,
        ),
        pinned(
            "inline unbalanced double quote",
            b"set a \"b c\r\n",
            vec![err("ERR Protocol error: unbalanced quotes in request")],
            true,
        ),
        pinned(
            "inline unbalanced single quote",
            b"set a 'b c\r\n",
            vec![err("ERR Protocol error: unbalanced quotes in request")],
            true,
        ),
        pinned(
            "inline closing quote not followed by space",
            b"set a \"b\"c\r\n",
            vec![err("ERR Protocol error: unbalanced quotes in request")],
            true,
        ),
        pinned("empty inline line", b"\r\n", vec![], false),
        pinned("blank inline line", b"   \r\n", vec![], false),
        pinned(
            "empty inline lines then PING",
            b"\r\n\n\r\nPING\r\n",
            vec![Frame::simple("PONG")],
            false,
        ),
        pinned(
            "inline wrong arity",
            b"get\r\n",
            vec![err("ERR wrong number of arguments for 'get' command")],
            false,
        ),
        pinned(
            "too few arguments",
            &multibulk(&[b"GET"]),
            vec![err("ERR wrong number of arguments for 'get' command")],
            false,
        ),
        pinned(
            "too many arguments",
            &multibulk(&[b"GET", b"a", b"b"]),
            vec![err("ERR wrong number of arguments for 'get' command")],
            false,
        ),
        pinned(
            "wrong arity, command in lower case with odd pairs",
            &multibulk(&[b"hset", b"h", b"f"]),
            vec![err("ERR wrong number of arguments for 'hset' command")],
            false,
        ),
        pinned(
            "unknown command",
            &multibulk(&[b"foo", b"a", b"b"]),
            vec![err(
                "ERR unknown command 'foo', with args beginning with: 'a' 'b' ",
            )],
            false,
        ),
        pinned(
            "CONFIG SET of a setting nobody has",
            &multibulk(&[b"CONFIG", b"SET", b"no-such-setting", b"1"]),
            vec![err(
                "ERR Unknown option or number of arguments for CONFIG SET - 'no-such-setting'",
            )],
            false,
        ),
        pinned(
            "CONFIG SET without a value",
            &multibulk(&[b"CONFIG", b"SET", b"maxclients"]),
            vec![err(
                "ERR wrong number of arguments for 'config|set' command",
            )],
            false,
        ),
        pinned(
            "CONFIG GET without a pattern",
            &multibulk(&[b"config", b"get"]),
            vec![err(
                "ERR wrong number of arguments for 'config|get' command",
            )],
            false,
        ),
        pinned(
            "CLIENT KILL of an address nobody has",
            &multibulk(&[b"CLIENT", b"KILL", b"9.9.9.9:9"]),
            vec![err("ERR No such client")],
            false,
        ),
        pinned(
            "CLIENT KILL ID of nobody",
            &multibulk(&[b"CLIENT", b"KILL", b"ID", b"99999"]),
            vec![Frame::Integer(0)],
            false,
        ),
        pinned(
            "CLIENT KILL ID that is not a number",
            &multibulk(&[b"CLIENT", b"KILL", b"ID", b"abc"]),
            vec![err("ERR client-id should be greater than 0")],
            false,
        ),
        pinned(
            "CLIENT KILL with an unknown filter",
            &multibulk(&[b"CLIENT", b"KILL", b"FOO", b"bar"]),
            vec![err("ERR syntax error")],
            false,
        ),
        pinned(
            "CLIENT KILL SKIPME neither yes nor no",
            &multibulk(&[b"CLIENT", b"KILL", b"SKIPME", b"maybe"]),
            vec![err("ERR syntax error")],
            false,
        ),
        pinned(
            "CLIENT LIST of an unknown type",
            &multibulk(&[b"CLIENT", b"LIST", b"TYPE", b"foo"]),
            vec![err("ERR Unknown client type 'foo'")],
            false,
        ),
        pinned(
            "CLIENT LIST ID that is not a number",
            &multibulk(&[b"CLIENT", b"LIST", b"ID", b"abc"]),
            vec![err("ERR Invalid client ID")],
            false,
        ),
        pinned(
            "CLIENT LIST ID that no client can have",
            &multibulk(&[b"CLIENT", b"LIST", b"ID", b"0", b"-5"]),
            vec![Frame::bulk("")],
            false,
        ),
        pinned(
            "CLIENT LIST with an unknown option",
            &multibulk(&[b"CLIENT", b"LIST", b"FOO"]),
            vec![err("ERR syntax error")],
            false,
        ),
        pinned(
            "SLOWLOG GET with a count below -1",
            &multibulk(&[b"SLOWLOG", b"GET", b"-2"]),
            vec![err("ERR count should be greater than or equal to -1")],
            false,
        ),
        pinned(
            "SLOWLOG GET with a count that is not a number",
            &multibulk(&[b"SLOWLOG", b"GET", b"many"]),
            vec![err("ERR count should be greater than or equal to -1")],
            false,
        ),
        pinned(
            "SLOWLOG GET with two counts",
            &multibulk(&[b"SLOWLOG", b"GET", b"1", b"2"]),
            vec![err(
                "ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP.",
            )],
            false,
        ),
        pinned(
            "SLOWLOG with an unknown subcommand",
            &multibulk(&[b"SLOWLOG", b"TAIL"]),
            vec![err("ERR unknown subcommand 'TAIL'. Try SLOWLOG HELP.")],
            false,
        ),
        pinned(
            "unknown command without arguments",
            &multibulk(&[b"FOO"]),
            vec![err("ERR unknown command 'FOO', with args beginning with: ")],
            false,
        ),
        pinned(
            "unknown inline command",
            b"foo a b\r\n",
            vec![err(
                "ERR unknown command 'foo', with args beginning with: 'a' 'b' ",
            )],
            false,
        ),
        pinned(
            "empty command name",
            b"*1\r\n$0\r\n\r\n",
            vec![err("ERR unknown command '', with args beginning with: ")],
            false,
        ),
        pinned(
            "unknown command with CR LF in an argument",
            &multibulk(&[b"foo", b"a\r\nb"]),
            vec![err(
                "ERR unknown command 'foo', with args beginning with: 'a  b' ",
            )],
            false,
        ),
        case(
            "unknown command with long arguments (truncated at 128 bytes)",
            &multibulk(&[b"foo", &[b'a'; 100], &[b'b'; 100], b"c"]),
            1,
        ),
        case(
            "unknown command with a 200-byte name",
            &multibulk(&[&[b'z'; 200], b"x"]),
            1,
        ),
        pinned(
            "bulk string at top level is an inline command",
            b"$5\r\nhullo\r\n",
            vec![
                err("ERR unknown command '$5', with args beginning with: "),
                err("ERR unknown command 'hullo', with args beginning with: "),
            ],
            false,
        ),
        pinned(
            "simple string at top level is an inline command",
            b"+PING\r\n",
            vec![err(
                "ERR unknown command '+PING', with args beginning with: ",
            )],
            false,
        ),
        pinned(
            "binary key and value with NUL and CR LF",
            &[
                multibulk(&[b"SET", b"k\0\r\n\xff", b"v\0\r\nx\xfe"]),
                multibulk(&[b"GET", b"k\0\r\n\xff"]),
                multibulk(&[b"EXISTS", b"k\0\r\n\xff", b"k\0"]),
                multibulk(&[b"HSET", b"h\0\r\n", b"f\r\n\0", b"\0"]),
                multibulk(&[b"HGET", b"h\0\r\n", b"f\r\n\0"]),
            ]
            .concat(),
            vec![
                Frame::simple("OK"),
                Frame::bulk(b"v\0\r\nx\xfe"),
                Frame::Integer(1),
                Frame::Integer(1),
                Frame::bulk(b"\0"),
            ],
            false,
        ),
        pinned(
            "empty key and value",
            &[
                multibulk(&[b"SET", b"", b""]),
                multibulk(&[b"GET", b""]),
                multibulk(&[b"STRLEN", b""]),
            ]
            .concat(),
            vec![Frame::simple("OK"), Frame::bulk(b""), Frame::Integer(0)],
            false,
        ),
        pinned(
            "valid command then garbage",
            b"*1\r\n$4\r\nPING\r\n*x\r\n",
            vec![
                Frame::simple("PONG"),
                err("ERR Protocol error: invalid multibulk length"),
            ],
            true,
        ),
        pinned(
            "write before a protocol error is kept",
            b"*3\r\n$3\r\nSET\r\n$4\r\nkept\r\n$1\r\n1\r\n*1\r\n+x\r\n",
            vec![
                Frame::simple("OK"),
                err("ERR Protocol error: expected '$', got '+'"),
            ],
            true,
        ),
        pinned(
            "key written before a protocol error",
            &multibulk(&[b"GET", b"kept"]),
            vec![Frame::bulk("1")],
            false,
        ),
        pinned(
            "HRANDFIELD of a missing key with a huge repeating count",
            &multibulk(&[b"HRANDFIELD", b"no-such-hash", b"-20000000"]),
            vec![Frame::Array(vec![])],
            false,
        ),
        pinned(
            "COMMAND LIST with a stray argument",
            &multibulk(&[b"COMMAND", b"LIST", b"x"]),
            vec![err("ERR syntax error")],
            false,
        ),
        pinned(
            "COMMAND LIST with an unknown filter",
            &multibulk(&[b"COMMAND", b"LIST", b"FILTERBY", b"foo", b"x"]),
            vec![err("ERR syntax error")],
            false,
        ),
        pinned(
            "COMMAND LIST of a module that is not loaded",
            &multibulk(&[b"COMMAND", b"LIST", b"FILTERBY", b"MODULE", b"x"]),
            vec![Frame::Array(vec![])],
            false,
        ),
        pinned(
            "unsupported protocol version",
            &multibulk(&[b"HELLO", b"4"]),
            vec![err("NOPROTO unsupported protocol version")],
            false,
        ),
        pinned(
            "inline request over 64 KiB without newline",
            &vec![b'a'; 70 * 1024],
            vec![err("ERR Protocol error: too big inline request")],
            true,
        ),
        // Redis finds the end of an inline line with strchr, so a NUL hides the newline:
        // the request waits for more input until it is too big, then the connection closes.
        pinned(
            "inline line with a NUL, then more than 64 KiB",
            &[&b"\x00\x01\r\na\x00b c\r\n"[..], &vec![b'a'; 70 * 1024]].concat(),
            vec![err("ERR Protocol error: too big inline request")],
            true,
        ),
    ];
    for (name, input, reply) in [
        (
            "multibulk sent one byte per write",
            multibulk(&[b"ECHO", b"split"]),
            Frame::bulk("split"),
        ),
        (
            "inline sent one byte per write",
            b"ECHO split\r\n".to_vec(),
            Frame::bulk("split"),
        ),
    ] {
        cases.push(Case {
            name,
            input,
            replies: 1,
            byte_by_byte: true,
            redis: Some((vec![reply], false)),
        });
    }
    // A pipeline of 100 commands in one write.
    let mut pipeline = Vec::new();
    for i in 0..100 {
        pipeline.extend(multibulk(&[b"ECHO", format!("p{i}").as_bytes()]));
    }
    let expected = (0..100).map(|i| Frame::bulk(format!("p{i}"))).collect();
    cases.push(Case {
        name: "pipeline of 100 commands",
        input: pipeline,
        replies: 100,
        byte_by_byte: false,
        redis: Some((expected, false)),
    });
    cases
}

/// What one server did with one case.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// The replies read, up to the case's count.
    replies: Vec<Frame>,
    /// Whether a reply did not arrive in time.
    timed_out: bool,
    /// Whether the server closed the connection (seen while reading replies or the probe).
    closed: bool,
    /// The reply to PING on the same connection, when it stayed open.
    probe: Option<Frame>,
}

fn run_case(port: u16, case: &Case) -> Outcome {
    let mut client = Client::connect(port);
    client.set_read_timeout(CASE_READ_TIMEOUT);
    let sent = if case.byte_by_byte {
        case.input.chunks(1).all(|byte| client.try_send_raw(byte))
    } else {
        client.try_send_raw(&case.input)
    };
    let mut outcome = Outcome {
        replies: Vec::new(),
        timed_out: false,
        closed: !sent,
        probe: None,
    };
    while !outcome.closed && outcome.replies.len() < case.replies {
        match client.try_read_frame() {
            ReadOutcome::Frame(frame) => outcome.replies.push(frame),
            ReadOutcome::Closed => outcome.closed = true,
            ReadOutcome::TimedOut => {
                outcome.timed_out = true;
                break;
            }
        }
    }
    if !outcome.closed && !outcome.timed_out {
        if !client.try_send_raw(&multibulk(&[b"PING"])) {
            outcome.closed = true;
        } else {
            match client.try_read_frame() {
                ReadOutcome::Frame(frame) => outcome.probe = Some(frame),
                ReadOutcome::Closed => outcome.closed = true,
                ReadOutcome::TimedOut => outcome.timed_out = true,
            }
        }
    }
    outcome
}

/// A new connection must be served after every case.
fn must_serve_new_connection(port: u16, who: &str, case: &Case) {
    let mut client = Client::connect(port);
    client.set_read_timeout(CASE_READ_TIMEOUT);
    client.send_raw(&multibulk(&[b"PING"]));
    match client.try_read_frame() {
        ReadOutcome::Frame(f) if f == Frame::simple("PONG") => {}
        other => panic!(
            "{who} does not serve a new connection after case {:?}: {other:?}",
            case.name
        ),
    }
}

#[test]
fn malformed_input_matches_redis() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = ZankvNode::must_start(&dir.path().join("data"));
    compare_with_redis(node.port(), "zankv");
}

/// The same cases through the proxy, in front of PD and three storage nodes (4 partitions
/// × 3 replicas): the proxy refuses bad input as Redis does and goes on serving.
#[test]
fn malformed_input_through_the_proxy_matches_redis() {
    let cluster = support::proxy::ProxiedCluster::must_start(4, 3, "");
    compare_with_redis(cluster.proxy.port, "proxy");
}

/// Runs every case against a fresh redis-server and against `port`, and fails on any
/// difference.
fn compare_with_redis(port: u16, who: &str) {
    let redis = RedisServer::must_start();
    let mut mismatches = Vec::new();
    for case in cases() {
        let a = run_case(redis.port(), &case);
        if let Some((replies, closes)) = &case.redis {
            let documented = Outcome {
                replies: replies.clone(),
                timed_out: false,
                closed: *closes,
                probe: if *closes {
                    None
                } else {
                    Some(Frame::simple("PONG"))
                },
            };
            assert_eq!(
                a, documented,
                "reference redis did not behave as documented for {:?}",
                case.name
            );
        }
        must_serve_new_connection(redis.port(), "redis", &case);
        let b = run_case(port, &case);
        must_serve_new_connection(port, who, &case);
        if a != b {
            mismatches.push(format!(
                "case {:?}\n    input: \"{}\"\n    redis: {a:?}\n    {who}: {b:?}",
                case.name,
                escape(&case.input[..case.input.len().min(300)])
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} case(s) differ from redis:\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

#[test]
fn large_value_round_trip() {
    const SIZE: usize = 8 * 1024 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::must_start();
    let node = ZankvNode::must_start(&dir.path().join("data"));
    let mut rng = fastrand::Rng::with_seed(8);
    let value: Vec<u8> = (0..SIZE).map(|_| rng.u8(..)).collect();
    for (who, port) in [("redis", redis.port()), ("zankv", node.port())] {
        let mut client = Client::connect(port);
        assert_eq!(
            client.cmd(&[b"SET", b"big", &value]),
            Frame::simple("OK"),
            "{who}: SET 8 MiB"
        );
        assert_eq!(
            client.cmd(&[b"STRLEN", b"big"]),
            Frame::Integer(SIZE as i64),
            "{who}: STRLEN"
        );
        match client.cmd(&[b"GET", b"big"]) {
            Frame::Bulk(got) => assert!(
                got == value,
                "{who}: GET returned {} bytes that differ",
                got.len()
            ),
            other => panic!("{who}: GET big returned {other}"),
        }
        assert_eq!(
            client.cmd(&[b"APPEND", b"big", b"tail"]),
            Frame::Integer(SIZE as i64 + 4),
            "{who}: APPEND"
        );
        assert_eq!(
            client.cmd(&[b"GETRANGE", b"big", b"-4", b"-1"]),
            Frame::bulk("tail"),
            "{who}: GETRANGE of the tail"
        );
        assert_eq!(
            client.cmd(&[b"HSET", b"bighash", b"f", &value]),
            Frame::Integer(1),
            "{who}: HSET 8 MiB"
        );
        assert_eq!(
            client.cmd(&[b"HSTRLEN", b"bighash", b"f"]),
            Frame::Integer(SIZE as i64),
            "{who}: HSTRLEN"
        );
        client.must_ping();
    }
}

/// `ZANKV.ON <partition> <command>`, the proxy's way to reach one partition, checks what
/// it is given like any command.
#[test]
fn the_proxy_s_partition_command_checks_its_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = ZankvNode::must_start(&dir.path().join("data"));
    let mut c = Client::connect(node.port());
    assert_eq!(
        c.cmd_str(&["ZANKV.ON", "default-0"]),
        err("ERR wrong number of arguments for 'zankv.on' command")
    );
    assert!(matches!(
        c.cmd_str(&["zankv.on", "default-7", "DBSIZE"]),
        Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED: partition default-7 is not known")
    ));
    assert_eq!(
        c.cmd_str(&["ZANKV.ON", "default-0", "PING"]),
        err("ERR syntax error")
    );
    assert_eq!(
        c.cmd_str(&["ZANKV.ON", "default-0", "NOSUCH"]),
        err("ERR unknown command 'NOSUCH', with args beginning with: ")
    );
    assert_eq!(
        c.cmd_str(&["ZANKV.ON", "default-0", "SET", "k", "v"]),
        Frame::simple("OK")
    );
    assert_eq!(
        c.cmd_str(&["ZANKV.ON", "default-0", "DBSIZE"]),
        Frame::Integer(1)
    );
    assert_eq!(
        c.cmd_str(&["ZANKV.ON", "default-0", "KEYS", "*"]),
        Frame::Array(vec![Frame::bulk("k")])
    );
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(1));
}

//! `folio sync` over HTTP against a receiver on 127.0.0.1 that fails requests with 500s and
//! drops connections (before and after taking a batch in): retried until it exits 0, the
//! receiver, after dedup by (store_id, seq), holds every event exactly once, in log order,
//! each equal to `export --format events`; every resend of a batch carries the same
//! `Idempotency-Key` and bytes, and no key ever comes with two bodies (the receiver ties a key
//! to its body and answers 422 otherwise: two consumers, a batch grown between runs); the
//! cursor ends at the head. `--timeout-ms 0` is a usage error. A 4xx stops sync (exit 1,
//! `SYNC_REJECTED`) with the cursor where it was. Following picks up entries written between
//! polls, by other processes (the CLI) or by the same handle (the library). A follower never
//! holds the store across a send, a wait or a backoff: beside one whose receiver is down,
//! `folio post` and `folio balances` always succeed; with `--attempts-max` it outlives the
//! outage and then delivers everything, the held batch resent with the same bytes and key; an
//! idle follower does not open the store, so `folio head` beside it always succeeds; an ack
//! that finds the store in use is recorded once it is free, the batch not sent again.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod support {
    pub mod binary;
    pub mod every_entry;
}

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::binary::{consumers, cursor_of, exported, run, run_with_stdin, serial};
use support::every_entry::every_entry;

use folio::outbox::http::{SyncOptions, sync};
use folio::{Ledger, Overdraft, PostRequest, Posting, RevertRequest};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The receiver: a minimal HTTP/1.1 server, one connection at a time, `Connection: close`.

/// What the receiver does with request number n (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Takes the batch in and answers 200.
    Accept,
    /// Answers 500 without taking the batch.
    Fail,
    /// Closes the connection before reading the request.
    DropBefore,
    /// Takes the batch in, then closes without answering: the sender must resend it.
    DropAfter,
    /// Answers this 4xx status.
    Reject(u16),
    /// Answers 422: the request's `Idempotency-Key` came before with another body.
    KeyReused,
}

#[derive(Debug, Clone)]
struct Request {
    idempotency_key: String,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Received {
    /// Every request read in full, whatever the reply.
    requests: Vec<Request>,
    /// The bodies the receiver took in (Accept and DropAfter), in order.
    taken: Vec<Value>,
    count: usize,
    /// Every `Idempotency-Key` seen, with the body it came with: as Stripe-style APIs do, a
    /// key seen again with another body is answered 422, whatever the plan says.
    keys: BTreeMap<String, Vec<u8>>,
}

struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    fn start(plan: impl Fn(usize) -> Reply + Send + 'static) -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), plan)
    }

    /// A receiver on `listener` (a port that was down until now).
    fn start_on(listener: TcpListener, plan: impl Fn(usize) -> Reply + Send + 'static) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let number = {
                    let mut received = shared.lock().unwrap();
                    received.count += 1;
                    received.count - 1
                };
                serve(stream, plan(number), &shared);
            }
        });
        Receiver { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    fn received(&self) -> MutexGuard<'_, Received> {
        self.received.lock().unwrap()
    }
}

fn serve(stream: TcpStream, reply: Reply, received: &Mutex<Received>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if reply == Reply::DropBefore {
        return;
    }
    let Some(request) = read_request(&stream) else {
        return;
    };
    let reply = tie_key_to_body(&request, reply, received);
    let status = match reply {
        Reply::Accept | Reply::DropAfter => {
            let body = serde_json::from_slice(&request.body).unwrap();
            received.lock().unwrap().taken.push(body);
            200
        }
        Reply::Fail => 500,
        Reply::Reject(status) => status,
        Reply::KeyReused => 422,
        Reply::DropBefore => unreachable!(),
    };
    received.lock().unwrap().requests.push(request);
    if reply == Reply::DropAfter {
        return;
    }
    let text = match reply {
        Reply::KeyReused => "Idempotency-Key reused with another body",
        _ if status == 200 => "",
        _ => "no thanks",
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}

/// The reply to a request whose key was seen before with another body: 422.
fn tie_key_to_body(request: &Request, reply: Reply, received: &Mutex<Received>) -> Reply {
    let mut received = received.lock().unwrap();
    let known = received
        .keys
        .entry(request.idempotency_key.clone())
        .or_insert_with(|| request.body.clone());
    if *known == request.body {
        reply
    } else {
        Reply::KeyReused
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST /events HTTP/1.1"), "{line:?}");
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        idempotency_key: headers.get("idempotency-key").cloned().unwrap_or_default(),
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// The books.

fn sale(ledger: &Ledger, amount: &str) -> u64 {
    let posting = Posting::new("world", "till:1", amount, "EUR/2").unwrap();
    ledger
        .post(PostRequest::new("main", vec![posting]))
        .unwrap()
        .id
}

/// A store of `sales` sales with a policy, metadata and a revert among them; returns its head.
fn books(path: &Path, sales: u64) -> u64 {
    let ledger = Ledger::create(path).unwrap();
    for index in 0..sales {
        sale(&ledger, &format!("{}.25", index + 1));
        if index == 3 {
            ledger
                .set_overdraft("main", "till:1", "EUR/2", Overdraft::Unbounded)
                .unwrap();
        }
        if index == 10 {
            let metadata = [("k".to_string(), "v".to_string())].into_iter().collect();
            ledger
                .set_account_metadata("main", "till:1", metadata)
                .unwrap();
            ledger.revert(RevertRequest::new("main", 5)).unwrap();
        }
    }
    let head = ledger.head().seq;
    ledger.close().unwrap();
    head
}

/// Checks what the receiver took in: after dropping the events whose (store_id, seq) it
/// already had, every exported event exactly once, in order; a repeat is the same event.
fn check_delivered(taken: &[Value], expected: &[Value]) {
    let mut seen: BTreeMap<(String, u64), Value> = BTreeMap::new();
    let mut deduped = Vec::new();
    for body in taken {
        let store_id = body["store_id"].as_str().unwrap();
        for event in body["events"].as_array().unwrap() {
            assert_eq!(event["store_id"], store_id);
            let key = (store_id.to_string(), event["seq"].as_u64().unwrap());
            match seen.get(&key) {
                Some(earlier) => assert_eq!(earlier, event, "a repeat is the same event"),
                None => {
                    seen.insert(key, event.clone());
                    deduped.push(event.clone());
                }
            }
        }
    }
    assert_eq!(deduped.len(), expected.len(), "every event, once");
    for (got, want) in deduped.iter().zip(expected) {
        assert_eq!(got, want, "in log order, as export writes it");
    }
}

// ---------------------------------------------------------------------------------------------

/// A fixed mix: about a third of the requests fail one way or another.
fn flaky(number: usize) -> Reply {
    match (number * 7 + 3) % 10 {
        0 | 1 => Reply::Fail,
        2 => Reply::DropBefore,
        3 => Reply::DropAfter,
        _ => Reply::Accept,
    }
}

#[test]
fn sync_once_through_failures_delivers_every_event_once_in_order() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let head = books(&path, 40);
    let expected = exported(&path);
    assert_eq!(
        expected.len(),
        42,
        "40 sales, a metadata entry and a revert"
    );
    let receiver = Receiver::start(flaky);
    let store = path.to_str().unwrap();
    let url = receiver.url();
    let args = [
        "sync",
        "--store",
        store,
        "--consumer",
        "central",
        "--url",
        &url,
        "--batch",
        "5",
        "--once",
        "--retry-base-ms",
        "1",
        "--retry-cap-ms",
        "20",
        "--attempts-max",
        "3",
        "--timeout-ms",
        "5000",
        "--json",
    ];
    let mut runs = 0;
    let cursor_reported = loop {
        runs += 1;
        assert!(runs <= 30, "sync never finished");
        let (code, stdout, stderr) = run(&args);
        if code == 0 {
            let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            break last["sync"]["cursor"].as_u64().unwrap();
        }
        // Out of attempts on a bad streak: not a rejection, run again.
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("SYNC_UNAVAILABLE"), "{stderr}");
    };

    let received = receiver.received();
    check_delivered(&received.taken, &expected);
    assert!(
        received.requests.len() > expected.len() / 5,
        "failures made resends"
    );
    // A resend of a batch is the same request: same key, same bytes; different batches,
    // different keys.
    let mut by_key: BTreeMap<&str, &[u8]> = BTreeMap::new();
    let mut by_first_seq: BTreeMap<u64, &str> = BTreeMap::new();
    for request in &received.requests {
        assert_eq!(request.content_type, "application/json");
        let key = request.idempotency_key.as_str();
        assert!(!key.is_empty());
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let events = body["events"].as_array().unwrap();
        let (first, last) = (&events[0], &events[events.len() - 1]);
        let body_hash = blake3::hash(&request.body).to_hex();
        assert_eq!(
            key,
            format!(
                "{}-{}-{}-{}",
                body["store_id"].as_str().unwrap(),
                first["seq"],
                last["seq"],
                &body_hash[..32]
            )
        );
        if let Some(earlier) = by_key.insert(key, &request.body) {
            assert!(earlier == request.body.as_slice(), "same key, same bytes");
        }
        let first_seq = first["seq"].as_u64().unwrap();
        if let Some(earlier) = by_first_seq.insert(first_seq, key) {
            assert_eq!(
                earlier, key,
                "a resend of the batch at {first_seq} keeps its key"
            );
        }
    }
    assert!(
        by_key.len() < received.requests.len(),
        "some batches went twice"
    );
    drop(received);

    // The cursor is at the head, less sync's own last ack: acks of the earlier runs lie among
    // the entries it covered.
    let listing = consumers(&path);
    let central = &listing["consumers"][0];
    assert_eq!(central["name"], "central");
    let head_now = listing["head"].as_u64().unwrap();
    assert!(head_now > head);
    assert_eq!(
        central["cursor"],
        head_now - 1,
        "only its last ack lies after the cursor"
    );
    assert_eq!(central["cursor"], cursor_reported);
    assert_eq!(central["lag"], 0);

    // Nothing pending: another sync sends nothing.
    let before = receiver.received().requests.len();
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(receiver.received().requests.len(), before);
    let (code, stdout, _) = run(&["verify", "--store", store, "--json"]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn every_kind_of_entry_and_every_revert_chain_is_synced() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let books = every_entry(&path);
    let expected = exported(&path);
    assert_eq!(
        expected.len() as u64,
        books.head - books.silent.len() as u64,
        "an event for every entry that has one"
    );
    let receiver = Receiver::start(|_| Reply::Accept);
    let store = path.to_str().unwrap();
    let url = receiver.url();
    let args = [
        "sync",
        "--store",
        store,
        "--consumer",
        "central",
        "--url",
        &url,
        "--batch",
        "3",
        "--once",
        "--json",
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "no accepted entry stops sync: {stdout}{stderr}");
    check_delivered(&receiver.received().taken, &expected);
    let listing = consumers(&path);
    let head_now = listing["head"].as_u64().unwrap();
    assert_eq!(cursor_of(&path, "central"), head_now - 1);
}

#[test]
fn a_4xx_stops_sync_and_leaves_the_cursor_where_it_was() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 8);
    let expected = exported(&path);
    // Two batches go through; the third is refused.
    let receiver = Receiver::start(|number| {
        if number < 2 {
            Reply::Accept
        } else {
            Reply::Reject(422)
        }
    });
    let url = receiver.url();
    let store = path.to_str().unwrap();
    let args = [
        "sync",
        "--store",
        store,
        "--consumer",
        "central",
        "--url",
        &url,
        "--batch",
        "3",
        "--once",
        "--retry-base-ms",
        "1",
        "--json",
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}");
    let third_first = expected[6]["seq"].as_u64().unwrap();
    let third_last = expected[7]["seq"].as_u64().unwrap();
    let range = format!("{third_first}..={third_last}");
    assert!(stderr.contains("SYNC_REJECTED"), "{stderr}");
    assert!(stderr.contains("HTTP 422"), "{stderr}");
    assert!(stderr.contains(&range), "{stderr} names {range}");
    assert!(
        stderr.contains("no thanks"),
        "{stderr}: the receiver's answer"
    );
    let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "SYNC_REJECTED");

    let cursor = cursor_of(&path, "central");
    assert_eq!(
        cursor,
        expected[5]["seq"].as_u64().unwrap(),
        "two batches acked"
    );
    assert_eq!(receiver.received().taken.len(), 2);
    // Again: refused again, nothing skipped.
    let (code, _, _) = run(&args);
    assert_eq!(code, 1);
    assert_eq!(cursor_of(&path, "central"), cursor);
    let listing = consumers(&path);
    assert_eq!(listing["consumers"][0]["lag"], expected.len() as u64 - 6);

    // The cursor is in the log: a replay of the state keeps it, and verify agrees.
    let (code, _, stderr) = run(&["replay", "--store", store]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(consumers(&path), listing);
    let (code, stdout, _) = run(&["verify", "--store", store, "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let (code, table, _) = run(&["consumers", "--store", store]);
    assert_eq!(code, 0);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["CONSUMER", "CURSOR", "LAG"]);
    assert_eq!(rows[1], ["central", cursor.to_string().as_str(), "2"]);
}

#[test]
fn bad_flags_are_usage_errors_before_the_store_is_touched() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 1);
    let store = path.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--url", "ftp://x", "--consumer", "c"], "USAGE"),
        // Every attempt would time out at once (with --attempts-max, SYNC_UNAVAILABLE).
        (
            &[
                "--url",
                "http://127.0.0.1:9",
                "--consumer",
                "c",
                "--timeout-ms",
                "0",
                "--attempts-max",
                "1",
            ],
            "USAGE",
        ),
        (
            &["--url", "http://127.0.0.1:9", "--consumer", "a b"],
            "INVALID_INPUT",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:9",
                "--consumer",
                "c",
                "--batch",
                "0",
            ],
            "USAGE",
        ),
    ];
    for (flags, code) in cases {
        let mut args = vec!["sync", "--store", store, "--once"];
        args.extend_from_slice(flags);
        let (exit, _, stderr) = run(&args);
        assert_ne!(exit, 0);
        assert!(stderr.contains(code), "{flags:?}: {stderr}");
    }
    assert_eq!(consumers(&path)["consumers"], Value::Array(Vec::new()));
}

/// `folio sync --once` of `consumer` to `url`, `batch` events a request, at most `attempts`.
fn sync_once(path: &Path, consumer: &str, url: &str, batch: &str, attempts: &str) -> (i32, String) {
    let store = path.to_str().unwrap();
    let (code, _, stderr) = run(&[
        "sync",
        "--store",
        store,
        "--consumer",
        consumer,
        "--url",
        url,
        "--batch",
        batch,
        "--once",
        "--retry-base-ms",
        "1",
        "--attempts-max",
        attempts,
    ]);
    (code, stderr)
}

/// Checks that no two requests received carried one key with two bodies.
fn check_one_body_per_key(requests: &[Request]) {
    let mut bodies: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for request in requests {
        let body = bodies
            .entry(request.idempotency_key.as_str())
            .or_insert(&request.body);
        assert_eq!(
            *body,
            request.body.as_slice(),
            "{}",
            request.idempotency_key
        );
    }
}

#[test]
fn two_consumers_sending_the_same_events_use_different_keys() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let receiver = Receiver::start(|_| Reply::Accept);
    let url = receiver.url();
    // The first batch of each (2 events) ends before the third event: the same events and the
    // same seq_last, so the bodies differ only by their `consumer`.
    for consumer in ["central", "audit"] {
        let (code, stderr) = sync_once(&path, consumer, &url, "2", "1");
        assert_eq!(code, 0, "{consumer}: {stderr}");
    }
    let received = receiver.received();
    assert_eq!(received.requests.len(), 4);
    let (central, audit) = (&received.requests[0], &received.requests[2]);
    let central_body: Value = serde_json::from_slice(&central.body).unwrap();
    let audit_body: Value = serde_json::from_slice(&audit.body).unwrap();
    assert_eq!(central_body["events"], audit_body["events"]);
    assert_eq!(central_body["seq_last"], audit_body["seq_last"]);
    assert_ne!(central.idempotency_key, audit.idempotency_key);
    check_one_body_per_key(&received.requests);
}

#[test]
fn a_batch_resent_after_entries_without_an_event_never_reuses_its_key() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    // The first request is taken in but its answer is lost; every later one is accepted.
    let receiver = Receiver::start(|number| {
        if number == 0 {
            Reply::DropAfter
        } else {
            Reply::Accept
        }
    });
    let url = receiver.url();
    let (code, stderr) = sync_once(&path, "central", &url, "100", "1");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("SYNC_UNAVAILABLE"), "{stderr}");
    // An entry without an event (a policy) before the next run: the same events, but the
    // batch now covers one more entry, so its body's `seq_last` moves.
    let head = {
        let ledger = Ledger::open(&path).unwrap();
        ledger
            .set_overdraft("main", "till:2", "EUR/2", Overdraft::Unbounded)
            .unwrap();
        let head = ledger.head().seq;
        ledger.close().unwrap();
        head
    };
    let (code, stderr) = sync_once(&path, "central", &url, "100", "1");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cursor_of(&path, "central"), head);
    let received = receiver.received();
    assert_eq!(received.requests.len(), 2);
    let (first, second) = (&received.requests[0], &received.requests[1]);
    let first_body: Value = serde_json::from_slice(&first.body).unwrap();
    let second_body: Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(first_body["events"], second_body["events"]);
    assert_ne!(first_body["seq_last"], second_body["seq_last"]);
    assert_ne!(first.idempotency_key, second.idempotency_key);
    check_one_body_per_key(&received.requests);
}

#[test]
fn following_picks_up_entries_other_processes_write_between_polls() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let receiver = Receiver::start(|_| Reply::Accept);
    let url = receiver.url();
    let store = path.to_str().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("folio");
    let mut child = std::process::Command::new(binary)
        .args([
            "sync",
            "--store",
            store,
            "--consumer",
            "central",
            "--url",
            &url,
            "--poll-ms",
            "20",
        ])
        .env_remove("FOLIO_STORE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Write more while it follows: each write waits for a moment the store is free.
    for amount in ["7", "8", "9"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Ledger::open(&path) {
                Ok(ledger) => {
                    sale(&ledger, amount);
                    ledger.close().unwrap();
                    break;
                }
                Err(error) if error.code() == "STORE_IN_USE" => {
                    assert!(Instant::now() < deadline, "the store never came free");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => panic!("{error}"),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let expected = loop {
        let events: usize = receiver
            .received()
            .taken
            .iter()
            .map(|body| body["events"].as_array().unwrap().len())
            .sum();
        if events >= 6 {
            break events;
        }
        assert!(Instant::now() < deadline, "only {events} events arrived");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(expected, 6);
    let taken = receiver.received().taken.clone();
    check_delivered(&taken, &exported(&path));
}

#[test]
fn the_library_follows_its_own_writes_until_stopped() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    let receiver = Receiver::start(|number| {
        if number % 3 == 1 {
            Reply::Fail
        } else {
            Reply::Accept
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let options = SyncOptions {
        retry_base: Duration::from_millis(1),
        retry_cap: Duration::from_millis(5),
        poll_interval: Duration::from_millis(5),
        stop: Some(stop.clone()),
        ..SyncOptions::new(receiver.url(), "central")
    };
    let follower = {
        let ledger = ledger.clone();
        std::thread::spawn(move || sync(&ledger, &options, &mut |_| {}))
    };
    let mut last_sale = 0;
    for amount in 1..=20 {
        last_sale = sale(&ledger, &amount.to_string());
        if amount % 5 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.cursor("central").unwrap() < last_sale {
        assert!(Instant::now() < deadline, "the follower fell behind");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let report = follower.join().unwrap().unwrap();
    assert_eq!(report.events, 20);
    assert!(report.retries > 0);
    assert_eq!(ledger.consumers().unwrap()[0].lag, 0);
    let mut exported = Vec::new();
    folio::export::export_log(ledger.log(), 0, &mut exported, &mut |_, _| {}).unwrap();
    let expected: Vec<Value> = exported
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    check_delivered(&receiver.received().taken, &expected);
    ledger.close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The store's lock while following (issue 13, item 1): the store is open only to read a batch
// and to record an ack, never across a send, a wait or a backoff, and an idle poll does not
// open it.

/// One sale as `folio post` reads it.
const SALE_LINE: &[u8] =
    br#"{"ledger":"main","postings":[{"source":"world","destination":"till:1","amount":"1","asset":"EUR/2"}]}"#;

/// A URL on 127.0.0.1 where nothing listens (a port just handed out and given back), and
/// that port's address, to listen on later.
fn down_url() -> (String, SocketAddr) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    (format!("http://{addr}/events"), addr)
}

/// Spawns `folio sync` following `store` to `url` with these extra flags; stderr piped.
fn follower(store: &str, url: &str, flags: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("folio"))
        .args([
            "sync",
            "--store",
            store,
            "--consumer",
            "central",
            "--url",
            url,
        ])
        .args(flags)
        .env_remove("FOLIO_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops a follower and returns its stderr.
fn stop(mut child: std::process::Child) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// Posts a sale and reads the balances with the CLI, again and again for `period`: every one
/// must succeed (before issue 13 they failed with STORE_IN_USE while a follower retried).
/// Returns how many sales were posted.
fn post_and_read_for(store: &str, period: Duration) -> u64 {
    let deadline = Instant::now() + period;
    let mut posted = 0;
    while Instant::now() < deadline {
        let (code, _, stderr) = run_with_stdin(&["post", "--store", store], SALE_LINE);
        assert_eq!(code, 0, "post beside the follower: {stderr}");
        posted += 1;
        let (code, _, stderr) = run(&["balances", "--store", store, "--ledger", "main"]);
        assert_eq!(code, 0, "balances beside the follower: {stderr}");
    }
    posted
}

/// Waits until the receiver has taken `events` events (after dedup) or 20 s have passed.
fn wait_for_events(receiver: &Receiver, events: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seqs: std::collections::BTreeSet<u64> = receiver
            .received()
            .taken
            .iter()
            .flat_map(|body| body["events"].as_array().unwrap().clone())
            .map(|event| event["seq"].as_u64().unwrap())
            .collect();
        if seqs.len() >= events {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {events} events arrived",
            seqs.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_follower_waiting_for_a_receiver_that_is_down_never_locks_out_post_or_balances() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let store = path.to_str().unwrap();
    let (url, _) = down_url();
    let flags = [
        "--retry-base-ms",
        "50",
        "--retry-cap-ms",
        "200",
        "--poll-ms",
        "50",
    ];
    let child = follower(store, &url, &flags);
    std::thread::sleep(Duration::from_millis(300));
    // About a dozen retry periods.
    let posted = post_and_read_for(store, Duration::from_secs(2));
    let stderr = stop(child);
    assert!(posted >= 3, "{posted} posts");
    assert!(
        stderr.matches("retrying in").count() >= 5,
        "it retried all along: {stderr}"
    );
    assert_eq!(cursor_of(&path, "central"), 0);
}

#[test]
fn with_attempts_max_a_follower_outlives_an_outage_and_delivers_everything_when_back() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let store = path.to_str().unwrap();
    let (url, addr) = down_url();
    let flags = [
        "--attempts-max",
        "1",
        "--retry-base-ms",
        "10",
        "--poll-ms",
        "50",
    ];
    let mut child = follower(store, &url, &flags);
    // Past its start (it opens the store for the store's id, the cursor, and a batch): from
    // then on it holds that batch and opens nothing until it is delivered.
    std::thread::sleep(Duration::from_millis(300));
    let posted = post_and_read_for(store, Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "following goes on through the outage"
    );
    let expected = exported(&path);
    assert_eq!(expected.len() as u64, 3 + posted);
    // Back, but the first requests fail: each is one attempt, out of attempts, so the batch
    // waits a poll and goes again, the same bytes with the same key.
    let receiver = Receiver::start_on(TcpListener::bind(addr).unwrap(), |number| {
        if number < 3 {
            Reply::Fail
        } else {
            Reply::Accept
        }
    });
    wait_for_events(&receiver, expected.len());
    assert!(child.try_wait().unwrap().is_none(), "still following");
    let stderr = stop(child);
    assert!(stderr.contains("sending the same batch again"), "{stderr}");
    let received = receiver.received();
    check_delivered(&received.taken, &expected);
    check_one_body_per_key(&received.requests);
    let (first, second) = (&received.requests[0], &received.requests[3]);
    assert_eq!(
        first.idempotency_key, second.idempotency_key,
        "the same batch again"
    );
    assert_eq!(first.body, second.body);
}

#[test]
fn a_following_sync_over_an_idle_store_leaves_the_store_to_other_commands() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let store = path.to_str().unwrap();
    let receiver = Receiver::start(|_| Reply::Accept);
    let mut child = follower(store, &receiver.url(), &["--poll-ms", "5", "--json"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout.next().unwrap().unwrap();
    assert!(line.contains("\"delivered\""), "{line}");
    // Caught up; its own ack makes one more read, then it only looks at the log's tail.
    std::thread::sleep(Duration::from_millis(200));
    let mut failed = Vec::new();
    for _ in 0..40 {
        let (code, _, stderr) = run(&["head", "--store", store]);
        if code != 0 {
            failed.push(stderr);
        }
    }
    let stderr = stop(child);
    assert!(
        failed.is_empty(),
        "{} of 40 `folio head` failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(receiver.received().requests.len(), 1, "{stderr}");
}

#[test]
fn the_log_tail_moves_with_every_append_and_not_with_an_open_and_close() {
    use folio::log::tail_fingerprint;
    use folio::log::vfs::RealFs;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 2);
    let mut seen = tail_fingerprint(&RealFs, &path).unwrap();
    for amount in ["1", "2", "3"] {
        // Opened and closed without a write: the follower's own read leaves it as it was.
        Ledger::open(&path).unwrap().close().unwrap();
        assert_eq!(tail_fingerprint(&RealFs, &path).unwrap(), seen);
        let ledger = Ledger::open(&path).unwrap();
        sale(&ledger, amount);
        ledger.close().unwrap();
        let now = tail_fingerprint(&RealFs, &path).unwrap();
        assert_ne!(now, seen, "an append moves the tail");
        seen = now;
    }
    let missing = dir.path().join("nowhere");
    assert_eq!(
        folio::Error::from(tail_fingerprint(&RealFs, &missing).unwrap_err()).code(),
        "NOT_A_STORE"
    );
}

#[test]
fn an_ack_that_finds_the_store_in_use_is_kept_and_recorded_once_it_is_free() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let store = path.to_str().unwrap();
    // While the first request is in flight, another process (here a thread of the test) takes
    // the store and keeps it for 300 ms: sync's ack finds it in use and must wait for it.
    let held = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (path, held) = (path.clone(), held.clone());
        Receiver::start(move |number| {
            if number == 0 {
                // Before issue 13 sync held the store while it sent: `held` stays false.
                let Ok(ledger) = Ledger::open(&path) else {
                    return Reply::Accept;
                };
                held.store(true, Ordering::SeqCst);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    ledger.close().unwrap();
                });
            }
            Reply::Accept
        })
    };
    let url = receiver.url();
    let (code, stdout, stderr) = run(&[
        "sync",
        "--store",
        store,
        "--consumer",
        "central",
        "--url",
        &url,
        "--once",
        "--poll-ms",
        "20",
        "--json",
    ]);
    assert!(
        held.load(Ordering::SeqCst),
        "the store was free during the send"
    );
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["sync"]["events"], 3);
    assert_eq!(
        receiver.received().requests.len(),
        1,
        "delivered once, acked once"
    );
    let listing = consumers(&path);
    assert_eq!(listing["consumers"][0]["cursor"], report["sync"]["cursor"]);
    assert_eq!(listing["consumers"][0]["lag"], 0);
}

//! `folio sync --nats` against a real `nats-server -js` that each test starts on a free port
//! (the `nats-server` binary must be on PATH; `.ci/run` installs Debian's). Killed with SIGKILL
//! mid-stream again and again and restarted, sync ends with the stream holding every event
//! exactly once, in log order, each message equal to the event `export --format events`
//! writes, with `Nats-Msg-Id: <store_id>-<seq>`, and the cursor at the head: JetStream's
//! duplicate window drops what a killed run had published but not yet acked. A server shut
//! down mid-stream and restarted is retried through until the same holds. A subject no stream
//! takes, and a server without JetStream, stop sync at once (exit 1, `NATS_REJECTED`) with the
//! cursor unchanged; an unreachable server is retried, then `SYNC_UNAVAILABLE`. The stream never
//! holds an event after a missing earlier one: an event over the stream's message size stops
//! sync with nothing after it stored, and one refused by a full stream (`discard new`) is
//! retried with nothing after it stored until there is room, then the rest arrives in order.
//! Beside a follower whose server is stopped, `folio post` and `folio balances` succeed, and the
//! follower (`--attempts-max 1`) outlives the outage and then publishes everything in order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod support {
    pub mod binary;
}

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::binary::{consumers, cursor_of, exported, run, run_with_stdin, serial};

use async_nats::jetstream;
use folio::{Ledger, PostRequest, Posting};
use serde_json::Value;

const SUBJECT: &str = "folio.events";

// ---------------------------------------------------------------------------------------------
// The server.

/// A `nats-server -js` on a free port of 127.0.0.1, storing in its own temporary directory;
/// killed when dropped.
struct Server {
    child: Child,
    port: u16,
    /// The JetStream storage directory (`-sd`); taken by `stop`.
    store: Option<tempfile::TempDir>,
}

impl Server {
    fn start() -> Server {
        // A port the OS just handed out and took back: free, barring a race with another
        // process, which the wait in `start_at` would report.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Server::start_at(port, tempfile::tempdir().unwrap())
    }

    /// A `nats-server` without JetStream (no `-js`) on a free port of 127.0.0.1.
    fn start_without_jetstream() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let command = std::process::Command::new("nats-server");
        Server::spawn(command, port, tempfile::tempdir().unwrap())
    }

    /// Starts a server on `port` storing in `store` (again, after `stop`).
    fn start_at(port: u16, store: tempfile::TempDir) -> Server {
        let mut command = std::process::Command::new("nats-server");
        command.args(["-js", "-sd"]).arg(store.path());
        Server::spawn(command, port, store)
    }

    /// Runs `command` (`nats-server` and its JetStream flags) on `port` of 127.0.0.1 and waits
    /// until it listens.
    fn spawn(mut command: std::process::Command, port: u16, store: tempfile::TempDir) -> Server {
        let spawned = command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => panic!(
                "cannot start `nats-server` ({error}): these tests need it on PATH \
                 (Debian: apt-get install nats-server; .ci/run installs it)"
            ),
        };
        let server = Server {
            child,
            port,
            store: Some(store),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Shuts the server down (SIGTERM: it flushes its streams) and returns its storage.
    fn stop(mut self) -> (u16, tempfile::TempDir) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid, which it still is: it is not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.child.wait().unwrap();
        (self.port, self.store.take().unwrap())
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
/// `folio sync --store STORE --consumer stream --nats URL --subject SUBJECT` and `more`.
fn sync_args<'a>(store: &'a str, url: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sync",
        "--store",
        store,
        "--consumer",
        "stream",
        "--nats",
        url,
        "--subject",
        SUBJECT,
    ];
    args.extend_from_slice(more);
    args
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn jetstream_of(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

/// Creates the stream sync publishes to: one subject, a ten-minute duplicate window.
fn create_stream(url: &str) {
    runtime().block_on(async {
        let jetstream = jetstream_of(url).await;
        jetstream
            .create_stream(jetstream::stream::Config {
                name: "FOLIO".to_string(),
                subjects: vec![SUBJECT.to_string()],
                duplicate_window: Duration::from_secs(600),
                ..Default::default()
            })
            .await
            .unwrap();
    });
}

/// Publishes `events` as a run of sync would, and waits for JetStream's acks: what a run
/// killed after JetStream stored them, before it acked them in the store, leaves behind.
fn publish_ahead(url: &str, events: &[Value]) {
    runtime().block_on(async {
        let jetstream = jetstream_of(url).await;
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            let id = format!("{}-{}", event["store_id"].as_str().unwrap(), event["seq"]);
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            let payload = serde_json::to_vec(event).unwrap().into();
            let ack = jetstream.publish_with_headers(SUBJECT, headers, payload);
            assert!(!ack.await.unwrap().await.unwrap().duplicate);
        }
    });
}

/// Every message of the stream, in stream order: (Nats-Msg-Id, payload as JSON).
fn stream_messages(url: &str) -> Vec<(String, Value)> {
    runtime().block_on(async {
        let jetstream = jetstream_of(url).await;
        let mut stream = jetstream.get_stream("FOLIO").await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        assert_eq!(state.messages, state.last_sequence, "no gaps");
        if state.messages > 0 {
            assert_eq!(state.first_sequence, 1);
        }
        let mut messages = Vec::new();
        for sequence in 1..=state.last_sequence {
            let message = stream.get_raw_message(sequence).await.unwrap();
            assert_eq!(message.subject.as_str(), SUBJECT);
            let id = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .expect("every message has a Nats-Msg-Id")
                .as_str()
                .to_string();
            messages.push((id, serde_json::from_slice(&message.payload).unwrap()));
        }
        messages
    })
}

// ---------------------------------------------------------------------------------------------
// The books.

/// A store of `sales` sales; returns its head.
fn books(path: &Path, sales: u64) -> u64 {
    let ledger = Ledger::create(path).unwrap();
    for index in 0..sales {
        let amount = format!("{}.25", index + 1);
        let posting = Posting::new("world", "till:1", &amount, "EUR/2").unwrap();
        ledger
            .post(PostRequest::new("main", vec![posting]))
            .unwrap();
    }
    let head = ledger.head().seq;
    ledger.close().unwrap();
    head
}

// ---------------------------------------------------------------------------------------------

#[test]
fn sync_killed_mid_stream_and_restarted_publishes_every_event_once_in_order() {
    let _serial = serial();
    let server = Server::start();
    create_stream(&server.url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let head = books(&path, 300);
    let expected = exported(&path);
    assert_eq!(expected.len(), 300);
    let store = path.to_str().unwrap();
    let url = server.url();
    let args = sync_args(store, &url, &["--batch", "2", "--retry-base-ms", "10"]);
    // As if a first run had published ten events and died before acking them in the store.
    publish_ahead(&url, &expected[..10]);
    let binary = assert_cmd::cargo::cargo_bin("folio");
    // Follow mode, SIGKILLed eight times, each time right after it reported (on stdout) its
    // 2nd, 5th, 8th ... acked batch of the run: while it publishes the next batch, between a
    // batch's acks from JetStream and its ack in the store, or in the middle of that ack.
    let mut cursors = Vec::new();
    let mut ahead = Vec::new();
    for round in 0..8usize {
        let mut child = std::process::Command::new(&binary)
            .args(&args)
            .arg("--json")
            .env_remove("FOLIO_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let delivered = stdout
            .lines()
            .map(|line| line.unwrap())
            .filter(|line| line.contains("\"delivered\""))
            .take(2 + 3 * round)
            .count();
        // A little later each round, to land at different points of the next batch.
        std::thread::sleep(Duration::from_micros(150 * round as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(delivered, 2 + 3 * round, "the run reported its batches");
        let cursor = cursor_of(&path, "stream");
        if let Some(&last) = cursors.last() {
            assert!(
                cursor > last,
                "each run acked batches: {cursors:?} then {cursor}"
            );
        }
        cursors.push(cursor);
        // Events the stream holds beyond those acked in the store: the next run publishes
        // them again, and the duplicate window must drop them.
        let acked = expected
            .iter()
            .filter(|e| e["seq"].as_u64() <= Some(cursor))
            .count();
        ahead.push(stream_messages(&url).len() - acked);
    }
    assert!(cursors[0] < head, "killed mid-stream: {cursors:?}");
    let mut once = args.to_vec();
    once.extend(["--once", "--json"]);
    let (code, stdout, stderr) = run(&once);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let cursor = report["sync"]["cursor"].as_u64().unwrap();
    assert!(cursor >= head, "{cursor} covers the books' {head} entries");

    let messages = stream_messages(&url);
    assert_eq!(messages.len(), expected.len(), "every event, once");
    for ((id, event), want) in messages.iter().zip(&expected) {
        assert_eq!(event, want, "in log order, as export writes it");
        let store_id = want["store_id"].as_str().unwrap();
        assert_eq!(id, &format!("{store_id}-{}", want["seq"]));
    }
    let listing = consumers(&path);
    assert_eq!(listing["consumers"][0]["name"], "stream");
    assert_eq!(listing["consumers"][0]["cursor"], cursor);
    assert_eq!(listing["consumers"][0]["lag"], 0);
    // Only its own last ack lies after the cursor.
    assert_eq!(listing["head"], cursor + 1);
    eprintln!(
        "cursors after each kill: {cursors:?}; head {head}; events in the stream beyond \
               the cursor after each kill: {ahead:?}"
    );

    // Caught up: another run publishes nothing and the stream is unchanged.
    let (code, stdout, stderr) = run(&once);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["sync"]["events"], 0);
    assert_eq!(stream_messages(&url).len(), expected.len());
}

#[test]
fn a_server_restarted_mid_stream_is_retried_until_every_event_is_in_once() {
    let _serial = serial();
    let server = Server::start();
    let url = server.url();
    create_stream(&url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 300);
    let expected = exported(&path);
    let store = path.to_str().unwrap();
    let args = sync_args(
        store,
        &url,
        &[
            "--batch",
            "2",
            "--once",
            "--json",
            "--retry-base-ms",
            "50",
            "--retry-cap-ms",
            "200",
            "--timeout-ms",
            "2000",
        ],
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("folio"))
        .args(args)
        .env_remove("FOLIO_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..5 {
        let line = stdout.next().unwrap().unwrap();
        assert!(line.contains("\"delivered\""), "{line}");
    }
    // Down for a while, mid-stream; then back on the same port with the same storage. Sync is
    // paused (SIGSTOP) while the server shuts down, so that it cannot finish first.
    let sync_pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(sync_pid, libc::SIGSTOP) }, 0);
    let (port, storage) = server.stop();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(sync_pid, libc::SIGCONT) }, 0);
    // Down for longer than `--timeout-ms`: the publish in flight cannot be acknowledged by a
    // client that reconnects in time, so the run must retry (with 500 ms it sometimes did not).
    std::thread::sleep(Duration::from_millis(2_500));
    let _server = Server::start_at(port, storage);
    let rest: Vec<String> = stdout.map(|line| line.unwrap()).collect();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("retrying in"), "it retried: {stderr}");
    let report: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert!(report["sync"]["retries"].as_u64().unwrap() >= 1);

    let messages = stream_messages(&url);
    assert_eq!(messages.len(), expected.len(), "every event, once");
    for ((_, event), want) in messages.iter().zip(&expected) {
        assert_eq!(event, want, "in log order");
    }
    assert_eq!(consumers(&path)["consumers"][0]["lag"], 0);
}

#[test]
fn a_subject_without_a_stream_stops_sync_with_the_cursor_unchanged() {
    let _serial = serial();
    let server = Server::start();
    create_stream(&server.url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 5);
    let store = path.to_str().unwrap();
    let url = server.url();
    let args = [
        "sync",
        "--store",
        store,
        "--consumer",
        "stream",
        "--nats",
        &url,
        "--subject",
        "nowhere.events",
        "--once",
        "--retry-base-ms",
        "1",
        "--json",
    ];
    for _ in 0..2 {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("NATS_REJECTED"), "{stderr}");
        assert!(stderr.contains("no stream takes this subject"), "{stderr}");
        let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(error["error"]["code"], "NATS_REJECTED");
        assert_eq!(cursor_of(&path, "stream"), 0);
    }
    assert_eq!(consumers(&path)["consumers"], Value::Array(Vec::new()));
    assert!(stream_messages(&url).is_empty());
}

#[test]
fn a_server_without_jetstream_stops_sync_at_once_with_the_cursor_unchanged() {
    let _serial = serial();
    let server = Server::start_without_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let store = path.to_str().unwrap();
    let url = server.url();
    // Without the fix every attempt failed with "no stream found" and was retried: the
    // attempts bound makes that SYNC_UNAVAILABLE rather than a test that never ends.
    let args = sync_args(
        store,
        &url,
        &[
            "--once",
            "--retry-base-ms",
            "1",
            "--attempts-max",
            "5",
            "--json",
        ],
    );
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("NATS_REJECTED"), "{stderr}");
    assert!(stderr.contains("does not run JetStream"), "{stderr}");
    assert!(!stderr.contains("retrying in"), "stopped at once: {stderr}");
    let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "NATS_REJECTED");
    assert_eq!(cursor_of(&path, "stream"), 0);
    assert_eq!(consumers(&path)["consumers"], Value::Array(Vec::new()));
}

#[test]
fn an_unreachable_server_is_retried_then_unavailable() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 2);
    // Nothing listens on a port just handed out and given back.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let store = path.to_str().unwrap();
    let args = sync_args(
        store,
        &url,
        &[
            "--once",
            "--retry-base-ms",
            "1",
            "--attempts-max",
            "3",
            "--timeout-ms",
            "2000",
        ],
    );
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("SYNC_UNAVAILABLE"), "{stderr}");
    assert!(stderr.contains("3 attempts"), "{stderr}");
    assert_eq!(stderr.matches("retrying in").count(), 2, "{stderr}");
    assert_eq!(cursor_of(&path, "stream"), 0);
}

#[test]
fn nats_flags_are_checked_before_the_store_is_touched() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 1);
    let store = path.to_str().unwrap();
    let cases: [&[&str]; 5] = [
        // --subject is required with --nats, and only with it.
        &["--nats", "nats://127.0.0.1:9"],
        &["--url", "http://127.0.0.1:9", "--subject", SUBJECT],
        &[
            "--url",
            "http://127.0.0.1:9",
            "--nats",
            "nats://127.0.0.1:9",
        ],
        &["--nats", "http://127.0.0.1:9", "--subject", SUBJECT],
        &["--nats", "nats://127.0.0.1:9", "--subject", "folio.*"],
    ];
    for flags in cases {
        let mut args = vec!["sync", "--store", store, "--once", "--consumer", "c"];
        args.extend_from_slice(flags);
        let (exit, _, stderr) = run(&args);
        assert_eq!(exit, 2, "{flags:?}: {stderr}");
    }
    assert_eq!(consumers(&path)["consumers"], Value::Array(Vec::new()));
}

// ---------------------------------------------------------------------------------------------
// Order in the stream: one event in flight at a time (issue 13, item 4).

/// Creates the stream sync publishes to, as `create_stream` does, with `limit` applied to its
/// configuration (a message size or byte bound).
fn create_stream_with(url: &str, limit: impl FnOnce(&mut jetstream::stream::Config)) {
    runtime().block_on(async {
        let jetstream = jetstream_of(url).await;
        let mut config = jetstream::stream::Config {
            name: "FOLIO".to_string(),
            subjects: vec![SUBJECT.to_string()],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        };
        limit(&mut config);
        jetstream.create_stream(config).await.unwrap();
    });
}

/// The seq of every event the stream holds, in stream order (purged messages excluded).
fn stream_seqs(url: &str) -> Vec<u64> {
    runtime().block_on(async {
        let jetstream = jetstream_of(url).await;
        let mut stream = jetstream.get_stream("FOLIO").await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut seqs = Vec::new();
        if state.messages == 0 {
            return seqs;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = stream.get_raw_message(sequence).await.unwrap();
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            seqs.push(event["seq"].as_u64().unwrap());
        }
        seqs
    })
}

/// Empties the stream and lifts its byte bound: room for every event.
fn purge_and_lift_limits(url: &str) {
    runtime().block_on(async {
        let jetstream = jetstream_of(url).await;
        let mut stream = jetstream.get_stream("FOLIO").await.unwrap();
        stream.purge().await.unwrap();
        let mut config = stream.info().await.unwrap().config.clone();
        config.max_bytes = -1;
        jetstream.update_stream(config).await.unwrap();
    });
}

/// A store of `sales` sales (entry n + 1 is sale n, entry 1 the store's creation); the sale
/// at entry `big_seq` carries `big_bytes` of metadata, so that its event is that much larger.
fn books_with_a_big_event(path: &Path, sales: u64, big_seq: u64, big_bytes: usize) {
    let ledger = Ledger::create(path).unwrap();
    for index in 0..sales {
        let amount = format!("{}.25", index + 1);
        let posting = Posting::new("world", "till:1", &amount, "EUR/2").unwrap();
        let mut request = PostRequest::new("main", vec![posting]);
        if index + 2 == big_seq {
            // Values are at most 4096 bytes: split the padding over keys.
            for (key, start) in (0..big_bytes).step_by(4000).enumerate() {
                let length = (big_bytes - start).min(4000);
                request = request.with_metadata(format!("pad{key}"), "x".repeat(length));
            }
        }
        assert_eq!(ledger.post(request).unwrap().id, index + 2);
    }
    ledger.close().unwrap();
}

#[test]
fn an_event_over_the_message_size_stops_sync_with_nothing_after_it_in_the_stream() {
    let _serial = serial();
    let server = Server::start();
    let url = server.url();
    create_stream_with(&url, |config| config.max_message_size = 3000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books_with_a_big_event(&path, 12, 7, 4_700);
    let expected = exported(&path);
    assert!(
        serde_json::to_vec(&expected[5]).unwrap().len() > 4_800,
        "event 7 is 4.9 KB"
    );
    let store = path.to_str().unwrap();
    let args = sync_args(
        store,
        &url,
        &["--once", "--retry-base-ms", "1", "--attempts-max", "3"],
    );
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("NATS_REJECTED"), "{stderr}");
    assert!(stderr.contains("entry 7"), "{stderr}");
    assert!(stderr.contains("cursor stays at 0"), "{stderr}");
    assert_eq!(cursor_of(&path, "stream"), 0);
    // Before issue 13 (256 events in flight) the stream held 2..=6 and 8..=13: a gap.
    assert_eq!(
        stream_seqs(&url),
        [2, 3, 4, 5, 6],
        "nothing after the refused event"
    );
}

#[test]
fn a_full_stream_never_holds_an_event_after_a_missing_one_and_takes_the_rest_in_order() {
    let _serial = serial();
    let server = Server::start();
    let url = server.url();
    create_stream_with(&url, |config| {
        config.max_bytes = 9_000;
        config.discard = jetstream::stream::DiscardPolicy::New;
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books_with_a_big_event(&path, 12, 4, 7_600);
    let expected = exported(&path);
    assert!(
        serde_json::to_vec(&expected[2]).unwrap().len() > 7_700,
        "event 4 is 7.8 KB"
    );
    let store = path.to_str().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("folio"))
        .args([
            "sync",
            "--store",
            store,
            "--consumer",
            "stream",
            "--nats",
            &url,
            "--subject",
            SUBJECT,
            "--retry-base-ms",
            "20",
            "--retry-cap-ms",
            "50",
            "--poll-ms",
            "20",
        ])
        .env_remove("FOLIO_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The stream is full once 2 and 3 are in: event 4 is refused (503) and retried, and
    // nothing after it may be stored meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut observed = Vec::new();
    while observed.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "the stream never filled: {observed:?}"
        );
        let seqs = stream_seqs(&url);
        assert!(
            seqs.iter().all(|seq| *seq < 4),
            "an event stored after the missing event 4: {seqs:?}"
        );
        if seqs == [2, 3] {
            observed.push(seqs);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Room again: the rest arrives, in log order.
    purge_and_lift_limits(&url);
    let want: Vec<u64> = (4..=13).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seqs = stream_seqs(&url);
        assert!(
            want.starts_with(&seqs),
            "after the purge, log order without gaps: {seqs:?}"
        );
        if seqs == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rest never arrived: {seqs:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The store's lock while following (issue 13, item 1).

/// One sale as `folio post` reads it.
const SALE_LINE: &[u8] =
    br#"{"ledger":"main","postings":[{"source":"world","destination":"till:1","amount":"1","asset":"EUR/2"}]}"#;

#[test]
fn a_follower_waiting_for_a_stopped_server_never_locks_out_post_or_balances() {
    let _serial = serial();
    let server = Server::start();
    let url = server.url();
    create_stream(&url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    books(&path, 3);
    let store = path.to_str().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("folio"))
        .args([
            "sync",
            "--store",
            store,
            "--consumer",
            "stream",
            "--nats",
            &url,
        ])
        .args(["--subject", SUBJECT, "--json", "--attempts-max", "1"])
        .args([
            "--retry-base-ms",
            "20",
            "--poll-ms",
            "50",
            "--timeout-ms",
            "500",
        ])
        .env_remove("FOLIO_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout.next().unwrap().unwrap();
    assert!(line.contains("\"delivered\""), "{line}");
    // Down: a post makes a batch that cannot be published; posts and reads beside the
    // follower all succeed while it fails attempt after attempt and waits for the next poll.
    let (port, storage) = server.stop();
    // This first post may meet the follower reading for a moment (after its own ack): try
    // again then. Once it holds the batch it cannot publish, it opens nothing.
    loop {
        let (code, _, stderr) = run_with_stdin(&["post", "--store", store], SALE_LINE);
        if code == 0 {
            break;
        }
        assert!(stderr.contains("STORE_IN_USE"), "{stderr}");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut posted = 1;
    while Instant::now() < deadline {
        let (code, _, stderr) = run_with_stdin(&["post", "--store", store], SALE_LINE);
        assert_eq!(code, 0, "post beside the follower: {stderr}");
        posted += 1;
        let (code, _, stderr) = run(&["balances", "--store", store, "--ledger", "main"]);
        assert_eq!(code, 0, "balances beside the follower: {stderr}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "following goes on through the outage"
    );
    let expected = exported(&path);
    assert_eq!(expected.len(), 3 + posted);
    // Back: everything arrives, once, in order.
    let _server = Server::start_at(port, storage);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream_seqs(&url).len() < expected.len() {
        assert!(Instant::now() < deadline, "{:?}", stream_seqs(&url));
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("sending the same batch again"), "{stderr}");
    let messages = stream_messages(&url);
    assert_eq!(messages.len(), expected.len(), "every event, once");
    for ((_, event), want) in messages.iter().zip(&expected) {
        assert_eq!(event, want, "in log order");
    }
}

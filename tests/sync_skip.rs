//! An entry whose event cannot be made (`NOT_EXPORTABLE`: 0.5 of `USD`, an asset without a
//! declared scale) never holds back the events before it: `folio sync` delivers and acks
//! everything up to it, whatever `--batch` is, then stops there with the code (exit 1), and
//! `Ledger::events_since` never converts an entry past its batch. `folio skip` passes the
//! consumer over exactly that entry, recording a reason in the log, and refuses anything else
//! (`SKIP_NOT_NEXT`, `INVALID_INPUT`, exit 1, nothing written); a store written by format
//! version 2 opens, takes new entries in a version 3 segment, verifies, and skips
//! (`docs/sync.md`, "Skipping an entry"; `docs/format.md`, F-40, F-58).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod support {
    pub mod binary;
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use folio::outbox::BatchLimits;
use folio::{Ledger, PostRequest, Posting};
use serde_json::Value;
use support::binary::{cursor_of, run, run_with_stdin, serial};

/// A receiver on 127.0.0.1 that takes every batch (200) and keeps the seqs of its events.
struct Receiver {
    url: String,
    seqs: Arc<Mutex<Vec<u64>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let shared = seqs.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(body) = read_body(&stream) {
                    let batch: Value = serde_json::from_slice(&body).unwrap();
                    let events = batch["events"].as_array().unwrap();
                    let mut seqs = shared.lock().unwrap();
                    seqs.extend(events.iter().map(|event| event["seq"].as_u64().unwrap()));
                    let mut stream = stream;
                    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = stream.write_all(reply.as_bytes());
                }
            }
        });
        Receiver { url, seqs }
    }

    /// The seqs of every event taken so far, in order.
    fn seqs(&self) -> Vec<u64> {
        self.seqs.lock().unwrap().clone()
    }
}

fn read_body(stream: &TcpStream) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// The transactions of [`usd_store`]: (source, destination, amount of `USD`).
const USD_POSTINGS: [(&str, &str, &str); 4] = [
    ("world", "till", "1"),
    ("world", "till", "2"),
    ("world", "tips", "0.5"),
    ("till", "shop", "3"),
];

/// A store holding transactions of 1, 2, 0.5 and 3 `USD` (seqs 2 to 5): entry 4 has no event.
/// An event carries its accounts' volumes, which keep the 0.5 (`world` and `tips` in `USD`),
/// so the 3 moves between two other accounts for entry 5 to have an event.
fn usd_store(dir: &Path) -> String {
    let store = dir.join("store");
    let store = store.to_str().unwrap().to_string();
    assert_eq!(run(&["init", "--store", &store]).0, 0);
    for (source, destination, amount) in USD_POSTINGS {
        let request = format!(
            r#"{{"ledger":"main","postings":[{{"source":"{source}","destination":"{destination}","amount":"{amount}","asset":"USD"}}]}}"#
        );
        let (code, _, stderr) = run_with_stdin(&["post", "--store", &store], request.as_bytes());
        assert_eq!(code, 0, "{stderr}");
    }
    store
}

fn sync_once(store: &str, url: &str, batch: &str) -> (i32, String, String) {
    let args = [
        "sync",
        "--store",
        store,
        "--consumer",
        "central",
        "--url",
        url,
        "--batch",
        batch,
        "--once",
    ];
    run(&args)
}

fn skip(store: &str, consumer: &str, seq: &str, reason: &str) -> (i32, String, String) {
    let args = [
        "skip",
        "--store",
        store,
        "--consumer",
        consumer,
        "--seq",
        seq,
        "--reason",
        reason,
        "--json",
    ];
    run(&args)
}

/// The error code of a failed run printed with `--json` (stdout) or as text (stderr).
fn code_of(stdout: &str, stderr: &str) -> String {
    if let Ok(value) = serde_json::from_str::<Value>(stdout)
        && let Some(code) = value["error"]["code"].as_str()
    {
        return code.to_string();
    }
    stderr.to_string()
}

/// The events before the bad entry go out, then sync stops at it; a skip lets it go on.
fn delivers_up_to_the_bad_entry_then_skips_it(batch: &str) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = usd_store(dir.path());
    let receiver = Receiver::start();
    let (code, _, stderr) = sync_once(&store, &receiver.url, batch);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("NOT_EXPORTABLE"), "{stderr}");
    assert!(
        stderr.contains("entry 4"),
        "the error names the entry: {stderr}"
    );
    assert_eq!(receiver.seqs(), [2, 3], "--batch {batch}");
    assert_eq!(cursor_of(Path::new(&store), "central"), 3);
    // A second run stops at the same entry, sending nothing again.
    let (code, _, stderr) = sync_once(&store, &receiver.url, batch);
    assert_eq!((code, receiver.seqs()), (1, vec![2, 3]), "{stderr}");

    let (code, stdout, stderr) = skip(&store, "central", "4", "0.5 USD settled by hand");
    assert_eq!(code, 0, "{stderr}");
    let skipped: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (skipped["skipped"].as_u64(), skipped["cursor"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(cursor_of(Path::new(&store), "central"), 4);
    let (code, _, stderr) = sync_once(&store, &receiver.url, batch);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(receiver.seqs(), [2, 3, 5]);
    let (code, _, stderr) = run(&["verify", "--store", &store]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_batch_of_100_delivers_the_events_before_a_not_exportable_entry_and_stops_there() {
    delivers_up_to_the_bad_entry_then_skips_it("100");
}

#[test]
fn a_batch_of_1_delivers_the_events_before_a_not_exportable_entry_and_stops_there() {
    delivers_up_to_the_bad_entry_then_skips_it("1");
}

#[test]
fn skip_refuses_every_entry_but_the_consumers_next_one_with_an_event() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = usd_store(dir.path());
    // A consumer that never acknowledged anything has cursor 0: its next event is entry 2.
    for (seq, next) in [
        ("3", "seq 2"),
        ("4", "seq 2"),
        ("1", "seq 2"),
        ("99", "seq 2"),
    ] {
        let (code, stdout, stderr) = skip(&store, "central", seq, "why");
        assert_eq!(code, 1, "{seq}: {stderr}");
        assert_eq!(code_of(&stdout, &stderr), "SKIP_NOT_NEXT", "{seq}");
        assert!(stdout.contains(next), "{seq}: {stdout}");
    }
    let too_long = "x".repeat(1025);
    for reason in ["", "two\nlines", "a\ttab", too_long.as_str()] {
        let (code, stdout, stderr) = skip(&store, "central", "2", reason);
        assert_eq!(code, 1, "{reason:?}: {stderr}");
        assert_eq!(code_of(&stdout, &stderr), "INVALID_INPUT", "{reason:?}");
    }
    let (code, stdout, stderr) = skip(&store, "bad name", "2", "why");
    assert_eq!(
        (code, code_of(&stdout, &stderr).as_str()),
        (1, "INVALID_INPUT")
    );
    let head = || {
        let (_, stdout, _) = run(&["head", "--store", &store, "--json"]);
        serde_json::from_str::<Value>(&stdout).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(head(), 5, "a refused skip writes nothing");
    let reason = "é".repeat(512);
    assert_eq!(
        skip(&store, "central", "2", &reason).0,
        0,
        "1024 bytes of UTF-8"
    );
    // Entry 6 (the skip) has no event: nothing at or before it, nor past the events, is next.
    for (seq, next) in [("2", "seq 3"), ("6", "seq 3")] {
        let (code, stdout, stderr) = skip(&store, "central", seq, "why");
        assert_eq!(
            (code, code_of(&stdout, &stderr).as_str()),
            (1, "SKIP_NOT_NEXT")
        );
        assert!(stdout.contains(next), "{seq}: {stdout}");
    }
    for seq in ["3", "4", "5"] {
        assert_eq!(skip(&store, "central", seq, "why").0, 0, "{seq}");
    }
    // Every event is behind the cursor: nothing after it has one.
    let (code, stdout, stderr) = skip(&store, "central", "7", "why");
    assert_eq!(
        (code, code_of(&stdout, &stderr).as_str()),
        (1, "SKIP_NOT_NEXT")
    );
    assert!(
        stdout.contains("no entry after its cursor 5 has an event"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["consumers", "--store", &store, "--json"]);
    let consumers: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, 0);
    assert_eq!(consumers["consumers"][0]["cursor"], 5);
    assert_eq!(consumers["consumers"][0]["lag"], 0, "skips are not events");
    assert_eq!(run(&["verify", "--store", &store]).0, 0);
    let (code, _, stderr) = run(&["replay", "--store", &store]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        cursor_of(Path::new(&store), "central"),
        5,
        "replay rebuilds the cursor"
    );
}

/// `events_since` checks the event bound before it converts an entry, and stops before the
/// first entry whose event cannot be made: its error only when the batch would be empty.
#[test]
fn events_since_stops_before_an_entry_without_an_event_form_and_converts_nothing_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    for (source, destination, amount) in USD_POSTINGS {
        let posting = Posting::new(source, destination, amount, "USD").unwrap();
        ledger
            .post(PostRequest::new("main", vec![posting]))
            .unwrap();
    }
    let limits = |events_max| BatchLimits {
        events_max,
        ..BatchLimits::default()
    };
    let seqs = |after, events_max| {
        let batch = ledger.events_since(after, limits(events_max)).unwrap();
        let seqs: Vec<u64> = batch.events.iter().map(|event| event.seq).collect();
        (seqs, batch.seq_last)
    };
    assert_eq!(seqs(0, 100), (vec![2, 3], 3));
    assert_eq!(seqs(0, 2), (vec![2, 3], 3));
    assert_eq!(seqs(0, 1), (vec![2], 2));
    assert_eq!(seqs(2, 1), (vec![3], 3));
    for after in [3, 3] {
        let error = ledger.events_since(after, limits(100)).unwrap_err();
        assert_eq!(error.code(), "NOT_EXPORTABLE");
        assert!(error.to_string().contains("entry 4"), "{error}");
    }
    assert_eq!(seqs(4, 100), (vec![5], 5));
    // A skip appends entry 6: no event, so the batch after entry 5 is empty but covers it.
    ledger.skip("central", 2, "by hand").unwrap();
    assert_eq!(seqs(5, 100), (vec![], 6));
}

/// A store written by format version 2 (the checked-in vector) takes new entries in a
/// version 3 segment (F-40), verifies across both, and takes a skip.
#[test]
fn a_version_2_store_opens_appends_in_a_version_3_segment_verifies_and_skips() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let vector = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v2/every_kind/log");
    std::fs::create_dir_all(store.join("log")).unwrap();
    for file in std::fs::read_dir(&vector).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), store.join("log").join(file.file_name())).unwrap();
    }
    let store = store.to_str().unwrap().to_string();
    // A writer builds the state from the log (the vector has none) and appends nothing.
    let (code, _, stderr) = run(&["replay", "--store", &store]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&["head", "--store", &store]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(&["verify", "--store", &store]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let request = r#"{"ledger":"main","postings":[{"source":"world","destination":"till","amount":"1","asset":"EUR/2"}]}"#;
    let (code, _, stderr) = run_with_stdin(&["post", "--store", &store], request.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    let mut segments: Vec<_> = std::fs::read_dir(Path::new(&store).join("log"))
        .unwrap()
        .map(|file| file.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    segments.sort();
    let versions: Vec<u32> = segments
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            u32::from_le_bytes(bytes[8..12].try_into().unwrap())
        })
        .collect();
    assert_eq!(versions, [2, 3], "{segments:?}");
    // Consumer central acknowledged entry 10 in the vector; the sale is entry 12.
    assert_eq!(cursor_of(Path::new(&store), "central"), 10);
    let (code, _, stderr) = skip(&store, "central", "12", "delivered by hand");
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = skip(&store, "fresh", "2", "before the upgrade");
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(&["verify", "--store", &store]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(cursor_of(Path::new(&store), "central"), 12);
    assert_eq!(cursor_of(Path::new(&store), "fresh"), 2);
}

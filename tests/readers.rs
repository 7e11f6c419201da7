//! Readers beside a writer (`docs/ledger.md`, "Readers beside a writer"): a store that one
//! process holds for writing is read by other handles and processes (the CLI's read commands,
//! `verify`, `Ledger::open_reader`), each seeing a consistent prefix: the log up to the durable
//! head it found, and a state equal to that prefix. A second writer is still refused. Tested in
//! one process, and with two: a writer child process (this test binary, re-run as
//! [`writer_child`]) posting while reader processes (the `folio` binary) read, with the writer
//! SIGKILLed while a reader reads, and a reader SIGKILLed while the writer writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support {
    pub mod counting_fs;
}

use folio::log::vfs::RealFs;
use folio::{Ledger, LedgerOptions, PostRequest, Posting};
use rust_decimal::Decimal;
use support::counting_fs::CountingFs;

const LEDGER: &str = "main";
const ASSET: &str = "USD/2";
/// Set in the environment of the writer child: the store it writes.
const CHILD_STORE: &str = "FOLIO_READERS_TEST_STORE";
/// How many transactions the writer child posts, one group (one fsync) each.
const CHILD_POSTS: &str = "FOLIO_READERS_TEST_POSTS";

fn sale(reference: &str, till: u64, cents: i64) -> PostRequest {
    let amount = Decimal::new(cents, 2).to_string();
    let posting = Posting::new("world", format!("till:{till}"), &amount, ASSET).unwrap();
    PostRequest::new(LEDGER, vec![posting]).with_reference(reference)
}

fn options(checkpoint_groups: u32) -> LedgerOptions {
    LedgerOptions {
        checkpoint_groups,
        checkpoint_interval: Duration::from_secs(3_600),
        ..LedgerOptions::default()
    }
}

fn till(ledger: &Ledger, till: u64) -> Decimal {
    ledger
        .balance(LEDGER, &format!("till:{till}"))
        .unwrap()
        .get(ASSET)
        .copied()
        .unwrap_or_default()
}

/// A reader in the same process as the writer reads the prefix it opened on, refuses writes,
/// and holds the writer's checkpoints off while it reads (a later reader applies what the
/// checkpoints did not make durable); once the readers are gone the writer checkpoints again.
#[test]
fn a_reader_sees_the_prefix_it_opened_on_and_puts_off_the_writers_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let writer = Ledger::create_with(Arc::new(RealFs), &store, options(1)).unwrap();
    writer.post(sale("s0", 1, 100)).unwrap();
    let first = Ledger::open_reader(&store).unwrap();
    assert_eq!(
        first.open_report().entries_caught_up,
        0,
        "the writer checkpointed"
    );
    assert_eq!(first.head(), writer.head());
    for n in 1..=5 {
        writer.post(sale(&format!("s{n}"), 1, 100)).unwrap();
    }
    // Every group was due a checkpoint, and each was put off: the state file still ends at s0.
    let second = Ledger::open_reader(&store).unwrap();
    assert_eq!(second.open_report().entries_caught_up, 5);
    assert_eq!(second.head(), writer.head());
    assert_eq!(till(&second, 1), Decimal::new(600, 2));
    assert_eq!(
        till(&first, 1),
        Decimal::new(100, 2),
        "the first reader's prefix moved"
    );
    let refused = first.post(sale("from-a-reader", 1, 1)).unwrap_err();
    assert_eq!(refused.code(), "READ_ONLY");
    drop((first, second));
    writer.post(sale("s6", 1, 100)).unwrap();
    let third = Ledger::open_reader(&store).unwrap();
    assert_eq!(
        third.open_report().entries_caught_up,
        0,
        "no checkpoint once readers left"
    );
    assert_eq!(till(&third, 1), Decimal::new(700, 2));
    assert!(third.verify(&[]).unwrap().ok);
}

/// A reader does not make a second writer possible, and a writer's open waits for readers that
/// are reading (their state must not be rewritten under them), up to its `readers_wait`.
#[test]
fn a_second_writer_is_refused_and_a_writers_open_waits_for_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let writer = Ledger::create(&store).unwrap();
    writer.post(sale("s1", 1, 100)).unwrap();
    let reader = Ledger::open_reader(&store).unwrap();
    assert_eq!(Ledger::open(&store).unwrap_err().code(), "STORE_IN_USE");
    writer.close().unwrap();
    drop(writer);
    let impatient = LedgerOptions {
        readers_wait: Duration::from_millis(50),
        ..LedgerOptions::default()
    };
    let started = Instant::now();
    let busy = Ledger::open_with(Arc::new(RealFs), &store, impatient.clone()).unwrap_err();
    assert_eq!(busy.code(), "STORE_IN_USE");
    assert!(busy.to_string().contains("readers"), "{busy}");
    assert!(started.elapsed() >= Duration::from_millis(50));
    drop(reader);
    let writer = Ledger::open_with(Arc::new(RealFs), &store, impatient).unwrap();
    assert_eq!(till(&writer, 1), Decimal::new(100, 2));
}

/// A writer preallocates its active segment (16 MiB by default): a reader beside it reads that
/// segment's records and a run of zeros after them, not the whole preallocation.
#[test]
fn a_reader_beside_a_writer_reads_the_active_segments_records_not_its_preallocation() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let writer = Ledger::create(&store).unwrap();
    for n in 0..100 {
        writer.post(sale(&format!("s{n}"), 1, 100)).unwrap();
    }
    let counting = CountingFs::new(Arc::new(RealFs));
    let reader = Ledger::open_reader_with(Arc::new(counting.clone()), &store, options(1)).unwrap();
    assert_eq!(reader.head(), writer.head());
    let segment = store.join("log").join("00000000000000000001.seg");
    let read = counting.read_bytes()[&segment];
    let preallocated = std::fs::metadata(&segment).unwrap().len();
    assert!(
        preallocated >= 16 << 20,
        "the writer preallocated {preallocated} bytes"
    );
    assert!(
        read <= 4 << 20,
        "the reader read {read} bytes of the active segment"
    );
}

/// Not a test of its own: the writer child process of the two-process tests, run by them with
/// [`CHILD_STORE`] set (and skipped otherwise). It posts one transaction per group and prints
/// each receipt's seq and block hash once the post returned.
#[test]
fn writer_child() {
    let Ok(store) = std::env::var(CHILD_STORE) else {
        return;
    };
    let posts: u64 = std::env::var(CHILD_POSTS).unwrap().parse().unwrap();
    let ledger = Ledger::open_with(Arc::new(RealFs), Path::new(&store), options(16)).unwrap();
    println!("ready");
    for n in 0..posts {
        let receipt = ledger
            .post(sale(&format!("c{n}"), n % 4, 100 + n as i64 % 7))
            .unwrap();
        println!("posted {} {}", receipt.id, hex(&receipt.block_hash));
    }
    ledger.close().unwrap();
    println!("done");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Starts the writer child on `store`; returns once it has the store open.
fn spawn_writer(
    store: &Path,
    posts: u64,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_STORE, store)
        .env(CHILD_POSTS, posts.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The test harness prints the test's name on the same line first.
    let ready = lines
        .by_ref()
        .map(Result::unwrap)
        .any(|line| line.ends_with("ready"));
    if !ready {
        let status = child.wait().unwrap();
        panic!("the writer child ended before it was ready: {status}");
    }
    (child, lines)
}

/// Runs the `folio` binary; returns its exit code and stdout.
fn folio(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .env_remove("FOLIO_STORE")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let code = output.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 2,
        "folio {args:?} exited {code}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (code, stdout)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// What one round of reader processes saw.
#[derive(Debug)]
struct Seen {
    head_seq: u64,
    head_hash: String,
}

/// One round of reads from other processes while the writer may be posting: `head`, `balances`
/// and `verify`, each a process of its own. Each must answer, and what it answers must be a
/// consistent prefix: the books balance, and verify (the state equals a replay of the prefix
/// it read) passes.
fn read_round(store: &str) -> Seen {
    let (code, head) = folio(&["head", "--store", store, "--json"]);
    assert_eq!(code, 0, "head was refused beside the writer");
    let head = json(&head);
    let (code, balances) = folio(&["balances", "--store", store, "--ledger", LEDGER, "--json"]);
    assert_eq!(code, 0, "balances was refused beside the writer");
    let mut total = Decimal::ZERO;
    for (_, assets) in json(&balances)["accounts"].as_object().unwrap() {
        total += assets[ASSET].as_str().unwrap().parse::<Decimal>().unwrap();
    }
    assert_eq!(
        total,
        Decimal::ZERO,
        "the balances a reader saw do not balance"
    );
    let (code, verify) = folio(&["verify", "--store", store, "--json"]);
    assert_eq!(code, 0, "verify failed beside the writer: {verify}");
    assert_eq!(json(&verify)["ok"], true, "{verify}");
    Seen {
        head_seq: head["seq"].as_u64().unwrap(),
        head_hash: head["block_hash"].as_str().unwrap().to_string(),
    }
}

/// Every head a reader saw is an entry of the final log, with the same hash: readers saw
/// prefixes of the one history, never an entry that was later lost or replaced.
fn assert_prefixes(store: &Path, seen: &[Seen]) {
    let ledger = Ledger::open_reader(store).unwrap();
    for seen in seen {
        let entry = ledger.log().read(seen.head_seq).unwrap();
        assert_eq!(
            hex(&entry.block_hash),
            seen.head_hash,
            "seq {}",
            seen.head_seq
        );
    }
}

fn new_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ledger = Ledger::create(&store).unwrap();
    ledger.close().unwrap();
    (dir, store)
}

/// Reader processes read while a writer process posts: each answers with a consistent prefix,
/// heads never go backwards, a second writer process is refused with STORE_IN_USE, and the
/// writer finishes with every post acknowledged.
#[test]
fn reader_processes_read_consistent_prefixes_while_a_writer_process_posts() {
    let (_dir, store) = new_store();
    let store_text = store.to_str().unwrap();
    let (mut child, lines) = spawn_writer(&store, 3_000);
    let mut seen: Vec<Seen> = Vec::new();
    let second_writer = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["revert", "--store", store_text, "--ledger", LEDGER, "2"])
        .output()
        .unwrap();
    assert_eq!(second_writer.status.code(), Some(2));
    let refusal = String::from_utf8_lossy(&second_writer.stderr);
    assert!(
        refusal.contains("in use"),
        "a second writer was let in: {refusal}"
    );
    while child.try_wait().unwrap().is_none() && seen.len() < 40 {
        seen.push(read_round(store_text));
    }
    let receipts: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success());
    assert!(receipts.iter().any(|line| line == "done"), "{receipts:?}");
    assert!(
        seen.len() >= 2,
        "the writer finished before readers could overlap it"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[0].head_seq <= pair[1].head_seq,
            "a later reader saw less: {pair:?}"
        );
    }
    assert_prefixes(&store, &seen);
    let final_round = read_round(store_text);
    assert_eq!(final_round.head_seq, 3_001);
}

/// The writer process is SIGKILLed while reader processes read: readers go on answering with
/// consistent prefixes; every post the writer acknowledged is in what readers then see; the
/// next writer recovers the store and verify passes.
#[test]
fn the_writer_killed_while_readers_read_leaves_readers_consistent() {
    let (_dir, store) = new_store();
    let store_text = store.to_str().unwrap();
    let (mut child, mut lines) = spawn_writer(&store, 1_000_000);
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    while acknowledged.len() < 200 {
        let line = lines.next().unwrap().unwrap();
        let mut fields = line.strip_prefix("posted ").unwrap().split(' ');
        let seq = fields.next().unwrap().parse().unwrap();
        acknowledged.insert(seq, fields.next().unwrap().to_string());
    }
    let reading = read_round(store_text);
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines {
        let line = line.unwrap();
        let mut fields = line.strip_prefix("posted ").unwrap_or_default().split(' ');
        if let (Some(seq), Some(hash)) = (fields.next(), fields.next()) {
            acknowledged.insert(seq.parse().unwrap(), hash.to_string());
        }
    }
    let after = read_round(store_text);
    assert!(after.head_seq >= reading.head_seq);
    let last_acknowledged = *acknowledged.keys().last().unwrap();
    assert!(
        after.head_seq >= last_acknowledged,
        "a reader lost an acknowledged post"
    );
    assert_prefixes(&store, &[reading, after]);
    let writer = Ledger::open(&store).unwrap();
    for (seq, hash) in &acknowledged {
        assert_eq!(&hex(&writer.log().read(*seq).unwrap().block_hash), hash);
    }
    assert!(writer.verify(&[]).unwrap().ok);
}

/// A reader process is SIGKILLed while the writer writes: its hold on the store goes with it,
/// the writer never notices (it posts on and checkpoints again), and the store verifies.
#[test]
fn a_reader_killed_while_the_writer_writes_leaves_the_writer_unharmed() {
    let (_dir, store) = new_store();
    let store_text = store.to_str().unwrap();
    let (mut child, lines) = spawn_writer(&store, 4_000);
    for _ in 0..5 {
        let mut reader = Command::new(env!("CARGO_BIN_EXE_folio"))
            .args(["verify", "--store", store_text, "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(15));
        reader.kill().unwrap();
        reader.wait().unwrap();
    }
    let receipts: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success(), "the writer failed");
    assert!(receipts.iter().any(|line| line == "done"), "{receipts:?}");
    let ledger = Ledger::open(&store).unwrap();
    assert_eq!(ledger.head().seq, 4_001);
    assert_eq!(
        ledger.open_report().entries_caught_up,
        0,
        "the writer's close did not checkpoint once the readers were gone"
    );
    assert!(ledger.verify(&[]).unwrap().ok);
}

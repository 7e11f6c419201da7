//! The `folio` binary's contract, run as a real process: every command's happy path, the exit
//! codes (0 success, 1 a failure found, 2 usage/I/O/store errors), the JSON shapes, argument
//! errors in the same error shape, one grammar for amounts, hashes and numbers, and verify
//! catching a flipped log byte, a truncated log (with --expect-head) and an altered state, with
//! replay restoring a deleted or altered state, and `replay --out` making a whole copy or none.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

const SALE: &str = r#"{"ledger":"main","reference":"sale-1","timestamp":"2026-11-22T10:00:00Z","postings":[{"source":"world","destination":"till:1","amount":"12.50","asset":"USD/2"}],"metadata":{"k":"v"}}"#;

fn folio() -> Command {
    let mut command = Command::cargo_bin("folio").unwrap();
    command.env_remove("FOLIO_STORE");
    command
}

/// Runs folio with args (and stdin), returning (exit code, stdout, stderr).
fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let output = folio()
        .args(args)
        .write_stdin(stdin.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), stdout, stderr)
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap()
}

struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn s(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// A store with one sale of 12.50 USD/2 to till:1 (seq 2).
fn store_with_sale() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = Store { _dir: dir, path };
    assert_eq!(run(&["init", "--store", store.s()], "").0, 0);
    let (code, _, stderr) = run(&["post", "--store", store.s(), "--json"], SALE);
    assert_eq!(code, 0, "{stderr}");
    store
}

/// A store with `count` sales (refs sale-1.., 1.00 each) to till:1.
fn store_with_sales(count: usize) -> Store {
    let store = store_with_sale();
    let lines: Vec<String> = (2..=count)
        .map(|n| format!(r#"{{"ledger":"main","reference":"sale-{n}","postings":[{{"source":"world","destination":"till:1","amount":"1.00","asset":"USD/2"}}]}}"#))
        .collect();
    let (code, _, stderr) = run(&["post", "--store", store.s(), "--json"], &lines.join("\n"));
    assert_eq!(code, 0, "{stderr}");
    store
}

fn segment(store: &Store) -> PathBuf {
    store.path.join("log").join("00000000000000000001.seg")
}

#[test]
fn init_creates_a_store_and_refuses_a_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (code, stdout, _) = run(&["init", "--store", path.to_str().unwrap(), "--json"], "");
    assert_eq!(code, 0);
    assert_eq!(json(&stdout)["head"]["seq"], 1);
    assert!(path.join("log").is_dir() && path.join("state.redb").is_file());
    let (code, stdout, stderr) = run(&["init", "--store", path.to_str().unwrap(), "--json"], "");
    assert_eq!(code, 2);
    assert_eq!(json(&stdout)["error"]["code"], "STORE_EXISTS");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line naming the problem: {stderr}"
    );
}

#[test]
fn post_writes_one_line_per_input_line_in_order_and_exits_1_on_any_rejection() {
    let store = store_with_sale();
    let input = [
        r#"{"ledger":"main","postings":[{"source":"till:1","destination":"bank","amount":"2.50","asset":"USD/2"}]}"#,
        r#"{"ledger":"main","postings":[{"source":"till:1","destination":"bank","amount":12,"asset":"USD/2"}]}"#,
        r#"{"ledger":"main","postings":[{"source":"till:1","destination":"bank","amount":"100","asset":"USD/2"}]}"#,
        r#"{"ledger":"main","bogus":1,"postings":[]}"#,
        "not json",
        SALE,
    ]
    .join("\n");
    let (code, stdout, _) = run(&["post", "--store", store.s(), "--json"], &input);
    assert_eq!(code, 1);
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 6);
    let receipt = &lines[0];
    for key in [
        "id",
        "ledger",
        "reference",
        "replayed",
        "block_hash",
        "previous_hash",
        "timestamp",
        "inserted_at",
        "postings",
        "pre_commit_volumes",
        "post_commit_volumes",
    ] {
        assert!(receipt.get(key).is_some(), "receipt lacks {key}: {receipt}");
    }
    assert_eq!(
        receipt["post_commit_volumes"]["till:1"]["USD/2"]["balance"],
        "10"
    );
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"]["code"], "INVALID_JSON");
    let message = lines[1]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("postings[0].amount"),
        "{message}"
    );
    assert_eq!(
        (lines[2]["line"].clone(), lines[2]["error"]["code"].clone()),
        (3.into(), "INSUFFICIENT_FUNDS".into())
    );
    assert!(
        lines[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bogus")
    );
    assert_eq!(lines[4]["line"], 5);
    assert_eq!(lines[5]["replayed"], true);
    assert_eq!(lines[5]["id"], 2);
}

#[test]
fn post_reads_a_file_and_exits_0_when_all_lines_post() {
    let store = store_with_sale();
    let file = store.path.parent().unwrap().join("requests.jsonl");
    let line = r#"{"ledger":"main","postings":[{"source":"world","destination":"till:2","amount":"1","asset":"EUR"}]}"#;
    std::fs::write(&file, format!("{line}\n{line}\n")).unwrap();
    let (code, stdout, _) = run(
        &[
            "post",
            "--store",
            store.s(),
            file.to_str().unwrap(),
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(json_lines(&stdout).len(), 2);
    let (_, stdout, _) = run(
        &[
            "balance",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "till:2",
            "--json",
        ],
        "",
    );
    assert_eq!(json(&stdout)["balances"]["EUR"], "2");
}

#[test]
fn balance_and_balances_have_the_documented_shapes() {
    let store = store_with_sale();
    let (code, stdout, _) = run(
        &[
            "balance",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "till:1",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    let expected: Value =
        serde_json::from_str(r#"{"ledger":"main","account":"till:1","balances":{"USD/2":"12.5"}}"#)
            .unwrap();
    assert_eq!(json(&stdout), expected);
    let (code, stdout, _) = run(
        &[
            "balances",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    let expected: Value = serde_json::from_str(
        r#"{"ledger":"main","accounts":{"till:1":{"USD/2":"12.5"},"world":{"USD/2":"-12.5"}}}"#,
    )
    .unwrap();
    assert_eq!(json(&stdout), expected);
    let (_, stdout, _) = run(
        &[
            "balances",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "--prefix",
            "till",
            "--json",
        ],
        "",
    );
    assert_eq!(json(&stdout)["accounts"].as_object().unwrap().len(), 1);
    let (code, stdout, _) = run(&["balances", "--store", store.s(), "--ledger", "main"], "");
    assert_eq!(code, 0);
    assert!(stdout.contains("ACCOUNT") && stdout.contains("till:1") && stdout.contains("12.5"));
}

#[test]
fn tx_finds_by_id_and_reference_and_exits_1_when_missing() {
    let store = store_with_sale();
    let (code, stdout, _) = run(
        &[
            "tx",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "2",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(json(&stdout)["reference"], "sale-1");
    let (code, stdout, _) = run(
        &[
            "tx",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "--reference",
            "sale-1",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(json(&stdout)["id"], 2);
    let (code, stdout, _) = run(
        &[
            "tx",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "77",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["error"]["code"], "TRANSACTION_NOT_FOUND");
}

#[test]
fn revert_prints_the_reverting_receipt_and_refuses_a_second_revert() {
    let store = store_with_sale();
    let (code, stdout, _) = run(
        &[
            "revert",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "2",
            "--reference",
            "r-1",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    let receipt = json(&stdout);
    assert_eq!(
        (receipt["reverts"].clone(), receipt["reference"].clone()),
        (2.into(), "r-1".into())
    );
    assert_eq!(receipt["postings"][0]["source"], "till:1");
    let (code, stdout, _) = run(
        &[
            "revert",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "2",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["error"]["code"], "ALREADY_REVERTED");
}

#[test]
fn history_pages_newest_first() {
    let store = store_with_sales(5);
    let (code, stdout, _) = run(
        &[
            "history",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "till:1",
            "--limit",
            "2",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0);
    let ids: Vec<u64> = json_lines(&stdout)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![6, 5]);
    let (_, stdout, _) = run(
        &[
            "history",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "till:1",
            "--limit",
            "10",
            "--after",
            "5",
            "--json",
        ],
        "",
    );
    let ids: Vec<u64> = json_lines(&stdout)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 3, 2]);
}

#[test]
fn account_commands_set_policy_and_metadata_and_show_them() {
    let store = store_with_sale();
    let account = |args: &[&str]| {
        let mut full = vec![
            "account",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "till:1",
        ];
        full.extend_from_slice(args);
        full.push("--json");
        run(&full, "")
    };
    assert_eq!(account(&["set-overdraft", "5.00", "--asset", "USD/2"]).0, 0);
    let (code, stdout, _) = account(&["set-metadata", "owner", "ana"]);
    assert_eq!(code, 0);
    assert!(json(&stdout)["seq"].as_u64().unwrap() > 2);
    let (_, stdout, _) = account(&["show"]);
    let view = json(&stdout);
    assert_eq!(view["metadata"]["owner"], "ana");
    assert_eq!(view["overdrafts"]["USD/2"], "5");
    assert_eq!(view["volumes"]["USD/2"]["balance"], "12.5");
    // The overdraft now allows 17.50 out of 12.50.
    let spend = r#"{"ledger":"main","postings":[{"source":"till:1","destination":"bank","amount":"17.50","asset":"USD/2"}]}"#;
    assert_eq!(run(&["post", "--store", store.s()], spend).0, 0);
    assert_eq!(account(&["delete-metadata", "owner"]).0, 0);
    let (code, stdout, _) = account(&["delete-metadata", "owner"]);
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["error"]["code"], "METADATA_KEY_NOT_FOUND");
    let (code, _, _) = account(&["set-overdraft", "lots", "--asset", "USD/2"]);
    assert_eq!(code, 1);
}

#[test]
fn head_and_stats_report_the_log() {
    let store = store_with_sale();
    let (code, stdout, _) = run(&["head", "--store", store.s(), "--json"], "");
    assert_eq!(code, 0);
    let head = json(&stdout);
    assert_eq!(head["seq"], 2);
    assert_eq!(head["block_hash"].as_str().unwrap().len(), 64);
    let (code, stdout, _) = run(&["stats", "--store", store.s(), "--json"], "");
    assert_eq!(code, 0);
    let stats = json(&stdout);
    assert_eq!(
        (
            stats["entries"].clone(),
            stats["ledgers"].clone(),
            stats["watermark"].clone()
        ),
        (2.into(), 1.into(), 2.into())
    );
    assert!(stats["segments"].as_u64().unwrap() >= 1 && stats["bytes"].as_u64().unwrap() > 64);
}

#[test]
fn usage_and_store_errors_exit_2() {
    let (code, _, _) = run(&["balance", "--ledger", "main", "x"], "");
    assert_eq!(code, 2, "no store");
    let (code, _, _) = run(&["frobnicate"], "");
    assert_eq!(code, 2, "unknown command");
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(
        &["head", "--store", dir.path().to_str().unwrap(), "--json"],
        "",
    );
    assert_eq!(code, 2, "not a store");
    assert_eq!(json(&stdout)["error"]["code"], "NOT_A_STORE");
    let (code, _, _) = run(
        &[
            "verify",
            "--store",
            dir.path().join("nope").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 2, "missing store");
}

#[test]
fn the_store_falls_back_on_folio_store() {
    let store = store_with_sale();
    let output = folio()
        .env("FOLIO_STORE", store.s())
        .args(["head", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&String::from_utf8(output.stdout).unwrap())["seq"], 2);
}

/// A store that a writer holds is read beside it (`head`, `verify`), and refused to a second
/// writer (`post`).
#[test]
fn a_store_open_elsewhere_is_read_beside_its_writer_and_in_use_to_another_writer() {
    let store = store_with_sale();
    let held = folio::Ledger::open(&store.path).unwrap();
    for args in [vec!["head"], vec!["verify"]] {
        let mut full = args.clone();
        full.extend(["--store", store.s(), "--json"]);
        let (code, stdout, stderr) = run(&full, "");
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    }
    let (code, stdout, _) = run(&["post", "--store", store.s(), "--json"], SALE);
    assert_eq!(code, 2);
    assert_eq!(
        json(stdout.lines().last().unwrap())["error"]["code"],
        "STORE_IN_USE"
    );
    held.close().unwrap();
}

fn verify(store: &Store, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify", "--store", store.s(), "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args, "");
    assert!(code == 0 || code == 1, "{stderr}");
    (code, json(&stdout))
}

#[test]
fn verify_passes_on_a_good_store_and_changes_nothing() {
    let store = store_with_sales(20);
    let before = std::fs::read(segment(&store)).unwrap();
    let (code, report) = verify(&store, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    assert_eq!(
        (
            report["entries"].clone(),
            report["watermark"].clone(),
            report["pending"].clone()
        ),
        (21.into(), 21.into(), 0.into())
    );
    assert_eq!(report["first_failure"], Value::Null);
    assert_eq!(std::fs::read(segment(&store)).unwrap(), before);
}

#[test]
fn verify_fails_with_the_damaged_record_after_a_flipped_log_byte() {
    let store = store_with_sales(20);
    let mut bytes = std::fs::read(segment(&store)).unwrap();
    let offset = bytes.len() / 2;
    bytes[offset] ^= 0x04;
    std::fs::write(segment(&store), &bytes).unwrap();
    let (code, report) = verify(&store, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    let failure = &report["first_failure"];
    assert_eq!(failure["segment"], "00000000000000000001.seg");
    let record_start = failure["offset"].as_u64().unwrap() as usize;
    assert!(record_start <= offset, "{failure}");
    assert!(failure["seq"].as_u64().unwrap() >= 2);
    assert!(!failure["kind"].as_str().unwrap().is_empty());
}

#[test]
fn verify_catches_a_truncated_log_with_expect_head() {
    let store = store_with_sales(20);
    let (_, stdout, _) = run(&["head", "--store", store.s(), "--json"], "");
    let head = json(&stdout);
    let digest = format!("{}:{}", head["seq"], head["block_hash"].as_str().unwrap());
    assert_eq!(verify(&store, &["--expect-head", &digest]).0, 0);
    // Cut the last three records off, and roll the state back to match, as a careful forger would.
    let bytes = std::fs::read(segment(&store)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = {
        let log = folio::log::Log::open(
            std::sync::Arc::new(folio::log::vfs::RealFs),
            &store.path,
            folio::log::LogOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut at = bytes.len();
        for seq in (19..=21).rev() {
            at -= folio::log::format::FRAME_PREFIX_BYTES
                + folio::log::format::PAYLOAD_FIXED_BYTES
                + log.read(seq).unwrap().body.len();
        }
        at
    };
    std::fs::write(segment(&store), &bytes[..cut]).unwrap();
    std::fs::remove_file(store.path.join("state.redb")).unwrap();
    assert_eq!(run(&["replay", "--store", store.s()], "").0, 0);
    drop(dir);
    assert_eq!(
        verify(&store, &[]).0,
        0,
        "without the digest the shorter log looks fine"
    );
    let (code, report) = verify(&store, &["--expect-head", &digest]);
    assert_eq!(code, 1);
    assert_eq!(report["first_failure"]["kind"], "expect_head");
}

/// Changes till:1's USD/2 volumes row in state.redb, as an editor of the file would.
fn alter_state(path: &Path) {
    use folio::state::tables::{VolumesRow, WriteTables};
    let (state, _) = folio::state::State::open(&folio::log::vfs::RealFs, path, false).unwrap();
    let txn = state.begin_write(true).unwrap();
    {
        let mut tables = WriteTables::open(&txn).unwrap();
        let row = VolumesRow {
            input: folio::ledger::entry::Dec(rust_decimal::Decimal::new(99_999, 2)),
            output: Default::default(),
        };
        let bytes = folio::ledger::entry::encode(&row).unwrap();
        tables
            .volumes
            .insert(("main", "till:1", "USD/2"), &bytes[..])
            .unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn verify_fails_on_an_altered_state_and_replay_restores_it() {
    let store = store_with_sales(5);
    alter_state(&store.path);
    let (code, report) = verify(&store, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["first_failure"]["kind"], "state_mismatch");
    assert!(
        report["first_failure"]["detail"]
            .as_str()
            .unwrap()
            .contains("volumes")
    );
    let (code, stdout, _) = run(&["replay", "--store", store.s(), "--json"], "");
    assert_eq!(code, 0);
    assert_eq!(json(&stdout)["entries"], 6);
    assert_eq!(verify(&store, &[]).0, 0);
    let (_, stdout, _) = run(
        &[
            "balance",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "till:1",
            "--json",
        ],
        "",
    );
    assert_eq!(json(&stdout)["balances"]["USD/2"], "16.5");
}

#[test]
fn replay_restores_a_deleted_state() {
    let store = store_with_sales(5);
    std::fs::remove_file(store.path.join("state.redb")).unwrap();
    let (code, report) = verify(&store, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["first_failure"]["kind"], "state_missing");
    assert_eq!(run(&["replay", "--store", store.s()], "").0, 0);
    assert_eq!(verify(&store, &[]).0, 0);
}

#[test]
fn replay_out_makes_the_books_as_they_stood_at_an_entry() {
    let store = store_with_sales(10);
    let (_, stdout, _) = run(
        &[
            "tx",
            "--store",
            store.s(),
            "--ledger",
            "main",
            "5",
            "--json",
        ],
        "",
    );
    let block_hash = json(&stdout)["block_hash"].as_str().unwrap().to_string();
    let out = store.path.parent().unwrap().join("as-of-5");
    let (code, _, stderr) = run(
        &[
            "replay",
            "--store",
            store.s(),
            "--to-seq",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = run(&["head", "--store", out.to_str().unwrap(), "--json"], "");
    assert_eq!(json(&stdout)["seq"], 5);
    assert_eq!(json(&stdout)["block_hash"], block_hash.as_str());
    let (_, stdout, _) = run(
        &[
            "balance",
            "--store",
            out.to_str().unwrap(),
            "--ledger",
            "main",
            "till:1",
            "--json",
        ],
        "",
    );
    assert_eq!(json(&stdout)["balances"]["USD/2"], "15.5");
    let out_store = Store {
        _dir: tempfile::tempdir().unwrap(),
        path: out,
    };
    assert_eq!(
        verify(&out_store, &["--expect-head", &format!("5:{block_hash}")]).0,
        0
    );
    let (code, _, _) = run(&["replay", "--store", store.s(), "--to-seq", "5"], "");
    assert_eq!(code, 2, "--to-seq without --out is a usage error");
}

#[test]
fn demo_runs_verifies_and_refuses_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo");
    let (code, stdout, stderr) = run(
        &[
            "demo",
            "--store",
            path.to_str().unwrap(),
            "--transactions",
            "3000",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let summary = json(&stdout);
    assert_eq!(summary["verify"]["ok"], true);
    assert_eq!(summary["replayed"], 1);
    assert!(summary["rejected"].as_u64().unwrap() >= 1);
    // Running it again replaces the demo store; a foreign non-empty directory is refused.
    assert_eq!(
        run(
            &[
                "demo",
                "--store",
                path.to_str().unwrap(),
                "--transactions",
                "100"
            ],
            ""
        )
        .0,
        0
    );
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("important.txt"), "keep").unwrap();
    assert_eq!(
        run(
            &[
                "demo",
                "--store",
                foreign.to_str().unwrap(),
                "--transactions",
                "10"
            ],
            ""
        )
        .0,
        2
    );
    assert!(foreign.join("important.txt").exists());
}

/// Runs folio expecting a usage error: exit 2, one line on stderr ending in `(USAGE)`, and with
/// `--json` the error object on stdout.
fn usage_error(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args, "");
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(
        stderr.starts_with("folio: error: ") && stderr.trim_end().ends_with("(USAGE)"),
        "{args:?}: {stderr}"
    );
    if args.contains(&"--json") {
        let error = json(&stdout);
        assert_eq!(error["error"]["code"], "USAGE", "{args:?}");
        return error["error"]["message"].as_str().unwrap().to_string();
    }
    assert_eq!(stdout, "", "{args:?}");
    stderr
}

#[test]
fn argument_errors_are_printed_like_every_other_error() {
    let store = store_with_sale();
    let message = usage_error(&["balance", "--store", store.s(), "till:1", "--json"]);
    assert!(message.contains("--ledger"), "{message}");
    let message = usage_error(&[
        "tx",
        "--store",
        store.s(),
        "--ledger",
        "main",
        "18446744073709551616",
        "--json",
    ]);
    assert!(message.contains("18446744073709551616"), "{message}");
    let message = usage_error(&["--json", "frobnicate"]);
    assert!(message.contains("frobnicate"), "{message}");
    usage_error(&["balance", "--store", store.s(), "till:1"]);
    let (code, stdout, _) = run(&["--help"], "");
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: folio"), "{stdout}");
    let (code, stdout, _) = run(&["--version"], "");
    assert_eq!((code, stdout.starts_with("folio ")), (0, true), "{stdout}");
}

#[test]
fn expect_head_zero_holds_only_with_the_zero_hash() {
    let store = store_with_sale();
    let zero = format!("0:{}", "0".repeat(64));
    assert_eq!(verify(&store, &["--expect-head", &zero]).0, 0);
    let other = format!("0:{}", "ab".repeat(32));
    let (code, report) = verify(&store, &["--expect-head", &other]);
    assert_eq!(code, 1);
    assert_eq!(report["first_failure"]["kind"], "expect_head");
    assert_eq!(report["first_failure"]["seq"], 0);
}

#[test]
fn a_json_array_is_not_a_request() {
    let store = store_with_sale();
    let input = [
        r#"["main","arr-1",null,[["world","a","7","USD/2"]],{}]"#,
        r#"{"ledger":"main","reference":"arr-2","postings":[["world","a","7","USD/2"]]}"#,
        r#"{"ledger":"main","reference":"obj-3","postings":[{"source":"world","destination":"a","amount":"7","asset":"USD/2"}]}"#,
    ]
    .join("\n");
    let (code, stdout, _) = run(&["post", "--store", store.s(), "--json"], &input);
    assert_eq!(code, 1);
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 3);
    for (line, at) in [
        (&lines[0], "line 1: "),
        (&lines[1], "line 2: postings[0]: "),
    ] {
        assert_eq!(line["error"]["code"], "INVALID_JSON", "{line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(at) && message.contains("JSON object"),
            "{message}"
        );
    }
    assert_eq!(lines[2]["reference"], "obj-3");
}

#[test]
fn every_amount_and_hash_argument_has_one_grammar() {
    let store = store_with_sale();
    for policy in ["1_000", ".5", "+5", "5.", "1e3", " 5"] {
        let (code, stdout, _) = run(
            &[
                "account",
                "--store",
                store.s(),
                "--ledger",
                "main",
                "till:1",
                "--json",
                "set-overdraft",
                policy,
                "--asset",
                "USD/2",
            ],
            "",
        );
        assert_eq!(code, 1, "{policy}");
        assert_eq!(json(&stdout)["error"]["code"], "INVALID_INPUT", "{policy}");
    }
    let (_, stdout, _) = run(&["head", "--store", store.s(), "--json"], "");
    let hash = json(&stdout)["block_hash"].as_str().unwrap().to_string();
    assert_eq!(
        verify(&store, &["--expect-head", &format!("2:{hash}")]).0,
        0
    );
    let plus_hash = format!("+f{}", &hash[2..]);
    for digest in [
        format!("+2:{hash}"),
        format!("2:{plus_hash}"),
        format!("2:{}", hash.to_uppercase()),
        format!(" 2:{hash}"),
    ] {
        let args = ["verify", "--store", store.s(), "--expect-head", &digest];
        let (code, _, stderr) = run(&args, "");
        assert_eq!(code, 2, "{digest}");
        assert!(stderr.ends_with("(USAGE)\n"), "{digest}: {stderr}");
    }
    let out = store.path.parent().unwrap().join("copy");
    let out = out.to_str().unwrap();
    for seq in ["+1", "1_0", "0x1"] {
        usage_error(&[
            "replay",
            "--store",
            store.s(),
            "--to-seq",
            seq,
            "--out",
            out,
        ]);
    }
}

#[test]
fn replay_out_refuses_a_to_seq_of_0_or_past_the_head() {
    let store = store_with_sales(3);
    let out = store.path.parent().unwrap().join("copy");
    for seq in ["0", "5", "99"] {
        let (code, stdout, stderr) = run(
            &[
                "replay",
                "--store",
                store.s(),
                "--to-seq",
                seq,
                "--out",
                out.to_str().unwrap(),
                "--json",
            ],
            "",
        );
        assert_eq!(code, 2, "{seq}: {stderr}");
        let error = json(&stdout);
        assert_eq!(error["error"]["code"], "SEQ_OUT_OF_RANGE", "{seq}");
        assert!(
            stderr.contains("--to-seq") && stderr.contains("head is 4"),
            "{seq}: {stderr}"
        );
        assert!(!out.exists(), "{seq}: nothing written");
    }
}

#[test]
fn replay_out_builds_under_a_partial_name_and_refuses_what_an_interrupted_one_left() {
    let store = store_with_sales(3);
    let parent = store.path.parent().unwrap();
    let out = parent.join("copy");
    let partial = parent.join("copy.replay-partial");
    // What a replay killed half way leaves: a partial store under the temporary name.
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("LOCK"), "").unwrap();
    let args = [
        "replay",
        "--store",
        store.s(),
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, _, stderr) = run(&args, "");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("copy.replay-partial") && stderr.contains("(STORE_EXISTS)"),
        "{stderr}"
    );
    assert!(!out.exists(), "no store at --out");
    std::fs::remove_dir_all(&partial).unwrap();
    // An empty --out directory is fine: it is replaced by the complete copy.
    std::fs::create_dir(&out).unwrap();
    let (code, _, stderr) = run(&args, "");
    assert_eq!(code, 0, "{stderr}");
    assert!(!partial.exists(), "renamed once complete");
    let out_store = Store {
        _dir: tempfile::tempdir().unwrap(),
        path: out,
    };
    let (code, report) = verify(&out_store, &[]);
    assert_eq!((code, report["entries"].clone()), (0, 4.into()));
}

#[test]
fn a_replay_out_killed_at_any_point_leaves_no_store_or_the_whole_one() {
    let store = store_with_sales(3000);
    let parent = store.path.parent().unwrap();
    for (attempt, delay_ms) in [0u64, 5, 10, 20, 40, 80].into_iter().enumerate() {
        let out = parent.join(format!("copy-{attempt}"));
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("folio"))
            .args([
                "replay",
                "--store",
                store.s(),
                "--out",
                out.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SIGINT, as a user's Ctrl-C sends: folio installs no handler, so it dies at once.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait().unwrap();
        if out.exists() {
            let out_store = Store {
                _dir: tempfile::tempdir().unwrap(),
                path: out,
            };
            let (code, report) = verify(&out_store, &[]);
            assert_eq!(
                (code, report["entries"].clone()),
                (0, 3001.into()),
                "{delay_ms} ms"
            );
        }
    }
}

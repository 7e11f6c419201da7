//! The `folio` binary's streams, run as a real process: every input line of `post` gets its own
//! result, whatever its bytes (a line that is not UTF-8 is a rejected line, not the end of the
//! run), and stdout failing is never a panic (exit 101): a reader that went away ends the
//! command quietly with its own exit code, a full disk is an `IO` error on stderr.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod binary;
}

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use support::binary::{run, run_into, run_with_stdin};

fn sale(reference: &str) -> String {
    format!(
        r#"{{"ledger":"main","reference":"{reference}","postings":[{{"source":"world","destination":"till:1","amount":"1.00","asset":"USD/2"}}]}}"#
    )
}

/// A store (in a temporary directory) with `count` sales to till:1.
fn store_with_sales(count: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    assert_eq!(run(&["init", "--store", path.to_str().unwrap()]).0, 0);
    let lines: Vec<String> = (1..=count).map(|n| sale(&format!("sale-{n}"))).collect();
    let input = lines.join("\n");
    let args = ["post", "--store", path.to_str().unwrap()];
    let (code, _, stderr) = run_with_stdin(&args, input.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    (dir, path)
}

fn balance_of_till(path: &Path) -> Value {
    let store = path.to_str().unwrap();
    let args = [
        "balance", "--store", store, "--ledger", "main", "till:1", "--json",
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Value>(&stdout).unwrap()["balances"]["USD/2"].clone()
}

#[test]
fn a_line_that_is_not_utf8_is_rejected_alone_and_the_lines_after_it_are_posted() {
    let (_dir, path) = store_with_sales(0);
    let mut input = Vec::new();
    input.extend_from_slice(sale("a").as_bytes());
    input.extend_from_slice(b"\n{\"ledger\":\"main\xff\xfe\"}\r\n");
    input.extend_from_slice(sale("b").as_bytes());
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(sale("c").as_bytes());
    let args = ["post", "--store", path.to_str().unwrap(), "--json"];
    let (code, stdout, stderr) = run_with_stdin(&args, &input);
    assert_eq!(code, 1, "one line rejected: {stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one result per input line: {stdout}");
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"]["code"], "INVALID_JSON");
    let message = lines[1]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("UTF-8"),
        "{message}"
    );
    for (line, reference) in [(0, "a"), (2, "b"), (3, "c")] {
        assert_eq!(lines[line]["reference"], reference, "{}", lines[line]);
    }
    assert_eq!(balance_of_till(&path), "3");
}

#[test]
fn a_line_that_is_not_utf8_past_the_first_group_stops_nothing() {
    let (_dir, path) = store_with_sales(0);
    let mut input = Vec::new();
    for n in 1..=4100 {
        if n == 4099 {
            input.extend_from_slice(b"\xc3\x28\n");
        } else {
            input.extend_from_slice(sale(&format!("s-{n}")).as_bytes());
            input.push(b'\n');
        }
    }
    let args = ["post", "--store", path.to_str().unwrap()];
    let (code, stdout, stderr) = run_with_stdin(&args, &input);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout.lines().count(), 4100);
    let rejected: Vec<&str> = stdout.lines().filter(|l| l.contains("rejected")).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].starts_with("line 4099: rejected (INVALID_JSON)"),
        "{}",
        rejected[0]
    );
    assert_eq!(balance_of_till(&path), "4099");
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn pipe_without_reader() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// The commands of the issue, each with enough output to write at least one line.
fn commands(path: &Path, requests: &Path) -> Vec<Vec<String>> {
    let store = path.to_str().unwrap();
    let args = |list: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = list.iter().map(|arg| arg.to_string()).collect();
        all.extend(["--store".to_string(), store.to_string()]);
        all
    };
    let requests = requests.to_str().unwrap();
    let mut list = Vec::new();
    for json in [false, true] {
        let mut with = |mut command: Vec<String>| {
            if json {
                command.push("--json".to_string());
            }
            list.push(command);
        };
        with(args(&["post", requests]));
        with(args(&["history", "--ledger", "main", "till:1"]));
        with(args(&["balances", "--ledger", "main"]));
        with(args(&["verify"]));
        with(args(&["head"]));
    }
    list
}

fn requests_file(dir: &Path) -> PathBuf {
    let file = dir.join("requests.jsonl");
    std::fs::write(&file, format!("{}\n{}\n", sale("r-1"), sale("r-2"))).unwrap();
    file
}

#[test]
fn a_reader_that_went_away_ends_each_command_quietly_with_its_own_exit_code() {
    let (dir, path) = store_with_sales(50);
    let requests = requests_file(dir.path());
    for command in commands(&path, &requests) {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let (code, stderr) = run_into(&args, pipe_without_reader());
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing to report");
    }
    // post stopped after the group whose results it could not print: that group was posted.
    assert_eq!(balance_of_till(&path), "52");
}

#[test]
fn a_failed_verification_keeps_exit_1_when_its_reader_went_away() {
    let (_dir, path) = store_with_sales(3);
    std::fs::remove_file(path.join("state.redb")).unwrap();
    let args = ["verify", "--store", path.to_str().unwrap()];
    let (code, stderr) = run_into(&args, pipe_without_reader());
    assert_eq!((code, stderr.as_str()), (1, ""));
}

#[test]
fn a_full_stdout_is_an_io_error_never_a_panic() {
    let (dir, path) = store_with_sales(5);
    let requests = requests_file(dir.path());
    for command in commands(&path, &requests) {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (code, stderr) = run_into(&args, full.into());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(
            stderr.starts_with("folio: error: writing to stdout: ") && stderr.ends_with("(IO)\n"),
            "{args:?}: {stderr}"
        );
    }
    let post = run_into(
        &[
            "post",
            "--store",
            path.to_str().unwrap(),
            requests.to_str().unwrap(),
        ],
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into(),
    );
    assert!(
        post.1.contains("lines 1 to 2 were posted or rejected"),
        "{}",
        post.1
    );
}

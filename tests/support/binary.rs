//! Running the real `folio` binary from a test: a command without `FOLIO_STORE` from the
//! environment, a run that returns (exit code, stdout, stderr), the lock that serializes the
//! tests of one file that spawn it, and the outbox reads the sync tests share.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use assert_cmd::Command;
use serde_json::Value;

/// One test at a time. A process that another test thread spawns holds a copy of every open
/// file from its fork to its `exec`: a store lock released in that window stays held, so an
/// open right after a close elsewhere could see `STORE_IN_USE`.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn folio() -> Command {
    let mut command = Command::cargo_bin("folio").unwrap();
    command.env_remove("FOLIO_STORE");
    command
}

/// Runs folio with args, returning (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let output = folio().args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), stdout, stderr)
}

/// The export of the whole store, one JSON value per event.
pub fn exported(path: &Path) -> Vec<Value> {
    let store = path.to_str().unwrap();
    let (code, stdout, stderr) = run(&["export", "--store", store, "--format", "events"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `folio consumers --json` of the store.
pub fn consumers(path: &Path) -> Value {
    let (code, stdout, stderr) = run(&["consumers", "--store", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// A consumer's cursor (0 for one that never acknowledged anything).
pub fn cursor_of(path: &Path, consumer: &str) -> u64 {
    consumers(path)["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == consumer)
        .map_or(0, |c| c["cursor"].as_u64().unwrap())
}

/// Runs folio with args and these stdin bytes (which need not be UTF-8), returning (exit code,
/// stdout, stderr).
pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let output = folio()
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), stdout, stderr)
}

/// Runs folio with args and stdout going to `stdout` (a pipe with no reader, `/dev/full`),
/// returning (exit code, stderr).
pub fn run_into(args: &[&str], stdout: std::process::Stdio) -> (i32, String) {
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("folio"))
        .env_remove("FOLIO_STORE")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), stderr)
}

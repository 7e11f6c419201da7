//! Running the real `folio` binary from a test: a command without `FOLIO_STORE` from the
//! environment, a run that returns (exit code, stdout, stderr), and the lock that serializes
//! the tests of one file that spawn it.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::sync::{Mutex, MutexGuard};

use assert_cmd::Command;

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

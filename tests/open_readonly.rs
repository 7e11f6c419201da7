//! A store that this process may only read (its files' permissions, a read-only mount) opens,
//! serves reads and verifies, and nothing in it changes: the lock file is locked through a
//! read-only descriptor, the state is read under a memory overlay (or rebuilt in memory), the
//! log serves what it holds; writes fail with an error that names the file they could not
//! write. Checked on the simulated disk, and with the real binary run as a user who may only
//! read the files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod workload;
}

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{PostRequest, Posting};
use support::workload::{self, LEDGER, STORE};

fn sale(reference: &str, amount: &str) -> PostRequest {
    PostRequest::new(
        LEDGER,
        vec![Posting::new("world", "till:1", amount, "USD/2").unwrap()],
    )
    .with_reference(reference)
}

/// Every file of the simulated store and its bytes.
fn files(fs: &SimFs) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in [PathBuf::from(STORE), Path::new(STORE).join("log")] {
        for name in fs.list(&dir).unwrap() {
            let path = dir.join(name);
            if let Some(bytes) = fs.file_bytes(&path) {
                files.insert(path, bytes);
            }
        }
    }
    files
}

fn store_with_two_posts(seed: u64) -> SimFs {
    let fs = workload::new_disk(seed);
    let ledger = workload::create(&fs).unwrap();
    ledger.post(sale("a", "1.00")).unwrap();
    ledger.post(sale("b", "2.00")).unwrap();
    ledger.close().unwrap();
    fs
}

#[test]
fn a_store_the_process_may_only_read_opens_reads_and_verifies_and_is_left_unchanged() {
    let fs = store_with_two_posts(11);
    let before = files(&fs);
    fs.set_read_only(true);

    let ledger = workload::open(&fs).unwrap_or_else(|error| panic!("{} {error}", error.code()));
    assert_eq!(
        ledger.balance(LEDGER, "till:1").unwrap()["USD/2"].to_string(),
        "3"
    );
    let error = ledger.post(sale("c", "4.00")).unwrap_err();
    assert!(
        error.to_string().contains("cannot be written"),
        "{} {error}",
        error.code()
    );
    assert!(error.to_string().contains(".seg"), "{error}");
    assert!(ledger.verify(&[]).unwrap().ok);
    ledger.close().unwrap();
    drop(ledger);

    let report =
        folio::verify::verify_store(Arc::new(fs.clone()), Path::new(STORE), &[], &mut |_, _| {})
            .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(files(&fs), before);
}

#[test]
fn a_read_only_store_whose_state_is_missing_or_behind_is_caught_up_in_memory() {
    // Behind: entries past the state's watermark (a process that never closed).
    let fs = workload::new_disk(12);
    let ledger = workload::create(&fs).unwrap();
    ledger.post(sale("a", "1.00")).unwrap();
    ledger.post(sale("b", "2.00")).unwrap();
    drop(ledger);
    let crashed = fs.process_crash_image();
    let before = files(&crashed);
    crashed.set_read_only(true);
    let ledger = workload::open(&crashed).unwrap();
    assert_eq!(
        ledger.balance(LEDGER, "till:1").unwrap()["USD/2"].to_string(),
        "3"
    );
    drop(ledger);
    assert_eq!(files(&crashed), before);

    // Missing: rebuilt in memory from the log.
    let fs = store_with_two_posts(13);
    fs.remove(&Path::new(STORE).join(folio::state::STATE_FILE_NAME))
        .unwrap();
    let before = files(&fs);
    fs.set_read_only(true);
    let ledger = workload::open(&fs).unwrap();
    assert!(matches!(
        ledger.open_report().state,
        folio::state::StateOpened::Rebuilt { .. }
    ));
    assert_eq!(
        ledger.balance(LEDGER, "till:1").unwrap()["USD/2"].to_string(),
        "3"
    );
    drop(ledger);
    assert_eq!(files(&fs), before);
}

// The real binary, run as a user who may only read the store.

fn folio_bin() -> &'static str {
    env!("CARGO_BIN_EXE_folio")
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// Runs folio as a user who may only read the store: `nobody` when the tests run as root
/// (root ignores file permissions), else the current user.
fn run_as_reader(args: &[&str]) -> (i32, String, String) {
    let mut command = if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(folio_bin());
        command
    } else {
        Command::new(folio_bin())
    };
    let output = command
        .args(args)
        .env_remove("FOLIO_STORE")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(folio_bin())
        .args(args)
        .env_remove("FOLIO_STORE")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Sets every file under `dir` to `file_mode` and every directory (`dir` included) to
/// `dir_mode`.
fn chmod_tree(dir: &Path, file_mode: u32, dir_mode: u32) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chmod_tree(&path, file_mode, dir_mode);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(tree_bytes(&path));
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

/// A store made by the current user, then made readable but not writable to everyone.
fn read_only_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.path().join("books");
    let path = store.to_str().unwrap();
    assert_eq!(run(&["init", "--store", path]).0, 0);
    let line = r#"{"ledger":"main","postings":[{"source":"world","destination":"a","amount":"7","asset":"USD/2"}]}"#;
    let output = Command::new(folio_bin())
        .args(["post", "--store", path])
        .env_remove("FOLIO_STORE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(line.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success());
    chmod_tree(&store, 0o444, 0o555);
    (dir, store)
}

#[test]
fn verify_balance_and_head_work_for_a_user_who_may_only_read_the_store() {
    let (_dir, store) = read_only_store();
    let path = store.to_str().unwrap();
    let before = tree_bytes(&store);

    let (code, stdout, stderr) = run_as_reader(&["verify", "--store", path]);
    assert_eq!(code, 0, "verify: {stdout}{stderr}");
    let (code, stdout, stderr) = run_as_reader(&[
        "balance", "--store", path, "--ledger", "main", "a", "--json",
    ]);
    assert_eq!(code, 0, "balance: {stdout}{stderr}");
    assert!(stdout.contains("\"USD/2\":\"7\""), "{stdout}");
    let (code, stdout, stderr) = run_as_reader(&["head", "--store", path]);
    assert_eq!(code, 0, "head: {stdout}{stderr}");
    assert!(stdout.starts_with("2:"), "{stdout}");

    // A write is refused, naming the file it could not write.
    let (code, stdout, stderr) =
        run_as_reader(&["revert", "--store", path, "--ledger", "main", "2"]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains(".seg"), "{stderr}");

    assert_eq!(tree_bytes(&store), before, "nothing in the store changed");
    chmod_tree(&store, 0o644, 0o755);
}

/// A read-only store whose lock files are gone and cannot be made: no writer can hold it, so
/// readers read it without them, and nothing is created.
#[test]
fn a_read_only_store_without_lock_files_is_read_without_them() {
    let (_dir, store) = read_only_store();
    let path = store.to_str().unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["LOCK", "READERS"] {
        let _ = std::fs::remove_file(store.join(name));
    }
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o555)).unwrap();

    for command in ["verify", "head"] {
        let (code, stdout, stderr) = run_as_reader(&[command, "--store", path]);
        assert_eq!(code, 0, "{command}: {stdout}{stderr}");
    }
    assert!(!store.join("LOCK").exists() && !store.join("READERS").exists());
    chmod_tree(&store, 0o644, 0o755);
}

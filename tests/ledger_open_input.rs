//! Bad input to `create` and `open` themselves: options that cannot work, an empty store path,
//! a path that is not a directory. Each is refused with `INVALID_INPUT` naming what is wrong,
//! counts as a rejection, and writes nothing (a simulated file system counts every mutating
//! call). Before, `group_ops_max: 0` opened a ledger whose every writer hung, and `create("")`
//! wrote `LOCK` and `log/` into the current directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::path::Path;
use std::sync::Arc;

use folio::log::sim::SimFs;
use folio::{Ledger, LedgerOptions};

fn refused_before_writing(options: LedgerOptions, dir: &Path, names: &str) {
    let fs = SimFs::new(3);
    let error = Ledger::create_with(Arc::new(fs.clone()), dir, options.clone()).unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT", "create: {error}");
    assert!(error.is_rejection(), "{error}");
    assert!(
        error.to_string().contains(names),
        "{error} does not name {names}"
    );
    assert_eq!(fs.steps(), 0, "create wrote before refusing: {error}");
    let error = Ledger::open_with(Arc::new(fs.clone()), dir, options).unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT", "open: {error}");
    assert_eq!(fs.steps(), 0, "open wrote before refusing: {error}");
}

#[test]
fn options_that_cannot_work_are_refused_before_anything_is_written() {
    let store = Path::new("/store");
    let no_group = LedgerOptions {
        group_ops_max: 0,
        ..LedgerOptions::default()
    };
    refused_before_writing(no_group, store, "group_ops_max");
    let no_checkpoint = LedgerOptions {
        checkpoint_groups: 0,
        ..LedgerOptions::default()
    };
    refused_before_writing(no_checkpoint, store, "checkpoint_groups");
    for segment_bytes in [0, 1, 4095, (1 << 30) + 1] {
        let options = LedgerOptions {
            segment_bytes,
            ..LedgerOptions::default()
        };
        refused_before_writing(options, store, "segment_bytes");
    }
}

#[test]
fn an_existing_store_refuses_to_open_with_options_that_cannot_work() {
    let fs = SimFs::new(4);
    let store = Path::new("/store");
    let ledger = Ledger::create_with(Arc::new(fs.clone()), store, LedgerOptions::default());
    ledger.unwrap().close().unwrap();
    let options = LedgerOptions {
        group_ops_max: 0,
        ..LedgerOptions::default()
    };
    let error = Ledger::open_with(Arc::new(fs.clone()), store, options).unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT");
    // The store itself is untouched and opens with working options.
    Ledger::open_with(Arc::new(fs), store, LedgerOptions::default()).unwrap();
}

#[test]
fn an_empty_store_path_is_refused_before_anything_is_written() {
    refused_before_writing(LedgerOptions::default(), Path::new(""), "store directory");
    // The real file system too: nothing may land in the current directory.
    let error = Ledger::create("").unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT", "{error}");
    assert_eq!(Ledger::open("").unwrap_err().code(), "INVALID_INPUT");
    assert!(!Path::new(folio::ledger::LOCK_FILE_NAME).exists());
    assert!(!Path::new(folio::log::LOG_DIR_NAME).exists());
}

#[test]
fn creating_a_store_on_a_regular_file_is_invalid_input_naming_it() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let error = Ledger::create(file.path()).unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT", "{error}");
    assert!(error.to_string().contains("not a directory"), "{error}");
    assert_eq!(std::fs::metadata(file.path()).unwrap().len(), 0);
}

#[test]
fn a_clock_outside_years_0000_to_9999_cannot_date_the_store_creation() {
    let fs = SimFs::new(5);
    let store = Path::new("/store");
    let broken = LedgerOptions {
        clock: Arc::new(|| i64::MAX),
        ..LedgerOptions::default()
    };
    let error = Ledger::create_with(Arc::new(fs.clone()), store, broken).unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT", "{error}");
    assert!(error.to_string().contains("clock"), "{error}");
    // Nothing was appended: an open with a working clock finishes the creation.
    let ledger = Ledger::open_with(Arc::new(fs), store, LedgerOptions::default()).unwrap();
    assert_eq!(ledger.head().seq, 1);
}

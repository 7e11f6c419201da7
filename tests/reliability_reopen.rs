//! Reopening a store after a fault without a reboot in between: what the page cache holds is
//! proven durable before the state applies it, and a disk with no free space still opens and
//! serves reads, while a write gives `NO_SPACE`. Both on the simulated disk, which models a
//! failed fsync that marks the pages clean (as Linux does) and a budget of free bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod workload;
}

use folio::log::sim::{Fault, FaultError, OpKind};
use folio::log::vfs::Vfs;
use folio::{PostRequest, Posting};
use support::workload::{self, LEDGER};

fn sale(reference: &str, amount: &str) -> PostRequest {
    PostRequest::new(
        LEDGER,
        vec![Posting::new("world", "till:1", amount, "USD/2").unwrap()],
    )
    .with_reference(reference)
}

fn till(ledger: &folio::Ledger) -> String {
    ledger.balance(LEDGER, "till:1").unwrap()["USD/2"].to_string()
}

/// A failed fsync leaves the batch in the page cache only, and Linux marks those pages clean,
/// so no later fsync writes them. A reopen in the same boot reads the batch back; if the state
/// applied and checkpointed it as it stands, a power loss would leave a log behind the state.
/// The reopen writes the tail past the watermark again and syncs it first.
#[test]
fn a_reopen_after_an_unknown_outcome_makes_the_batch_durable_before_the_state_applies_it() {
    let fs = workload::new_disk(5);
    let ledger = workload::create(&fs).unwrap();
    // A first post grows the state file (redb syncs when it grows); the next sync is the log's.
    ledger.post(sale("a", "1.00")).unwrap();
    fs.inject(Fault {
        op: Some(OpKind::Sync),
        nth: 1,
        persist: false,
        error: FaultError::IoDropsDirty,
    });
    let error = ledger.post(sale("b", "2.00")).unwrap_err();
    assert_eq!(error.code(), "OUTCOME_UNKNOWN", "{error}");
    drop(ledger);

    // Same boot: the page cache still serves "b"; this open applies it and, on close,
    // checkpoints the state past it.
    let ledger = workload::open(&fs).unwrap();
    assert_eq!(till(&ledger), "3");
    ledger.close().unwrap();
    drop(ledger);

    for seed in 0..8 {
        let image = fs.power_loss_image(seed);
        let ledger = workload::open(&image)
            .unwrap_or_else(|error| panic!("power loss {seed}: {} {error}", error.code()));
        assert_eq!(till(&ledger), "3", "power loss {seed}");
        assert!(ledger.post(sale("b", "2.00")).unwrap().replayed);
        assert!(ledger.verify(&[]).unwrap().ok);
    }
}

/// Opening preallocates the active segment; on a full disk that must not stop a read, and a
/// write must say the disk is full.
#[test]
fn a_store_opens_and_reads_with_no_free_space_and_a_post_fails_with_no_space() {
    let fs = workload::new_disk(6);
    let ledger = workload::create(&fs).unwrap();
    ledger.post(sale("a", "1.00")).unwrap();
    ledger.close().unwrap();
    drop(ledger);

    fs.set_free_bytes(Some(0));
    let ledger = workload::open(&fs).unwrap_or_else(|error| panic!("{} {error}", error.code()));
    assert_eq!(till(&ledger), "1");
    let error = ledger.post(sale("b", "2.00")).unwrap_err();
    assert_eq!(error.code(), "NO_SPACE", "{error}");
    assert_eq!(till(&ledger), "1");
    ledger.close().unwrap();
    drop(ledger);
    // Reopened with no space again (twice: nothing of the refused post is left to settle).
    let ledger = workload::open(&fs).unwrap();
    assert_eq!(till(&ledger), "1");
    drop(ledger);

    fs.set_free_bytes(None);
    let ledger = workload::open(&fs).unwrap();
    assert!(!ledger.post(sale("b", "2.00")).unwrap().replayed);
    assert_eq!(till(&ledger), "3");
    assert!(ledger.verify(&[]).unwrap().ok);
}

/// A state that must be rebuilt (here: its file is gone) needs space: on a full disk the open
/// fails with `NO_SPACE` (it was `STATE`), and once space returns the store opens whole.
#[test]
fn rebuilding_the_state_on_a_full_disk_is_no_space_and_succeeds_once_space_returns() {
    let fs = workload::new_disk(7);
    let ledger = workload::create(&fs).unwrap();
    for n in 0..20 {
        ledger.post(sale(&format!("s{n}"), "1.00")).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    let state = std::path::Path::new(workload::STORE).join(folio::state::STATE_FILE_NAME);
    fs.remove(&state).unwrap();
    fs.set_free_bytes(Some(0));
    let error = workload::open(&fs).unwrap_err();
    assert_eq!(error.code(), "NO_SPACE", "{error}");
    fs.set_free_bytes(None);
    let ledger = workload::open(&fs).unwrap();
    assert_eq!(till(&ledger), "20");
    assert!(ledger.verify(&[]).unwrap().ok);
}

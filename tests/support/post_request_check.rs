//! The `post_request` check, shared by the fuzz target (`fuzz/fuzz_targets/post_request.rs`)
//! and the seed-corpus test (`tests/fuzz_corpus_ledger.rs`): any bytes that are UTF-8, read as
//! one JSON line by `PostRequest::from_json_line`, are refused with a message or parse to a
//! request that serializes back to one line and parses again to an equal request (the same
//! line again: the serialization is canonical). A parsed request, posted into a fresh ledger
//! on the simulated disk, is accepted (the head moves by one to its id, and the transaction
//! reads back as its receipt) or rejected with a typed rejection (the head stays); a store
//! failure on a healthy simulated disk is a bug. Nothing may panic.

#![allow(clippy::unwrap_used, reason = "a check fails on any error")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{Ledger, LedgerOptions, PostRequest};

/// The store directory on the simulated disk.
pub const STORE: &str = "/store";

/// What one input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not UTF-8: not a line at all.
    NotUtf8,
    /// `from_json_line` refused it.
    Refused,
    /// Posted as a new transaction.
    Posted,
    /// The ledger rejected it with this code.
    Rejected(&'static str),
}

/// A fresh ledger on a simulated disk, to post into.
fn fresh_ledger() -> Ledger {
    let fs = SimFs::new(3);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    let clock = Arc::new(AtomicI64::new(1_800_000_000_000_000));
    let options = LedgerOptions {
        segment_bytes: 1 << 16,
        checkpoint_interval: Duration::from_secs(24 * 3600),
        clock: Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
        ..LedgerOptions::default()
    };
    Ledger::create_with(Arc::new(fs), Path::new(STORE), options).unwrap()
}

/// Checks `bytes` (see the module doc), posting into a fresh ledger, made only for a request
/// that parses. (A ledger reused across inputs made the fuzzer 5 times slower, not faster: the
/// heap it grows sets off a leak scan after every input; and a fresh one keeps each input's
/// outcome its own.)
pub fn check_post_request(bytes: &[u8]) -> Outcome {
    match parse(bytes) {
        Ok(request) => post(&fresh_ledger(), request),
        Err(outcome) => outcome,
    }
}

/// The request `bytes` parse to, checked to round-trip; or why there is none.
fn parse(bytes: &[u8]) -> Result<PostRequest, Outcome> {
    let Ok(line) = std::str::from_utf8(bytes) else {
        return Err(Outcome::NotUtf8);
    };
    match PostRequest::from_json_line(line) {
        Ok(request) => {
            check_round_trip(&request);
            Ok(request)
        }
        Err(message) => {
            assert!(!message.is_empty(), "a refusal without a message");
            Err(Outcome::Refused)
        }
    }
}

/// The request serializes to one line that parses back to an equal request and serializes
/// to the same line again.
fn check_round_trip(request: &PostRequest) {
    let line = serde_json::to_string(request)
        .unwrap_or_else(|error| panic!("a parsed request does not serialize: {error}"));
    assert!(
        !line.contains('\n'),
        "the serialization is not one line: {line}"
    );
    let again = PostRequest::from_json_line(&line)
        .unwrap_or_else(|error| panic!("the serialization {line} does not parse: {error}"));
    assert_eq!(
        &again, request,
        "the round trip through {line} changed the request"
    );
    let line_again = serde_json::to_string(&again).unwrap();
    assert_eq!(line_again, line, "serializing is not canonical");
}

fn post(ledger: &Ledger, request: PostRequest) -> Outcome {
    let head = ledger.head();
    match ledger.post(request.clone()) {
        Ok(receipt) => {
            assert!(!receipt.replayed, "a replay from a fresh ledger");
            let after = ledger.head();
            assert_eq!(after.seq, head.seq + 1, "a post did not append one entry");
            assert_eq!(
                receipt.id, after.seq,
                "the receipt's id is not the new head"
            );
            assert_eq!(receipt.block_hash, after.block_hash);
            assert_eq!(receipt.ledger, request.ledger);
            assert_eq!(receipt.reference, request.reference);
            assert_eq!(receipt.postings, request.postings, "the postings changed");
            assert_eq!(receipt.metadata, request.metadata);
            if let Some(timestamp) = request.timestamp {
                assert_eq!(receipt.timestamp, timestamp);
            }
            let read = ledger.transaction(&request.ledger, receipt.id).unwrap();
            assert_eq!(
                read.as_ref(),
                Some(&receipt),
                "the transaction reads back differently"
            );
            Outcome::Posted
        }
        Err(error) => {
            assert!(error.is_rejection(), "not a rejection: {error:?}");
            assert_eq!(ledger.head(), head, "a rejection moved the head");
            Outcome::Rejected(error.code())
        }
    }
}

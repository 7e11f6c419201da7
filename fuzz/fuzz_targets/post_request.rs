//! Fuzzes the JSON request parser and the post path behind it: any bytes that are UTF-8, read
//! as one JSON line by `PostRequest::from_json_line`, are refused with a message or parse to a
//! request that round-trips through its serialization unchanged; posted into a ledger on the
//! simulated disk, it is accepted, replayed, or rejected with a typed rejection that leaves the
//! head where it was. Nothing may panic. The check itself lives in
//! `tests/support/post_request_check.rs`, which `tests/fuzz_corpus_ledger.rs` also runs over
//! the checked-in seeds on every `cargo test`.
//!
//! Each input that parses posts into a fresh ledger, so a failing input fails on its own.
//!
//! Run from the repository root (libFuzzer adds what it finds to the first, gitignored
//! directory and only reads the seeds):
//!
//! ```sh
//! mkdir -p fuzz/corpus/post_request
//! RUSTC_BOOTSTRAP=1 cargo fuzz run post_request fuzz/corpus/post_request \
//!     fuzz/corpus_seed/post_request -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/post_request_check.rs"]
mod check;

fuzz_target!(|bytes: &[u8]| {
    check::check_post_request(bytes);
});

//! Differential fuzzing of the ledger against a plain in-memory model: the bytes decode (with
//! `arbitrary`) into up to 32 operations (posts over two ledgers and three assets, repeated and
//! conflicting references, reverts forced and not, account and transaction metadata, overdraft
//! policies, reopens, process crashes and power losses, idle or in the middle of a post), run
//! against the ledger on the simulated disk and against the model. Every outcome and every
//! balance agrees after every operation; at the end the state equals a replay of the log, the
//! log verifies, and balances sum to zero per ledger and asset. The check is the ledger oracle,
//! `tests/support/oracle.rs`, which `tests/fuzz_corpus_ledger.rs` also runs over the
//! checked-in seeds on every `cargo test` (and `tests/ledger_model.rs` over proptest's draws).
//!
//! Run from the repository root (libFuzzer adds what it finds to the first, gitignored
//! directory and only reads the seeds):
//!
//! ```sh
//! mkdir -p fuzz/corpus/ledger_ops
//! RUSTC_BOOTSTRAP=1 cargo fuzz run ledger_ops fuzz/corpus/ledger_ops \
//!     fuzz/corpus_seed/ledger_ops -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/oracle.rs"]
mod check;

fuzz_target!(|bytes: &[u8]| {
    check::check_ledger_ops(bytes);
});

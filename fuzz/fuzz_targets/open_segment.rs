//! Fuzzes opening a log whose only segment holds arbitrary bytes: the log must refuse to open
//! with an error, or open (read-only and read-write alike) to a log whose every entry reads
//! back, seqs `1..=head` without a gap; nothing may panic. The check itself lives in
//! `tests/support/open_segment_check.rs`, which `tests/fuzz_corpus.rs` also runs over the
//! checked-in seeds on every `cargo test`.
//!
//! Run from the repository root (libFuzzer adds what it finds to the first, gitignored
//! directory and only reads the seeds):
//!
//! ```sh
//! mkdir -p fuzz/corpus/open_segment
//! RUSTC_BOOTSTRAP=1 cargo fuzz run open_segment fuzz/corpus/open_segment \
//!     fuzz/corpus_seed/open_segment -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/open_segment_check.rs"]
mod check;

fuzz_target!(|bytes: &[u8]| {
    check::check_open_segment(bytes);
});

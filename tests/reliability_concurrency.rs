//! Concurrency: many threads post into the same hot accounts and into private ones, some
//! retrying each other's references, in rounds separated by a close and reopen, for a bounded
//! time. Totals match the acknowledged posts, no reference is posted twice, every thread
//! finishes (no deadlock), and verify passes after every round.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use folio::{Ledger, PostRequest, Posting};
use rust_decimal::Decimal;

const THREADS: u64 = 8;
const ROUNDS: u64 = 4;

fn request(thread: u64, n: u64) -> PostRequest {
    // Even posts go to a hot account shared by all threads, odd ones to the thread's own.
    let destination = if n % 2 == 0 {
        "hot:till".to_string()
    } else {
        format!("private:{thread}")
    };
    let posting = Posting::new("world", destination, "0.25", "USD/2").unwrap();
    PostRequest::new("main", vec![posting]).with_reference(format!("t{thread}-{n}"))
}

#[test]
fn threads_posting_through_reopens_keep_totals_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    Ledger::create(&store).unwrap().close().unwrap();
    let acknowledged = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let next = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let round_time = Duration::from_millis(300);
    for round in 0..ROUNDS {
        let ledger = Ledger::open(&store).unwrap();
        let started = Instant::now();
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (ledger, acknowledged, next) =
                    (ledger.clone(), acknowledged.clone(), next.clone());
                std::thread::spawn(move || {
                    while started.elapsed() < round_time {
                        let n = next[thread as usize].fetch_add(1, Ordering::SeqCst);
                        let receipt = ledger.post(request(thread, n)).unwrap();
                        assert!(!receipt.replayed);
                        acknowledged
                            .lock()
                            .unwrap()
                            .insert(format!("t{thread}-{n}"), receipt.id);
                        // Now and then retry another thread's reference that was acknowledged
                        // (one only counted out may still be in flight): it must replay.
                        if n % 16 == 5 {
                            let other = (thread + 1) % THREADS;
                            let seen = next[other as usize].load(Ordering::SeqCst);
                            let reference = format!("t{other}-{}", seen.saturating_sub(2));
                            let known = acknowledged.lock().unwrap().get(&reference).copied();
                            if let Some(id) = known {
                                let retry = ledger.post(request(other, seen.saturating_sub(2)));
                                let receipt = retry.unwrap();
                                assert!(receipt.replayed && receipt.id == id);
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a posting thread panicked");
        }
        assert!(
            started.elapsed() < round_time + Duration::from_secs(30),
            "round {round} stalled"
        );
        let acknowledged = acknowledged.lock().unwrap();
        let ids: std::collections::BTreeSet<u64> = acknowledged.values().copied().collect();
        assert_eq!(
            ids.len(),
            acknowledged.len(),
            "two references share a transaction id"
        );
        let stats = ledger.stats().unwrap();
        assert_eq!(
            stats.transactions,
            acknowledged.len() as u64,
            "round {round}: a post was lost or doubled"
        );
        let quarter = Decimal::new(25, 2);
        let hot = acknowledged
            .keys()
            .filter(|reference| {
                reference
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    % 2
                    == 0
            })
            .count();
        let balances = ledger.balances("main", "").unwrap();
        assert_eq!(
            balances["hot:till"]["USD/2"],
            quarter * Decimal::from(hot as u64)
        );
        assert_eq!(
            balances["world"]["USD/2"],
            -quarter * Decimal::from(acknowledged.len() as u64)
        );
        assert!(ledger.verify(&[]).unwrap().ok);
        ledger.close().unwrap();
    }
    println!(
        "posted {} transactions from {THREADS} threads over {ROUNDS} rounds",
        acknowledged.lock().unwrap().len()
    );
}

//! Process kill: `folio post` runs on a large input and is killed with SIGKILL at random
//! moments, sometimes again during the next process's recovery open. After each kill: every
//! receipt printed before the kill is in the store with the same block_hash, at most one
//! unacknowledged group (4,096 lines) per kill was added beyond them, and verify passes.
//! 20 kills by default; `FOLIO_KILLS=1000` for the long run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use folio::Ledger;

const LINES_PER_RUN: usize = 10_000;
const GROUP_LINES: usize = 4096;
/// Kills on one store before the next run starts a fresh one.
const RUNS_PER_STORE: u64 = 20;

fn folio_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_folio"));
    command.args(args).env_remove("FOLIO_STORE");
    command
}

fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

fn write_input(path: &Path, run: u64) {
    let lines: Vec<String> = (0..LINES_PER_RUN)
        .map(|n| {
            format!(
                r#"{{"ledger":"main","reference":"k{run}-{n}","postings":[{{"source":"world","destination":"till:{}","amount":"1.{:02}","asset":"USD/2"}}]}}"#,
                n % 5,
                n % 100
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Runs `folio post` and kills it after `delay`; returns the receipts it printed in full.
fn post_and_kill(store: &str, input: &Path, delay: Duration) -> Vec<serde_json::Value> {
    let mut child = folio_command(&["post", "--store", store, "--json", input.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // A line cut by the kill does not parse and was never fully printed.
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                lines.push(value);
            }
        }
        lines
    });
    let deadline = std::time::Instant::now() + delay;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    reader.join().unwrap()
}

#[test]
fn killed_posts_lose_no_printed_receipt() {
    let kills: u64 = std::env::var("FOLIO_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    assert!(
        folio_command(&["init", "--store", store_arg])
            .status()
            .unwrap()
            .success()
    );
    let input = dir.path().join("input.jsonl");
    let mut rng = 42u64;
    // Time one uninterrupted run, so that the kills land anywhere inside a run.
    write_input(&input, u64::MAX);
    let started = std::time::Instant::now();
    let full = post_and_kill(store_arg, &input, Duration::from_secs(600));
    let run_ms = started.elapsed().as_millis() as u64;
    assert_eq!(full.len(), LINES_PER_RUN);
    let mut transactions_before = LINES_PER_RUN as u64;
    let (mut printed_total, mut recovery_kills, mut mid_run_kills) = (0usize, 0u64, 0u64);
    for run in 0..kills {
        if run > 0 && run % RUNS_PER_STORE == 0 {
            // A fresh store now and then keeps each run's checks (and verify) the same size,
            // so that the long run grows linearly with the kills.
            std::fs::remove_dir_all(&store).unwrap();
            let created = folio_command(&["init", "--store", store_arg])
                .status()
                .unwrap();
            assert!(created.success());
            transactions_before = 0;
        }
        write_input(&input, run);
        let delay = Duration::from_millis(next_random(&mut rng) % (run_ms + 1));
        let printed = post_and_kill(store_arg, &input, delay);
        if printed.len() < LINES_PER_RUN {
            mid_run_kills += 1;
        }
        if next_random(&mut rng) % 3 == 0 {
            // Kill the next process too, while it is recovering.
            let mut recovering = folio_command(&["stats", "--store", store_arg])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(next_random(&mut rng) % 20));
            let _ = recovering.kill();
            let _ = recovering.wait();
            recovery_kills += 1;
        }
        let ledger = Ledger::open(&store).unwrap();
        for receipt in &printed {
            let id = receipt["id"].as_u64().unwrap();
            let found = ledger
                .transaction("main", id)
                .unwrap()
                .unwrap_or_else(|| panic!("run {run}: printed tx {id} lost"));
            assert_eq!(
                folio::ledger::request::hex(&found.block_hash),
                receipt["block_hash"].as_str().unwrap()
            );
        }
        let transactions = ledger.stats().unwrap().transactions;
        let present = (transactions - transactions_before) as usize;
        transactions_before = transactions;
        assert!(
            present >= printed.len(),
            "run {run}: {present} present, {} printed",
            printed.len()
        );
        assert!(
            present - printed.len() <= GROUP_LINES,
            "run {run}: {} unacknowledged present",
            present - printed.len()
        );
        if run % 4 == 3 {
            let report = ledger.verify(&[]).unwrap();
            assert!(report.ok, "run {run}: {:?}", report.first_failure);
        }
        ledger.close().unwrap();
        printed_total += printed.len();
    }
    let status = folio_command(&["verify", "--store", store_arg])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    println!(
        "kills: {kills} ({mid_run_kills} mid-run, {recovery_kills} during recovery); receipts printed and found: {printed_total}"
    );
    assert!(mid_run_kills > 0, "no kill landed while posting");
}

//! The log's writer thread: it writes and fsyncs prepared batches, in the order they are
//! handed to it, so that the leader of a group can commit the group's state on its own core
//! while the group's fsync runs. Without it (the thread could not be started) each batch is
//! written on the thread that lands it; nothing else changes.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use crate::log::{Appended, Log, LogError, Prepared};

type WriteResult = Result<Vec<Appended>, LogError>;

/// A batch to write, and where its result goes.
struct Job {
    prepared: Prepared,
    done: SyncSender<WriteResult>,
}

/// The writer thread of one ledger. Dropping it ends the thread and waits for it, so that the
/// log's files are closed before the store's lock is released.
#[derive(Debug)]
pub(crate) struct Syncer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// A batch on its way to the log.
pub(crate) enum PendingWrite {
    /// Handed to the writer thread: its result comes here.
    Sent(Receiver<WriteResult>),
    /// To be written by whoever finishes it (no writer thread).
    Inline(Prepared),
}

impl Syncer {
    /// Starts the writer thread; without a thread (the system refused one), batches are
    /// written inline.
    pub(crate) fn start(log: Arc<Log>) -> Syncer {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("folio-log-writer".into())
            .spawn(move || {
                for job in receiver {
                    // A caller that stopped waiting (it panicked) loses only its answer.
                    let _ = job.done.send(log.write(job.prepared));
                }
            });
        match spawned {
            Ok(thread) => Syncer {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            Err(_) => Syncer {
                jobs: None,
                thread: None,
            },
        }
    }

    /// Hands a prepared batch to the writer thread: its write and fsync start now, after those
    /// of every batch handed before it.
    pub(crate) fn send(&self, prepared: Prepared) -> PendingWrite {
        let Some(jobs) = &self.jobs else {
            return PendingWrite::Inline(prepared);
        };
        let (done, result) = mpsc::sync_channel(1);
        match jobs.send(Job { prepared, done }) {
            Ok(()) => PendingWrite::Sent(result),
            // The thread is gone (it panicked): write inline.
            Err(mpsc::SendError(job)) => PendingWrite::Inline(job.prepared),
        }
    }
}

impl PendingWrite {
    /// Waits for the batch to be durable; its entries' seqs and hashes, or why not.
    pub(crate) fn finish(self, log: &Log) -> WriteResult {
        match self {
            PendingWrite::Inline(prepared) => log.write(prepared),
            PendingWrite::Sent(result) => result.recv().unwrap_or_else(|_| {
                // The thread died inside the write (a panic): whether the batch reached the
                // disk is not known, and nothing may be written after it.
                log.poison_writes();
                Err(LogError::OutcomeUnknown {
                    source: std::io::Error::other("the log writer thread stopped"),
                })
            }),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

//! What the loop every transport shares (`http::drive`) needs from a store: its id, a
//! consumer's cursor, the events after it, and an ack. An application that keeps its store
//! open passes its `&Ledger`; `folio sync` passes a store it opens for one read or one ack and
//! closes at once, so that the store is never held across a send, a wait or a backoff
//! (`docs/sync.md`, "The store's lock").

use super::{BatchLimits, OutboxBatch, OutboxError};
use crate::Error;
use crate::ledger::Ledger;
use crate::store::StoreError;

/// A store as sync reads and acknowledges it. A method may fail with a store in use
/// ([`is_busy`]): sync then tries it again after a poll interval, keeping what it has (an ack
/// not yet recorded is recorded before the next read; a batch not yet delivered is sent
/// again, the same bytes).
pub trait OutboxStore {
    /// The store's random, stable id (in every request body, event and message id).
    fn store_id(&self) -> [u8; 16];
    /// [`Ledger::cursor`].
    fn cursor(&mut self, consumer: &str) -> Result<u64, OutboxError>;
    /// [`Ledger::events_since`]. May answer an empty batch without reading the log when
    /// nothing was appended since the last empty answer for the same `seq_after`.
    fn events_since(
        &mut self,
        seq_after: u64,
        limits: BatchLimits,
    ) -> Result<OutboxBatch, OutboxError>;
    /// [`Ledger::ack`], durable before it returns.
    fn ack(&mut self, consumer: &str, seq: u64) -> Result<(), OutboxError>;
}

impl OutboxStore for &Ledger {
    fn store_id(&self) -> [u8; 16] {
        Ledger::store_id(self)
    }

    fn cursor(&mut self, consumer: &str) -> Result<u64, OutboxError> {
        Ok(Ledger::cursor(self, consumer)?)
    }

    fn events_since(
        &mut self,
        seq_after: u64,
        limits: BatchLimits,
    ) -> Result<OutboxBatch, OutboxError> {
        Ledger::events_since(self, seq_after, limits)
    }

    fn ack(&mut self, consumer: &str, seq: u64) -> Result<(), OutboxError> {
        Ledger::ack(self, consumer, seq)?;
        Ok(())
    }
}

/// Whether an error is another process holding the store (`STORE_IN_USE`): passing, so sync
/// waits and tries again rather than stop.
pub fn is_busy(error: &OutboxError) -> bool {
    matches!(
        error,
        OutboxError::Store(Error::Store(StoreError::InUse { .. }))
    )
}

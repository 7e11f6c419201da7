//! The error a ledger request is answered with: bad input, rejected transactions, and the
//! store-level conditions the ledger detects (a store in use, a log behind its state, an
//! unknown outcome). Defined with the domain, whose grammar checks and validation return it;
//! the ledger handle (`crate::ledger`) returns it too, and re-exports it.

/// What a refused skip says of the consumer's next entry with an event.
fn describe_next(cursor: u64, next: Option<u64>) -> String {
    match next {
        Some(next) => {
            format!("its next entry with an event after its cursor {cursor} is seq {next}")
        }
        None => format!("no entry after its cursor {cursor} has an event"),
    }
}

/// An error of the ledger: of a request, or of the store it was made to.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A field does not follow its grammar or bounds.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidInput {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// An amount with more decimal places than its asset's declared scale.
    #[error("amount {amount} has more than {scale} decimal places, the scale of {asset}")]
    AmountPrecision {
        amount: String,
        asset: String,
        scale: u32,
    },
    /// Metadata over its bounds.
    #[error("metadata too large: {reason}")]
    MetadataTooLarge { reason: &'static str },
    /// A transaction with no postings.
    #[error("a transaction needs at least one posting")]
    EmptyPostings,
    /// A transaction with more postings than allowed.
    #[error("{count} postings exceed the bound of {max}")]
    TooManyPostings { count: usize, max: usize },
    /// A posting would take an account below what its overdraft policy allows.
    #[error(
        "insufficient funds: {account} holds {balance} {asset}, posting {amount} leaves it \
         {shortfall} short of its overdraft floor"
    )]
    InsufficientFunds {
        ledger: String,
        account: String,
        asset: String,
        balance: String,
        amount: String,
        shortfall: String,
    },
    /// A volume would pass the largest representable decimal.
    #[error("volume overflow on {account} in {asset}")]
    Overflow { account: String, asset: String },
    /// The reference was used by a different request.
    #[error(
        "reference {reference:?} in ledger {ledger} was used by transaction {original_id} with a \
         different {field}"
    )]
    IdempotencyConflict {
        ledger: String,
        reference: String,
        original_id: u64,
        field: String,
    },
    /// No such transaction in this ledger.
    #[error("transaction {id} not found in ledger {ledger}")]
    TransactionNotFound { ledger: String, id: u64 },
    /// A transaction can be reverted once.
    #[error("transaction {id} was already reverted by transaction {reverted_by}")]
    AlreadyReverted { id: u64, reverted_by: u64 },
    /// A metadata key to delete is not there.
    #[error("metadata key {key:?} not found on {target}")]
    MetadataKeyNotFound { target: String, key: String },
    /// `world` is always unbounded; its policy cannot be set.
    #[error("the overdraft policy of world cannot be changed")]
    WorldPolicy,
    /// A write or sync failed: the entries may or may not be durable. The ledger refuses
    /// writes until reopened; retrying with the same reference then settles the outcome.
    #[error("outcome unknown: {detail}; reopen the store and retry with the same reference")]
    OutcomeUnknown { detail: String },
    /// The disk is full; nothing of the request was written and the ledger stays usable.
    #[error("no space left on the store's disk; nothing was written: {detail}")]
    NoSpace { detail: String },
    /// A storage error that left the store as it was; nothing was written.
    #[error("storage error, nothing was written: {detail}")]
    Storage { detail: String },
    /// An entry over the log's size bound.
    #[error("the entry would take {bytes} bytes, over the bound of {max}")]
    EntryTooLarge { bytes: usize, max: usize },
    /// An outbox consumer acknowledged a seq past the log's head: it claims entries the
    /// store does not hold (a store restored from an older backup, or a bug).
    #[error("consumer {consumer} cannot acknowledge seq {seq}: the log ends at seq {head}")]
    AckBeyondHead {
        consumer: String,
        seq: u64,
        head: u64,
    },
    /// An outbox consumer acknowledged a seq below its cursor: cursors never move back.
    #[error("consumer {consumer} cannot acknowledge seq {seq}: its cursor is already at {cursor}")]
    AckBackwards {
        consumer: String,
        seq: u64,
        cursor: u64,
    },
    /// A consumer may skip only its next entry with an event (`Ledger::skip`): `seq` is at or
    /// below its cursor, past the head, or an entry with an event comes before it (`next`, or
    /// `None` when no entry after the cursor has one). Nothing was written.
    #[error(
        "consumer {consumer} cannot skip seq {seq}: {}",
        describe_next(*cursor, *next)
    )]
    SkipNotNext {
        consumer: String,
        seq: u64,
        cursor: u64,
        next: Option<u64>,
    },
    /// The handle was closed.
    #[error("the ledger handle is closed")]
    Closed,
    /// The handle was opened for reading (`Ledger::open_reader`): it never writes
    /// (`READ_ONLY`).
    #[error("the store is open for reading only: open it with Ledger::open to write")]
    OpenForReading,
    /// An earlier write failed with an unknown outcome; reopen the store.
    #[error(
        "the ledger refuses writes after an earlier failure with an unknown outcome; reopen it"
    )]
    Poisoned,
    /// A state commit failed after its group reached the log, and catching the state up from
    /// the log failed too: the state lacks acknowledged entries, so reads are refused rather
    /// than answered without them. Reopen the store (open catches the state up).
    #[error("the state lacks acknowledged entries after a failed state commit; reopen the store")]
    StateBehind,
    /// `create` on a directory that exists and is not empty.
    #[error("{path} exists and is not empty")]
    StoreExists { path: String },
    /// The state has applied entries the log no longer holds: acknowledged data was lost.
    #[error(
        "log behind state: the log ends at seq {log_head} but the state has applied seq {watermark}"
    )]
    LogBehindState { log_head: u64, watermark: u64 },
    /// The state's watermark names an entry whose hash differs from the log's: the state
    /// belongs to another log, or the log was rewritten.
    #[error("state does not match the log: watermark seq {seq} has another block_hash")]
    StateLogMismatch { seq: u64 },
    /// The log's first entry is not a store creation.
    #[error("the log does not start with a store creation entry")]
    NotAStore,
}

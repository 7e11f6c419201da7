//! Folio: an embedded, single-node, double-entry ledger with its own storage engine.
//!
//! The source of truth is an append-only, hash-chained log ([`log`]); the materialized state
//! (balances, volumes, references, indexes, metadata, policies) lives in redb ([`state`]) and is
//! derived from the log, so it can always be rebuilt from it. [`Ledger`] is the handle an
//! application links.
//!
//! ```
//! use folio::{Ledger, PostRequest, Posting, RevertRequest};
//! let dir = tempfile::tempdir()?;
//! let ledger = Ledger::create(dir.path().join("books"))?;
//! let sale = ledger.post(PostRequest::new("shop", vec![
//!     Posting::new("world", "till:1", "20.00", "EUR/2")?,
//! ]))?;
//! let refund = ledger.revert(RevertRequest::new("shop", sale.id))?;
//! assert_eq!(refund.reverts, Some(sale.id));
//! assert_eq!(ledger.balance("shop", "till:1")?["EUR/2"].to_string(), "0");
//! ledger.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cli;
pub mod domain;
mod error;
pub mod export;
pub mod ledger;
pub mod log;
pub mod outbox;
pub mod replay;
pub mod report;
pub mod state;
pub mod store;
pub mod verify;

pub use domain::LedgerError;
pub use domain::model::{Metadata, Overdraft, Timestamp, Volumes};
pub use error::Error;
pub use ledger::request::{Committed, OverdraftFlag, PostRequest, Posting, Receipt, RevertRequest};
pub use ledger::{AccountView, Ledger, LedgerOptions, LedgerStats, OpenReport};
pub use log::{Head, LogError};
pub use outbox::{BatchLimits, ConsumerView, OutboxBatch, OutboxError};
pub use replay::ReplayError;
pub use state::StateError;
pub use store::StoreError;
pub use verify::VerifyError;

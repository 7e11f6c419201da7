//! The domain: what a ledger is made of, with no storage in it. Names, amounts and their
//! grammar ([`model`]), entry bodies and their canonical codec ([`entry`]), and the errors a
//! request is answered with ([`error`]). It sits on the log (entries hash with the log's
//! domain tag, and are bounded by its record size) and below everything else: the state
//! stores these types, replay decodes them, the ledger validates and writes them
//! (`docs/architecture.md`).

pub mod entry;
pub mod error;
pub mod model;
pub mod request;
pub mod validate;
pub mod view;

pub use error::LedgerError;

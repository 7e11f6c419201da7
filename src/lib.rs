//! Folio: an embedded, single-node, double-entry ledger with its own storage engine.
//!
//! The source of truth is an append-only, hash-chained log ([`log`]); everything else is
//! derived from it and can be rebuilt from it.

pub mod log;

//! The domain's value types and their grammar: ledger names, account addresses, assets,
//! amounts and volumes, overdraft policies, metadata bounds, and timestamps
//! (`docs/ledger.md`, "Names and amounts"). Every constructor validates; a value of these types
//! is always well-formed and canonical.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;

use super::error::LedgerError;

/// Longest ledger name, in bytes.
pub const LEDGER_NAME_BYTES_MAX: usize = 63;
/// Longest outbox consumer name, in bytes (`docs/sync.md`, "Consumers").
pub const CONSUMER_NAME_BYTES_MAX: usize = 63;
/// Longest account address, in bytes.
pub const ACCOUNT_BYTES_MAX: usize = 256;
/// Longest asset code (before the optional `/scale`).
pub const ASSET_CODE_BYTES_MAX: usize = 16;
/// Largest declared asset scale (`USD/18`).
pub const ASSET_SCALE_MAX: u32 = 18;
/// Longest reference (idempotency key), in bytes.
pub const REFERENCE_BYTES_MAX: usize = 256;
/// Most postings in one transaction.
pub const POSTINGS_PER_TRANSACTION_MAX: usize = 1000;
/// Metadata bounds: keys, values, entries per map, and the whole map.
pub const METADATA_KEY_BYTES_MAX: usize = 128;
pub const METADATA_VALUE_BYTES_MAX: usize = 4096;
pub const METADATA_ENTRIES_MAX: usize = 64;
pub const METADATA_BYTES_MAX: usize = 16 * 1024;

/// The account that is the unbounded source and sink of every ledger.
pub const WORLD: &str = "world";

/// String metadata: a sorted map, so that its encoding is canonical.
pub type Metadata = BTreeMap<String, String>;

fn invalid(field: &'static str, value: &str, reason: &'static str) -> LedgerError {
    LedgerError::InvalidInput {
        field,
        value: clip(value),
        reason,
    }
}

/// Shortens a bad value for an error message.
fn clip(value: &str) -> String {
    if value.len() <= 80 {
        return value.to_string();
    }
    let mut end = 80;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// Checks a ledger name: 1 to 63 bytes of `[A-Za-z0-9_-]`.
pub fn check_ledger_name(name: &str) -> Result<(), LedgerError> {
    if name.is_empty() || name.len() > LEDGER_NAME_BYTES_MAX {
        return Err(invalid("ledger", name, "must be 1 to 63 characters"));
    }
    if !name.bytes().all(is_name_byte) {
        return Err(invalid(
            "ledger",
            name,
            "may hold only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// Checks an outbox consumer's name: the grammar of a ledger name, 1 to 63 bytes of
/// `[A-Za-z0-9_-]`, so that it prints and passes in a URL or a shell unquoted.
pub fn check_consumer_name(name: &str) -> Result<(), LedgerError> {
    if name.is_empty() || name.len() > CONSUMER_NAME_BYTES_MAX {
        return Err(invalid("consumer", name, "must be 1 to 63 characters"));
    }
    if !name.bytes().all(is_name_byte) {
        return Err(invalid(
            "consumer",
            name,
            "may hold only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// Longest reason an `EventSkipped` entry records, in bytes.
pub const SKIP_REASON_BYTES_MAX: usize = 1024;

/// Checks the reason recorded with a skipped entry: 1 to [`SKIP_REASON_BYTES_MAX`] bytes of
/// UTF-8 without control characters, so that it prints on one line as it was given.
pub fn check_skip_reason(reason: &str) -> Result<(), LedgerError> {
    if reason.is_empty() || reason.len() > SKIP_REASON_BYTES_MAX {
        return Err(invalid("reason", reason, "must be 1 to 1024 bytes"));
    }
    if reason.chars().any(char::is_control) {
        return Err(invalid("reason", reason, "may not hold control characters"));
    }
    Ok(())
}

/// Checks an account address: segments of `[A-Za-z0-9_-]+` separated by `:`, at most 256 bytes.
pub fn check_account(field: &'static str, address: &str) -> Result<(), LedgerError> {
    if address.is_empty() || address.len() > ACCOUNT_BYTES_MAX {
        return Err(invalid(field, address, "must be 1 to 256 characters"));
    }
    for segment in address.split(':') {
        if segment.is_empty() {
            return Err(invalid(field, address, "has an empty segment"));
        }
        if !segment.bytes().all(is_name_byte) {
            return Err(invalid(
                field,
                address,
                "segments may hold only letters, digits, '_' and '-'",
            ));
        }
    }
    Ok(())
}

/// An asset code with its optional declared scale: `USD`, `USD/2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetSpec {
    /// Most decimal places an amount may have; `None` when undeclared.
    pub scale: Option<u32>,
}

/// Checks an asset: `[A-Z][A-Z0-9]{0,15}` optionally followed by `/` and a scale of 0 to 18.
pub fn parse_asset(asset: &str) -> Result<AssetSpec, LedgerError> {
    let (code, scale) = match asset.split_once('/') {
        Some((code, scale)) => (code, Some(scale)),
        None => (asset, None),
    };
    let code_ok = !code.is_empty()
        && code.len() <= ASSET_CODE_BYTES_MAX
        && code.as_bytes()[0].is_ascii_uppercase()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !code_ok {
        return Err(invalid(
            "asset",
            asset,
            "code must be 1 to 16 of A-Z and 0-9, starting with a letter",
        ));
    }
    let Some(scale_text) = scale else {
        return Ok(AssetSpec { scale: None });
    };
    let digits_ok = !scale_text.is_empty()
        && scale_text.len() <= 2
        && scale_text.bytes().all(|b| b.is_ascii_digit())
        && (scale_text == "0" || !scale_text.starts_with('0'));
    match scale_text.parse::<u32>() {
        Ok(scale) if digits_ok && scale <= ASSET_SCALE_MAX => Ok(AssetSpec { scale: Some(scale) }),
        _ => Err(invalid(
            "asset",
            asset,
            "scale after '/' must be 0 to 18, without leading zeros",
        )),
    }
}

/// Parses an amount written as a decimal string (`"12.50"`) for `asset`: strictly positive, no
/// more decimal places than the asset's scale. Returns the canonical (normalized) value.
pub fn parse_amount(field: &'static str, text: &str, asset: &str) -> Result<Decimal, LedgerError> {
    let amount = parse_decimal_text(text).map_err(|reason| invalid(field, text, reason))?;
    check_amount(field, amount, asset)
}

/// Parses a plain decimal string: digits with at most one point, an optional leading '-'. No
/// exponents, spaces or signs other than '-': a written amount has one reading.
pub fn parse_decimal_text(text: &str) -> Result<Decimal, &'static str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let shape_ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && !digits.starts_with('.')
        && !digits.ends_with('.');
    if !shape_ok {
        return Err("must be a decimal string such as \"12.50\"");
    }
    Decimal::from_str_exact(text).map_err(|_| "is out of range")
}

/// Checks an amount for `asset` and returns it normalized.
pub fn check_amount(
    field: &'static str,
    amount: Decimal,
    asset: &str,
) -> Result<Decimal, LedgerError> {
    let spec = parse_asset(asset)?;
    let amount = amount.normalize();
    if amount <= Decimal::ZERO {
        return Err(invalid(
            field,
            &amount.to_string(),
            "must be greater than zero",
        ));
    }
    if let Some(scale) = spec.scale
        && amount.scale() > scale
    {
        return Err(LedgerError::AmountPrecision {
            amount: amount.to_string(),
            asset: asset.to_string(),
            scale,
        });
    }
    Ok(amount)
}

/// Checks a reference (idempotency key): 1 to 256 bytes, no control characters.
pub fn check_reference(reference: &str) -> Result<(), LedgerError> {
    if reference.is_empty() || reference.len() > REFERENCE_BYTES_MAX {
        return Err(invalid("reference", reference, "must be 1 to 256 bytes"));
    }
    if reference.chars().any(char::is_control) {
        return Err(invalid(
            "reference",
            reference,
            "may not hold control characters",
        ));
    }
    Ok(())
}

/// Checks a metadata map against the bounds.
pub fn check_metadata(metadata: &Metadata) -> Result<(), LedgerError> {
    if metadata.len() > METADATA_ENTRIES_MAX {
        return Err(LedgerError::MetadataTooLarge {
            reason: "more than 64 keys",
        });
    }
    let mut total = 0;
    for (key, value) in metadata {
        check_metadata_key(key)?;
        if value.len() > METADATA_VALUE_BYTES_MAX {
            return Err(LedgerError::MetadataTooLarge {
                reason: "a value over 4096 bytes",
            });
        }
        total += key.len() + value.len();
    }
    if total > METADATA_BYTES_MAX {
        return Err(LedgerError::MetadataTooLarge {
            reason: "over 16 KiB in all",
        });
    }
    Ok(())
}

/// Checks one metadata key: 1 to 128 bytes, no control characters.
pub fn check_metadata_key(key: &str) -> Result<(), LedgerError> {
    if key.is_empty() || key.len() > METADATA_KEY_BYTES_MAX || key.chars().any(char::is_control) {
        return Err(invalid(
            "metadata key",
            key,
            "must be 1 to 128 bytes without control characters",
        ));
    }
    Ok(())
}

/// How far below zero an account's balance in one asset may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overdraft {
    /// Not below zero (the default).
    #[default]
    None,
    /// Down to minus this amount.
    Bounded(Decimal),
    /// Without limit (as `world` always is).
    Unbounded,
}

impl Overdraft {
    /// Whether a balance is allowed under this policy.
    pub fn allows(&self, balance: Decimal) -> bool {
        match self {
            Overdraft::None => balance >= Decimal::ZERO,
            Overdraft::Bounded(limit) => balance >= -*limit,
            Overdraft::Unbounded => true,
        }
    }

    /// The lowest balance allowed; `None` when unbounded.
    pub fn floor(&self) -> Option<Decimal> {
        match self {
            Overdraft::None => Some(Decimal::ZERO),
            Overdraft::Bounded(limit) => Some(-*limit),
            Overdraft::Unbounded => None,
        }
    }
}

impl fmt::Display for Overdraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overdraft::None => write!(f, "none"),
            Overdraft::Bounded(limit) => write!(f, "{limit}"),
            Overdraft::Unbounded => write!(f, "unbounded"),
        }
    }
}

impl FromStr for Overdraft {
    type Err = LedgerError;
    /// `none`, `unbounded`, or a non-negative decimal limit.
    fn from_str(text: &str) -> Result<Self, LedgerError> {
        match text {
            "none" => Ok(Overdraft::None),
            "unbounded" => Ok(Overdraft::Unbounded),
            _ => {
                // The amount grammar of every amount (`parse_decimal_text`): `1_000`, `.5` or
                // `+5` are refused here as they are in a posting.
                let limit = parse_decimal_text(text)
                    .map_err(|_| {
                        invalid("overdraft", text, "must be none, unbounded or an amount")
                    })?
                    .normalize();
                if limit < Decimal::ZERO {
                    return Err(invalid("overdraft", text, "limit may not be negative"));
                }
                Ok(Overdraft::Bounded(limit))
            }
        }
    }
}

/// An account's volumes in one asset (Formance's shape): what came in, what went out, and the
/// balance `input - output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Volumes {
    pub input: Decimal,
    pub output: Decimal,
    pub balance: Decimal,
}

impl Volumes {
    /// Volumes from input and output.
    pub fn new(input: Decimal, output: Decimal) -> Volumes {
        Volumes {
            input,
            output,
            balance: (input - output).normalize(),
        }
    }

    /// After receiving `amount`; `None` when the new volumes cannot be held exactly.
    pub fn received(&self, amount: Decimal) -> Option<Volumes> {
        Volumes::exact(exact_add(self.input, amount)?, self.output)
    }

    /// After sending `amount`; `None` when the new volumes cannot be held exactly.
    pub fn sent(&self, amount: Decimal) -> Option<Volumes> {
        Volumes::exact(self.input, exact_add(self.output, amount)?)
    }

    /// Volumes whose balance is exact; `None` when `input - output` would be rounded.
    fn exact(input: Decimal, output: Decimal) -> Option<Volumes> {
        let balance = exact_add(input, -output)?;
        Some(Volumes {
            input,
            output,
            balance,
        })
    }
}

/// `a + b`, normalized, or `None` when the sum cannot be held exactly in a `Decimal` (96 bits
/// of mantissa, scale at most 28). `Decimal`'s own `checked_add` rounds away low digits
/// instead of failing, which would silently lose money (1e27 + 0.01 = 1e27).
///
/// ```
/// use folio::domain::model::exact_add;
/// use rust_decimal::Decimal;
/// let d = |text: &str| text.parse::<Decimal>().unwrap();
/// assert_eq!(exact_add(d("0.05"), d("0.05")), Some(d("0.1")));
/// assert_eq!(exact_add(d("1000000000000000000000000000"), d("0.01")), None);
/// ```
pub fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = a.scale().max(b.scale());
    let at_scale = |value: Decimal| {
        value
            .mantissa()
            .checked_mul(10i128.checked_pow(scale - value.scale())?)
    };
    let mut mantissa = at_scale(a)?.checked_add(at_scale(b)?)?;
    let mut scale = scale;
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale).ok()
}

/// A point in time, kept as microseconds since the Unix epoch, UTC. The ledger stores only
/// times in [`Timestamp::MIN`]..=[`Timestamp::MAX`] (`docs/ledger.md`, "Timestamps"); the field
/// is public, so a value built directly is checked when a request carries it
/// ([`Timestamp::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Why a time outside the years RFC 3339 can write is refused.
const TIMESTAMP_RANGE_REASON: &str =
    "is outside 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z";

impl Timestamp {
    /// The earliest time the ledger stores: `0000-01-01T00:00:00Z`. RFC 3339 writes a year in
    /// four digits without a sign, so an earlier time could not be written in an export, an
    /// event or a journal, nor read back through the JSON contract.
    pub const MIN: Timestamp = Timestamp(-62_167_219_200_000_000);
    /// The latest time the ledger stores: `9999-12-31T23:59:59.999999Z` (see [`Timestamp::MIN`]).
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999_999);

    /// Now, from the system clock.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_micros())
    }

    /// Parses RFC 3339 (`2026-11-22T10:00:00Z`); at most microsecond precision, and, once in
    /// UTC, within [`Timestamp::MIN`]..=[`Timestamp::MAX`]: `9999-12-31T23:59:59-01:00` is in
    /// the year 10000 and refused.
    pub fn parse(text: &str) -> Result<Timestamp, LedgerError> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|_| invalid("timestamp", text, "must be an RFC 3339 date-time"))?;
        if parsed.timestamp_subsec_nanos() % 1000 != 0 {
            return Err(invalid(
                "timestamp",
                text,
                "has precision beyond microseconds",
            ));
        }
        let at = Timestamp(parsed.timestamp_micros());
        if !at.in_range() {
            return Err(invalid("timestamp", text, TIMESTAMP_RANGE_REASON));
        }
        Ok(at)
    }

    /// Whether the ledger can store this time: within [`Timestamp::MIN`]..=[`Timestamp::MAX`].
    pub fn in_range(self) -> bool {
        (Timestamp::MIN..=Timestamp::MAX).contains(&self)
    }

    /// This time, or `INVALID_INPUT` naming `field` when it is out of range
    /// ([`Timestamp::in_range`]). The value in the message is the microseconds since the epoch:
    /// such a time has no RFC 3339 form.
    pub fn check(self, field: &'static str) -> Result<Timestamp, LedgerError> {
        if self.in_range() {
            return Ok(self);
        }
        Err(LedgerError::InvalidInput {
            field,
            value: format!("{}us since the epoch", self.0),
            reason: TIMESTAMP_RANGE_REASON,
        })
    }

    /// RFC 3339 in UTC, with as many fractional digits as needed (none, 3 or 6). A time out
    /// of range ([`Timestamp::in_range`]), which only a store written before the ledger
    /// refused them can hold, has no RFC 3339 form: it is written with a signed year of more
    /// than four digits (`+10000-01-01T00:00:00Z`), or `@<micros>us` past chrono's years.
    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_micros(self.0).single() {
            Some(time) => time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => format!("@{}us", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_grammar() {
        for good in ["world", "sales:food", "users:001:wallet", "a-b_c:D9"] {
            assert!(check_account("account", good).is_ok(), "{good}");
        }
        for bad in ["", ":a", "a:", "a::b", "a b", "a/b", "é"] {
            assert!(check_account("account", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn asset_grammar() {
        assert_eq!(parse_asset("USD").unwrap().scale, None);
        assert_eq!(parse_asset("USD/2").unwrap().scale, Some(2));
        assert_eq!(parse_asset("VND/0").unwrap().scale, Some(0));
        for bad in [
            "usd", "USD/", "USD/02", "USD/19", "1USD", "USD/2/3", "US D", "",
        ] {
            assert!(parse_asset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_positive_bounded_and_canonical() {
        assert_eq!(
            parse_amount("amount", "12.50", "USD/2")
                .unwrap()
                .to_string(),
            "12.5"
        );
        assert_eq!(
            parse_amount("amount", "12.500", "USD/2")
                .unwrap()
                .to_string(),
            "12.5"
        );
        assert!(parse_amount("amount", "12.501", "USD/2").is_err());
        for bad in ["0", "0.00", "-1", "1e3", "", ".5", "5.", "1.2.3", " 1"] {
            assert!(parse_amount("amount", bad, "USD").is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_round_trip_in_utc() {
        let at = Timestamp::parse("2026-11-22T10:00:00.123456+01:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-22T09:00:00.123456Z");
        assert!(Timestamp::parse("2026-11-22T10:00:00.1234567Z").is_err());
    }

    #[test]
    fn the_timestamp_bounds_are_the_first_and_last_microsecond_rfc3339_can_write() {
        assert_eq!(Timestamp::MIN.to_rfc3339(), "0000-01-01T00:00:00Z");
        assert_eq!(Timestamp::MAX.to_rfc3339(), "9999-12-31T23:59:59.999999Z");
        for text in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
            assert_eq!(Timestamp::parse(text).unwrap().to_rfc3339(), text);
        }
        assert_eq!(Timestamp::MIN.check("timestamp"), Ok(Timestamp::MIN));
        assert_eq!(Timestamp::MAX.check("timestamp"), Ok(Timestamp::MAX));
    }

    #[test]
    fn a_time_outside_years_0000_to_9999_in_utc_is_refused_naming_the_field() {
        // Each is a valid RFC 3339 date-time whose UTC falls in the year 10000 or -1.
        for text in [
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59-00:01",
            "0000-01-01T00:00:00+00:01",
            "0000-01-01T00:59:59.999999+01:00",
        ] {
            let error = Timestamp::parse(text).unwrap_err();
            assert!(
                matches!(
                    error,
                    LedgerError::InvalidInput {
                        field: "timestamp",
                        ..
                    }
                ),
                "{text}: {error}"
            );
        }
        for micros in [
            i64::MAX,
            i64::MIN,
            Timestamp::MAX.0 + 1,
            Timestamp::MIN.0 - 1,
        ] {
            let error = Timestamp(micros).check("clock").unwrap_err();
            assert!(
                matches!(error, LedgerError::InvalidInput { field: "clock", .. }),
                "{micros}: {error}"
            );
        }
    }
}

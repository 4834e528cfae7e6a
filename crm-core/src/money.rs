//! Money as integer minor units plus an ISO 4217 currency code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a three-letter code; lower case is accepted and upper-cased.
    pub fn new(code: &str) -> Result<Self, ValidationError> {
        let bytes = code.trim().as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_alphabetic) => Ok(Self([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
                c.to_ascii_uppercase(),
            ])),
            _ => Err(ValidationError::new(
                "currency",
                "must be a three-letter ISO 4217 code",
            )),
        }
    }

    /// The code, e.g. `"EUR"`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

/// A non-negative amount in minor units (cents) of one currency.
///
/// Deal values, revenues and budgets are never negative in this domain, so the
/// constructor rejects negative amounts rather than letting them flow into forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMoney", into = "RawMoney")]
pub struct Money {
    minor_units: i64,
    currency: Currency,
}

#[derive(Serialize, Deserialize)]
struct RawMoney {
    minor_units: i64,
    currency: Currency,
}

impl TryFrom<RawMoney> for Money {
    type Error = ValidationError;
    fn try_from(raw: RawMoney) -> Result<Self, Self::Error> {
        Self::new(raw.minor_units, raw.currency)
    }
}

impl From<Money> for RawMoney {
    fn from(m: Money) -> Self {
        Self {
            minor_units: m.minor_units,
            currency: m.currency,
        }
    }
}

impl Money {
    /// `minor_units` of `currency`; negative amounts are rejected.
    pub fn new(minor_units: i64, currency: Currency) -> Result<Self, ValidationError> {
        if minor_units < 0 {
            return Err(ValidationError::new("money", "amount must not be negative"));
        }
        Ok(Self {
            minor_units,
            currency,
        })
    }

    /// Zero of `currency`.
    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self {
            minor_units: 0,
            currency,
        }
    }

    /// The amount in minor units.
    #[must_use]
    pub const fn minor_units(&self) -> i64 {
        self.minor_units
    }

    /// The currency.
    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// Adds two amounts of the same currency; `None` on a currency mismatch or overflow.
    #[must_use]
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Money {
            minor_units: self.minor_units.checked_add(other.minor_units)?,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_validated_and_normalised() {
        assert_eq!(Currency::new("eur").unwrap().as_str(), "EUR");
        assert!(Currency::new("EURO").is_err());
        assert!(Currency::new("E1R").is_err());
        assert!(Currency::new("").is_err());
    }

    #[test]
    fn negative_money_is_rejected() {
        let eur = Currency::new("EUR").unwrap();
        assert_eq!(Money::new(-1, eur).unwrap_err().field(), "money");
        assert_eq!(Money::new(1999, eur).unwrap().minor_units(), 1999);
    }

    #[test]
    fn money_serde_rejects_negative_amounts() {
        let json = r#"{"minor_units":-5,"currency":"USD"}"#;
        assert!(serde_json::from_str::<Money>(json).is_err());
    }

    #[test]
    fn adding_different_currencies_is_refused() {
        let eur = Money::new(100, Currency::new("EUR").unwrap()).unwrap();
        let usd = Money::new(100, Currency::new("USD").unwrap()).unwrap();
        assert_eq!(eur.checked_add(usd), None);
        assert_eq!(eur.checked_add(eur).unwrap().minor_units(), 200);
    }
}

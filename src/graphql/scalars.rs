//! Custom scalars: `DateTime` (RFC 3339, rendered in UTC with `Z`) and `Usd`
//! (an exact decimal string over integer nano-dollars; never a float).

use crate::domain::NanoUsd;
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{SecondsFormat, Utc};

/// An instant, RFC 3339. Any offset is accepted on input; output is UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// An RFC 3339 date-time such as `2025-01-31T12:00:00Z`; always UTC in responses.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| DateTime(t.with_timezone(&Utc)))
                .map_err(|_| {
                    InputValueError::custom(
                        "expected an RFC 3339 date-time such as 2025-01-31T12:00:00Z",
                    )
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(t: chrono::DateTime<Utc>) -> Self {
        DateTime(t)
    }
}

/// US dollars as an exact decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usd(pub NanoUsd);

/// US dollars as an exact decimal string, e.g. `"0.00123"` (up to 9 decimals).
#[Scalar(name = "Usd")]
impl ScalarType for Usd {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NanoUsd::parse_decimal(s).map(Usd).ok_or_else(|| {
                InputValueError::custom(
                    "expected a non-negative decimal string with at most 9 decimals",
                )
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_decimal_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_render_in_utc_and_parse_any_offset() {
        let parsed =
            <DateTime as ScalarType>::parse(Value::String("2025-01-31T13:00:00+01:00".into()))
                .unwrap();
        assert_eq!(
            parsed.to_value(),
            Value::String("2025-01-31T12:00:00Z".into())
        );
        assert!(<DateTime as ScalarType>::parse(Value::String("yesterday".into())).is_err());
    }

    #[test]
    fn usd_is_an_exact_string() {
        assert_eq!(
            Usd(NanoUsd(1_500_000)).to_value(),
            Value::String("0.0015".into())
        );
        assert_eq!(
            <Usd as ScalarType>::parse(Value::String("2.5".into())).unwrap(),
            Usd(NanoUsd(2_500_000_000))
        );
    }
}

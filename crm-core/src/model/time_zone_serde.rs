//! Serde for time zones read from stored or sent JSON: the IANA name, parsed with
//! [`parse_time_zone`](super::parse_time_zone) so that an unknown name's error quotes
//! at most a bounded prefix of the input (chrono-tz's own error repeats it whole).

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serializer};

/// Writes the zone's IANA name.
pub(crate) fn serialize<S: Serializer>(tz: &Tz, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(tz.name())
}

/// Reads an IANA name; an unknown one fails with a bounded message.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tz, D::Error> {
    let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
    super::parse_time_zone(&name).map_err(serde::de::Error::custom)
}

/// The same for an optional zone (`null` is `None`).
pub(crate) mod option {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the zone's IANA name, or `null`.
    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(crate) fn serialize<S: Serializer>(
        tz: &Option<Tz>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match tz {
            Some(tz) => serializer.serialize_some(tz.name()),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an IANA name or `null`; an unknown name fails with a bounded message.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Tz>, D::Error> {
        let name = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.map(|n| super::super::parse_time_zone(&n).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::model::WorkspaceSettings;

    #[test]
    fn an_unknown_zone_is_quoted_only_in_part() {
        let long = "Mars/".repeat(20_000);
        let json = serde_json::json!({ "default_time_zone": long });
        let err = serde_json::from_value::<WorkspaceSettings>(json).expect_err("unknown zone");
        let message = err.to_string();
        assert!(message.contains("unknown IANA time zone"), "{message}");
        assert!(message.len() < 200, "{} chars", message.len());
    }

    #[test]
    fn zones_round_trip_by_name() {
        let settings =
            WorkspaceSettings::default().with_default_time_zone(chrono_tz::Australia::Lord_Howe);
        let json = serde_json::to_value(&settings).expect("writes");
        assert_eq!(json["default_time_zone"], "Australia/Lord_Howe");
        let back: WorkspaceSettings = serde_json::from_value(json).expect("reads");
        assert_eq!(back, settings);
    }
}

//! The mapping manifest: which source column feeds which contact field, with simple
//! transforms. One manifest serves CSV headers and the keys of form/webhook payloads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::RowError;

/// A contact field a column can feed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Field {
    /// Given name.
    FirstName,
    /// Family name.
    LastName,
    /// "First Last" in one column; split on the first whitespace.
    FullName,
    /// Email address.
    Email,
    /// Phone number in any common notation; normalised to E.164.
    Phone,
    /// Job title.
    Title,
    /// Company name.
    Company,
    /// Company website (a domain or URL).
    Website,
    /// LinkedIn profile URL.
    LinkedinUrl,
    /// A free-form merge field of the contact.
    Custom(String),
}

impl Field {
    /// The name used in provenance rows and errors (`"email"`, `"custom.plan"`).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::FirstName => "first_name".into(),
            Self::LastName => "last_name".into(),
            Self::FullName => "full_name".into(),
            Self::Email => "email".into(),
            Self::Phone => "phone".into(),
            Self::Title => "title".into(),
            Self::Company => "company".into(),
            Self::Website => "website".into(),
            Self::LinkedinUrl => "linkedin_url".into(),
            Self::Custom(name) => format!("custom.{name}"),
        }
    }
}

/// A simple, total transform applied to a column's text before it is mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
#[non_exhaustive]
pub enum Transform {
    /// Strips leading and trailing whitespace.
    Trim,
    /// Lower-cases.
    Lowercase,
    /// Upper-cases.
    Uppercase,
    /// Replaces every run of whitespace with one space.
    CollapseWhitespace,
    /// Replaces every occurrence of `from` with `to`.
    Replace {
        /// Text to find (an empty `from` leaves the value unchanged).
        from: String,
        /// Replacement.
        to: String,
    },
    /// Uses `value` when the text is empty after the earlier transforms.
    Default {
        /// The fallback.
        value: String,
    },
}

impl Transform {
    /// Applies the transform.
    #[must_use]
    pub fn apply(&self, input: &str) -> String {
        match self {
            Self::Trim => input.trim().to_owned(),
            Self::Lowercase => input.to_lowercase(),
            Self::Uppercase => input.to_uppercase(),
            Self::CollapseWhitespace => input.split_whitespace().collect::<Vec<_>>().join(" "),
            Self::Replace { from, to } if !from.is_empty() => input.replace(from.as_str(), to),
            Self::Replace { .. } => input.to_owned(),
            Self::Default { value } if input.is_empty() => value.clone(),
            Self::Default { .. } => input.to_owned(),
        }
    }
}

/// How one source column maps to a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMapping {
    /// The CSV header or payload key (a dotted path such as `contact.email` reaches
    /// into nested payload objects).
    pub column: String,
    /// The field it feeds.
    pub field: Field,
    /// Transforms, applied in order.
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Whether a row without a value here is malformed.
    #[serde(default)]
    pub required: bool,
}

/// Column-to-field mapping for one source (a CSV layout, a form, a webhook).
///
/// Columns the manifest does not name are kept in the raw row but not mapped. When two
/// columns feed one field, the later non-empty one wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The mappings.
    pub columns: Vec<ColumnMapping>,
}

/// A row after mapping: field values as text, not yet validated or normalised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappedRow {
    /// Field values by field, non-empty only.
    pub values: BTreeMap<Field, String>,
}

impl Manifest {
    /// A manifest mapping `column` to `field` with `Trim`.
    #[must_use]
    pub fn with(mut self, column: impl Into<String>, field: Field) -> Self {
        self.columns.push(ColumnMapping {
            column: column.into(),
            field,
            transforms: vec![Transform::Trim],
            required: false,
        });
        self
    }

    /// The manifest used when a source has none: the common English header names
    /// (`email`, `first_name`, `last_name`, `name`, `phone`, `title`, `company`,
    /// `website`, `linkedin_url`), each trimmed.
    #[must_use]
    pub fn standard() -> Self {
        Self::default()
            .with("first_name", Field::FirstName)
            .with("last_name", Field::LastName)
            .with("name", Field::FullName)
            .with("email", Field::Email)
            .with("phone", Field::Phone)
            .with("title", Field::Title)
            .with("company", Field::Company)
            .with("website", Field::Website)
            .with("linkedin_url", Field::LinkedinUrl)
    }

    /// Maps one row given as column -> text. Missing required columns are reported as
    /// row errors (with `line`), never dropped silently.
    pub fn apply(
        &self,
        row: &BTreeMap<String, String>,
        line: Option<u64>,
    ) -> Result<MappedRow, Vec<RowError>> {
        let mut out = MappedRow::default();
        let mut errors = Vec::new();
        for mapping in &self.columns {
            let raw = row.get(&mapping.column).map_or("", String::as_str);
            let value = mapping
                .transforms
                .iter()
                .fold(raw.to_owned(), |v, t| t.apply(&v));
            if value.trim().is_empty() {
                if mapping.required {
                    errors.push(RowError {
                        line,
                        column: Some(mapping.column.clone()),
                        reason: "required value is missing".into(),
                    });
                }
                continue;
            }
            out.values.insert(mapping.field.clone(), value);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn transforms_apply_in_order() {
        let m = Manifest {
            columns: vec![ColumnMapping {
                column: "Plan".into(),
                field: Field::Custom("plan".into()),
                transforms: vec![
                    Transform::CollapseWhitespace,
                    Transform::Lowercase,
                    Transform::Replace {
                        from: " ".into(),
                        to: "-".into(),
                    },
                    Transform::Default {
                        value: "free".into(),
                    },
                ],
                required: false,
            }],
        };
        let mapped = m.apply(&row(&[("Plan", "  Pro   Team ")]), None).unwrap();
        assert_eq!(
            mapped.values.get(&Field::Custom("plan".into())).unwrap(),
            "pro-team"
        );
        let mapped = m.apply(&row(&[("Plan", "   ")]), None).unwrap();
        assert_eq!(
            mapped.values.get(&Field::Custom("plan".into())).unwrap(),
            "free"
        );
    }

    #[test]
    fn missing_required_column_is_a_row_error_with_line_and_column() {
        let mut m = Manifest::standard();
        m.columns[3].required = true; // email
        let errs = m
            .apply(&row(&[("first_name", "Ada")]), Some(7))
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(7));
        assert_eq!(errs[0].column.as_deref(), Some("email"));
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let json = r#"{"columns":[{"column":"E-Mail","field":"email",
            "transforms":[{"op":"trim"},{"op":"lowercase"}],"required":true}]}"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(m.columns[0].field, Field::Email);
        assert_eq!(
            m.columns[0].transforms,
            vec![Transform::Trim, Transform::Lowercase]
        );
    }
}

//! Identity resolution, pure: which existing contact (if any) a normalised row is.
//!
//! Order, first hit wins:
//! 1. exact email (the store's case-insensitive lookup, done by the caller);
//! 2. the company domain names an account: the row belongs to it, and only that
//!    account's contacts are candidates for
//! 3. fuzzy rules: a weighted similarity of full name (Jaro-Winkler) and company, at or
//!    above the rule's threshold. The best candidate over all rules wins; ties go to
//!    the older contact (smaller id), so the result does not depend on input order.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, ContactId};
use crate::intake::normalize::NormalizedRow;
use crate::model::{Account, Contact};

/// A fuzzy matching rule: `score = name_weight * name_similarity + company_weight *
/// company_similarity` over weights that sum to anything positive (normalised here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuzzyRule {
    /// Weight of the full-name similarity.
    pub name_weight: f64,
    /// Weight of the company similarity (1.0 when the candidate is in the matched
    /// account).
    pub company_weight: f64,
    /// Minimum score, 0.0 to 1.0, for a match.
    pub threshold: f64,
}

/// The configurable part of identity resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MatchRules {
    /// Fuzzy rules; empty disables fuzzy matching.
    pub fuzzy: Vec<FuzzyRule>,
}

impl Default for MatchRules {
    /// One conservative rule: name 0.7, company 0.3, threshold 0.93, so a matching
    /// company alone (0.3) never merges two different people.
    fn default() -> Self {
        Self {
            fuzzy: vec![FuzzyRule {
                name_weight: 0.7,
                company_weight: 0.3,
                threshold: 0.93,
            }],
        }
    }
}

impl MatchRules {
    /// Replaces the fuzzy rules.
    #[must_use]
    pub fn with_fuzzy(mut self, rules: Vec<FuzzyRule>) -> Self {
        self.fuzzy = rules;
        self
    }
}

/// How a row was matched.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityMatch {
    /// Same email as an existing contact.
    Email {
        /// The contact.
        contact_id: ContactId,
    },
    /// A fuzzy rule matched.
    Fuzzy {
        /// The contact.
        contact_id: ContactId,
        /// The winning score, 0.0 to 1.0.
        score: f64,
    },
    /// No existing contact: create one (in `account_id` when the domain named one).
    New {
        /// The account found by domain.
        account_id: Option<AccountId>,
    },
}

impl IdentityMatch {
    /// The matched contact, if any.
    #[must_use]
    pub fn contact_id(&self) -> Option<ContactId> {
        match self {
            Self::Email { contact_id } | Self::Fuzzy { contact_id, .. } => Some(*contact_id),
            Self::New { .. } => None,
        }
    }
}

/// Resolves `row`. `by_email` is the contact with the row's email (if any);
/// `account` the account with the row's domain (if any); `candidates` the contacts the
/// fuzzy rules may match (normally the account's contacts), each with its company name.
#[must_use]
pub fn resolve_identity(
    row: &NormalizedRow,
    by_email: Option<&Contact>,
    account: Option<&Account>,
    candidates: &[(Contact, Option<String>)],
    rules: &MatchRules,
) -> IdentityMatch {
    if let Some(contact) = by_email {
        return IdentityMatch::Email {
            contact_id: contact.id,
        };
    }
    let name = full_name(row.first_name.as_deref(), row.last_name.as_deref());
    let mut best: Option<(f64, ContactId)> = None;
    if !name.is_empty() {
        for (candidate, company) in candidates {
            // A candidate with another email is another person, whatever the name says.
            if row.email.is_some() && candidate.email.is_some() {
                continue;
            }
            let cand_name = full_name(Some(&candidate.first_name), Some(&candidate.last_name));
            let name_sim = strsim::jaro_winkler(&name, &cand_name);
            let company_sim = company_similarity(row, account, candidate, company.as_deref());
            for rule in &rules.fuzzy {
                let score = fuzzy_score(rule, name_sim, company_sim);
                if score >= rule.threshold && is_better(best, score, candidate.id) {
                    best = Some((score, candidate.id));
                }
            }
        }
    }
    match best {
        Some((score, contact_id)) => IdentityMatch::Fuzzy { contact_id, score },
        None => IdentityMatch::New {
            account_id: account.map(|a| a.id),
        },
    }
}

fn is_better(best: Option<(f64, ContactId)>, score: f64, id: ContactId) -> bool {
    best.is_none_or(|(s, b)| score > s || (score == s && id < b))
}

/// The weighted score of one rule, clamped to 0.0..=1.0 (0.0 for non-positive weights).
#[must_use]
pub fn fuzzy_score(rule: &FuzzyRule, name_sim: f64, company_sim: f64) -> f64 {
    let (nw, cw) = (rule.name_weight.max(0.0), rule.company_weight.max(0.0));
    let total = nw + cw;
    if total <= 0.0 || !total.is_finite() {
        return 0.0;
    }
    ((nw * name_sim + cw * company_sim) / total).clamp(0.0, 1.0)
}

fn company_similarity(
    row: &NormalizedRow,
    account: Option<&Account>,
    candidate: &Contact,
    candidate_company: Option<&str>,
) -> f64 {
    if account.is_some_and(|a| candidate.account_id == Some(a.id)) {
        return 1.0;
    }
    match (row.company.as_deref(), candidate_company) {
        (Some(a), Some(b)) => strsim::jaro_winkler(&a.to_lowercase(), &b.to_lowercase()),
        _ => 0.0,
    }
}

fn full_name(first: Option<&str>, last: Option<&str>) -> String {
    format!("{} {}", first.unwrap_or(""), last.unwrap_or(""))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkspaceId;
    use crate::intake::normalize::normalize_email;
    use crate::model::{NewAccount, NewContact};
    use chrono::DateTime;
    use proptest::prelude::*;

    fn contact(ws: WorkspaceId, first: &str, last: &str, account: Option<AccountId>) -> Contact {
        Contact::create(
            ws,
            NewContact {
                first_name: first.into(),
                last_name: last.into(),
                account_id: account,
                ..Default::default()
            },
            DateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    fn row(first: &str, last: &str) -> NormalizedRow {
        NormalizedRow {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            ..Default::default()
        }
    }

    #[test]
    fn email_beats_everything() {
        let ws = WorkspaceId::new();
        let by_email = contact(ws, "X", "Y", None);
        let other = contact(ws, "Ada", "Lovelace", None);
        let mut r = row("Ada", "Lovelace");
        r.email = Some(normalize_email("ada@acme.io").unwrap());
        let m = resolve_identity(
            &r,
            Some(&by_email),
            None,
            &[(other, None)],
            &MatchRules::default(),
        );
        assert_eq!(
            m,
            IdentityMatch::Email {
                contact_id: by_email.id
            }
        );
    }

    #[test]
    fn fuzzy_matches_similar_names_in_the_domain_account_only() {
        let ws = WorkspaceId::new();
        let acme = Account::create(
            ws,
            NewAccount {
                name: "Acme".into(),
                domain: Some("acme.io".into()),
                ..Default::default()
            },
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
        let jon = contact(ws, "Jonathan", "Smith", Some(acme.id));
        let stranger = contact(ws, "Jonathan", "Smith", None);
        let rules = MatchRules::default();
        let m = resolve_identity(
            &row("Jonathon", "Smith"),
            None,
            Some(&acme),
            &[(jon.clone(), None)],
            &rules,
        );
        assert!(matches!(m, IdentityMatch::Fuzzy { contact_id, .. } if contact_id == jon.id));
        // Same name, no company evidence: 0.7 < 0.93, so a new contact in the account.
        let m = resolve_identity(
            &row("Jonathan", "Smith"),
            None,
            Some(&acme),
            &[(stranger, None)],
            &rules,
        );
        assert_eq!(
            m,
            IdentityMatch::New {
                account_id: Some(acme.id)
            }
        );
        // A different person in the account stays different.
        let m = resolve_identity(
            &row("Grace", "Hopper"),
            None,
            Some(&acme),
            &[(jon, None)],
            &rules,
        );
        assert_eq!(
            m,
            IdentityMatch::New {
                account_id: Some(acme.id)
            }
        );
        // Disabled fuzzy rules never match.
        let m = resolve_identity(
            &row("Ada", "L"),
            None,
            None,
            &[],
            &MatchRules::default().with_fuzzy(vec![]),
        );
        assert_eq!(m, IdentityMatch::New { account_id: None });
    }

    proptest! {
        #[test]
        fn scores_stay_in_unit_range(
            nw in -2.0f64..5.0, cw in -2.0f64..5.0, n in 0.0f64..=1.0, c in 0.0f64..=1.0,
        ) {
            let s = fuzzy_score(&FuzzyRule { name_weight: nw, company_weight: cw, threshold: 0.5 }, n, c);
            prop_assert!((0.0..=1.0).contains(&s));
        }

        #[test]
        fn resolution_does_not_depend_on_candidate_order(
            names in proptest::collection::vec(("[A-Z][a-z]{2,6}", "[A-Z][a-z]{2,6}"), 1..6),
            first in "[A-Z][a-z]{2,6}", last in "[A-Z][a-z]{2,6}",
        ) {
            let ws = WorkspaceId::new();
            let rules = MatchRules::default().with_fuzzy(vec![FuzzyRule { name_weight: 1.0, company_weight: 0.0, threshold: 0.8 }]);
            let cands: Vec<_> = names.iter().map(|(f, l)| (contact(ws, f, l, None), None)).collect();
            let mut reversed = cands.clone();
            reversed.reverse();
            let r = row(&first, &last);
            prop_assert_eq!(
                resolve_identity(&r, None, None, &cands, &rules),
                resolve_identity(&r, None, None, &reversed, &rules)
            );
        }
    }
}

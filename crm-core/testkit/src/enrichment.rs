//! A scripted [`EnrichmentProvider`] for tests: it answers what it is told and records
//! every call in a log shared by several providers, so a test can assert the order in
//! which a waterfall asked them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crm_core::address::{Domain, EmailAddress};
use crm_core::enrichment::{
    CompanyData, ContactData, ContactQuery, EmailStatus, EmailVerification, EnrichmentError,
    EnrichmentProvider, Lookup, LookupCost, LookupKind, RateLimitState,
};
use crm_core::money::Money;

const ALL_KINDS: &[LookupKind] = &[
    LookupKind::Contact,
    LookupKind::Company,
    LookupKind::EmailVerification,
];

/// What a [`ScriptedProvider`] answers for one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `Found` with data naming the provider (contact title and LinkedIn URL, company
    /// name and industry `"{name} industry"`, head count 10).
    Hit,
    /// `NotFound`.
    Miss,
    /// An error, transient (`Retryable`) or not (`Permanent`).
    Fail {
        /// Whether the error is transient.
        retryable: bool,
    },
}

/// The calls made to a set of providers, in order: (provider, kind).
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<(&'static str, LookupKind)>>>);

impl CallLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far.
    #[must_use]
    pub fn calls(&self) -> Vec<(&'static str, LookupKind)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The provider names of every call so far, in order.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        self.calls().into_iter().map(|(name, _)| name).collect()
    }

    fn push(&self, name: &'static str, kind: LookupKind) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, kind));
    }
}

/// A provider offering every kind, answering [`Script::Miss`] unless told otherwise,
/// free unless given a price.
#[derive(Debug)]
pub struct ScriptedProvider {
    name: &'static str,
    log: CallLog,
    scripts: Mutex<HashMap<LookupKind, Script>>,
    cost: Option<Money>,
    rate: Mutex<RateLimitState>,
}

impl ScriptedProvider {
    /// A provider named `name` recording its calls in `log`.
    #[must_use]
    pub fn new(name: &'static str, log: &CallLog) -> Self {
        Self {
            name,
            log: log.clone(),
            scripts: Mutex::new(HashMap::new()),
            cost: None,
            rate: Mutex::new(RateLimitState::default()),
        }
    }

    /// This provider answering `script` for `kind`.
    #[must_use]
    pub fn answering(self, kind: LookupKind, script: Script) -> Self {
        self.set(kind, script);
        self
    }

    /// This provider charging `money` per lookup of any kind.
    #[must_use]
    pub fn costing(mut self, money: Money) -> Self {
        self.cost = Some(money);
        self
    }

    /// Changes the answer for `kind` from now on.
    pub fn set(&self, kind: LookupKind, script: Script) {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind, script);
    }

    /// Makes [`EnrichmentProvider::rate_limit`] report `state` from now on.
    pub fn report_rate_limit(&self, state: RateLimitState) {
        *self.rate.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn answer<T>(
        &self,
        kind: LookupKind,
        hit: impl FnOnce() -> T,
    ) -> Result<Lookup<T>, EnrichmentError> {
        self.log.push(self.name, kind);
        let script = self
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kind)
            .copied()
            .unwrap_or(Script::Miss);
        match script {
            Script::Hit => Ok(Lookup::Found(hit())),
            Script::Miss => Ok(Lookup::NotFound),
            Script::Fail { retryable: true } => Err(EnrichmentError::Retryable {
                provider: self.name,
                reason: "scripted transient failure".to_owned(),
                source: None,
            }),
            Script::Fail { retryable: false } => Err(EnrichmentError::Permanent {
                provider: self.name,
                reason: "scripted permanent failure".to_owned(),
            }),
        }
    }
}

#[async_trait]
impl EnrichmentProvider for ScriptedProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    fn kinds(&self) -> &'static [LookupKind] {
        ALL_KINDS
    }

    fn cost(&self, _kind: LookupKind) -> LookupCost {
        LookupCost {
            credits: 1,
            money: self.cost,
        }
    }

    fn rate_limit(&self) -> RateLimitState {
        self.rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn enrich_contact(
        &self,
        _query: &ContactQuery,
    ) -> Result<Lookup<ContactData>, EnrichmentError> {
        self.answer(LookupKind::Contact, || ContactData {
            title: Some(self.name.to_owned()),
            linkedin_url: Some(format!("https://www.linkedin.com/in/{}", self.name)),
            ..Default::default()
        })
    }

    async fn enrich_company(
        &self,
        domain: &Domain,
    ) -> Result<Lookup<CompanyData>, EnrichmentError> {
        self.answer(LookupKind::Company, || CompanyData {
            name: Some(self.name.to_owned()),
            domain: Some(domain.as_str().to_owned()),
            industry: Some(format!("{} industry", self.name)),
            employee_count: Some(10),
            ..Default::default()
        })
    }

    async fn verify_email(
        &self,
        _email: &EmailAddress,
    ) -> Result<Lookup<EmailVerification>, EnrichmentError> {
        self.answer(LookupKind::EmailVerification, || EmailVerification {
            status: EmailStatus::Valid,
            score: Some(90),
        })
    }
}

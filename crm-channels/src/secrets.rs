//! [`SecretResolver`]s for `secret://<id>:<version>` references, backed by environment
//! variables ([`EnvSecretResolver`]), a directory of files ([`FileSecretResolver`]) or
//! a map in memory ([`MemorySecretResolver`], for tests and hosts that load secrets
//! themselves).
//!
//! Neither logs a value or puts one in an error; errors name the reference only.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use crm_core::secret::{SecretError, SecretRef, SecretResolver, SecretString};

/// The default environment variable prefix of [`EnvSecretResolver`].
pub const DEFAULT_ENV_PREFIX: &str = "CRM_SECRET_";

type EnvLookup = dyn Fn(&str) -> Option<OsString> + Send + Sync;

/// Resolves secrets from environment variables.
///
/// # Naming rule
/// `secret://<id>:<version>` is read from the variable
/// `<prefix><ID>_<VERSION>`, where `<ID>` and `<VERSION>` are upper-cased and every
/// character other than `A-Z` and `0-9` becomes `_`. With the default prefix
/// [`DEFAULT_ENV_PREFIX`], `secret://resend/api-key:3` is `CRM_SECRET_RESEND_API_KEY_3`
/// and `secret://a/b-c:3` is `CRM_SECRET_A_B_C_3`.
///
/// The rule is not injective (`a/b` and `a-b` map to the same name); choose ids that
/// stay distinct. An unset or empty variable is [`SecretError::NotFound`]; a value that
/// is not UTF-8 is [`SecretError::Unavailable`].
#[derive(Clone)]
pub struct EnvSecretResolver {
    prefix: String,
    lookup: Arc<EnvLookup>,
}

impl fmt::Debug for EnvSecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvSecretResolver")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Default for EnvSecretResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvSecretResolver {
    /// Reads the process environment with the prefix [`DEFAULT_ENV_PREFIX`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            prefix: DEFAULT_ENV_PREFIX.to_owned(),
            lookup: Arc::new(|name| std::env::var_os(name)),
        }
    }

    /// Reads variables through `lookup` instead of the process environment (a snapshot
    /// map, a host's configuration service, a test).
    #[must_use]
    pub fn with_lookup(lookup: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static) -> Self {
        Self {
            prefix: DEFAULT_ENV_PREFIX.to_owned(),
            lookup: Arc::new(lookup),
        }
    }

    /// Uses `prefix` instead of [`DEFAULT_ENV_PREFIX`].
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The variable name `reference` is read from (see the naming rule above).
    #[must_use]
    pub fn variable_name(&self, reference: &SecretRef) -> String {
        let mangle = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!(
            "{}{}_{}",
            self.prefix,
            mangle(reference.id()),
            mangle(reference.version())
        )
    }
}

/// A secret's bytes were not text.
#[derive(Debug, thiserror::Error)]
#[error("the secret's value is not valid UTF-8")]
struct NotUtf8;

#[async_trait]
impl SecretResolver for EnvSecretResolver {
    async fn resolve(&self, reference: &SecretRef) -> Result<SecretString, SecretError> {
        let name = self.variable_name(reference);
        match (self.lookup)(&name) {
            None => Err(SecretError::NotFound {
                reference: reference.clone(),
            }),
            Some(value) if value.is_empty() => Err(SecretError::NotFound {
                reference: reference.clone(),
            }),
            Some(value) => {
                value
                    .into_string()
                    .map(SecretString::from)
                    .map_err(|_| SecretError::Unavailable {
                        reference: reference.clone(),
                        source: Box::new(NotUtf8),
                    })
            }
        }
    }
}

/// Resolves secrets from files: `secret://<id>:<version>` is the file
/// `<root>/<id>/<version>` (an id `resend/api-key` is the directory `resend/api-key`).
///
/// The file's content is the value, with one trailing line break (`\n` or `\r\n`)
/// removed. References whose id or version contain a `.` or `..` path component (or an
/// empty one) are refused as [`SecretError::NotFound`] without touching the file
/// system, and a resolved path that leaves `root` (through a symbolic link) is refused
/// as well. A missing file is `NotFound`; any other I/O failure is `Unavailable`.
#[derive(Debug, Clone)]
pub struct FileSecretResolver {
    root: PathBuf,
}

/// A path that left the secrets directory.
#[derive(Debug, thiserror::Error)]
#[error("the secret's path leaves the secrets directory")]
struct OutsideRoot;

impl FileSecretResolver {
    /// Reads secrets below `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file `reference` is read from, or `None` when the reference would escape
    /// the root.
    #[must_use]
    pub fn path_of(&self, reference: &SecretRef) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for part in reference.id().split('/').chain([reference.version()]) {
            let mut components = Path::new(part).components();
            match (components.next(), components.next()) {
                (Some(Component::Normal(name)), None) if name == part => path.push(name),
                _ => return None,
            }
        }
        Some(path)
    }
}

#[async_trait]
impl SecretResolver for FileSecretResolver {
    async fn resolve(&self, reference: &SecretRef) -> Result<SecretString, SecretError> {
        let not_found = || SecretError::NotFound {
            reference: reference.clone(),
        };
        let unavailable = |source: crm_core::BoxError| SecretError::Unavailable {
            reference: reference.clone(),
            source,
        };
        let path = self.path_of(reference).ok_or_else(not_found)?;
        let canonical = match tokio::fs::canonicalize(&path).await {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(unavailable(Box::new(e))),
        };
        let root = tokio::fs::canonicalize(&self.root)
            .await
            .map_err(|e| unavailable(Box::new(e)))?;
        if !canonical.starts_with(&root) {
            return Err(unavailable(Box::new(OutsideRoot)));
        }
        let mut value = match tokio::fs::read_to_string(&canonical).await {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(unavailable(Box::new(e))),
        };
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Ok(SecretString::from(value))
    }
}

/// Resolves secrets from a map in memory, keyed by reference (id and version).
///
/// Clones share the map, so a host (or a test) can add a rotated version while the
/// engine runs. `Debug` lists how many secrets it holds, never their values or ids.
#[derive(Clone, Default)]
pub struct MemorySecretResolver {
    values: Arc<RwLock<HashMap<SecretRef, SecretString>>>,
}

impl fmt::Debug for MemorySecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self
            .values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("MemorySecretResolver")
            .field("secrets", &held)
            .finish()
    }
}

impl MemorySecretResolver {
    /// An empty resolver.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` as `reference`.
    #[must_use]
    pub fn with(self, reference: &SecretRef, value: impl Into<String>) -> Self {
        self.insert(reference, value);
        self
    }

    /// Sets `reference` to `value`, replacing any earlier value.
    pub fn insert(&self, reference: &SecretRef, value: impl Into<String>) {
        self.values
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(reference.clone(), SecretString::from(value.into()));
    }

    /// Forgets `reference`; returns whether it was there.
    pub fn remove(&self, reference: &SecretRef) -> bool {
        self.values
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(reference)
            .is_some()
    }
}

#[async_trait]
impl SecretResolver for MemorySecretResolver {
    async fn resolve(&self, reference: &SecretRef) -> Result<SecretString, SecretError> {
        self.values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(reference)
            .cloned()
            .ok_or_else(|| SecretError::NotFound {
                reference: reference.clone(),
            })
    }
}

//! The admin subcommands: migrate, register a workspace, issue the first API key.

use std::fmt::Write as _;

use crm_core::ids::WorkspaceId;
use crm_core::model::Workspace;
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::{Clock, SystemClock};

use crate::app::open_store;
use crate::config::Config;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Print the usage.
    Help,
    /// Run the service.
    Serve,
    /// Apply the migrations and exit.
    Migrate,
    /// Register a workspace.
    CreateWorkspace {
        /// Its display name.
        name: String,
        /// Whether its sends are dry runs.
        dry_run: bool,
    },
    /// Issue an API key.
    CreateKey {
        /// The workspace it acts in.
        workspace: String,
        /// Its scopes, comma-separated.
        scopes: String,
        /// A label.
        name: Option<String>,
        /// Days until it expires.
        expires_days: Option<i64>,
    },
}

/// A command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Parses the arguments after the program name.
///
/// # Errors
/// An unknown command or option, or a missing value.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["help" | "--help" | "-h"] => Ok(Command::Help),
        ["migrate"] => Ok(Command::Migrate),
        ["workspaces", "create", rest @ ..] => {
            let mut opts = Options::parse(rest, &["--name"], &["--dry-run"])?;
            Ok(Command::CreateWorkspace {
                name: opts.required("--name")?,
                dry_run: opts.flag("--dry-run"),
            })
        }
        ["keys", "create", rest @ ..] => {
            let mut opts = Options::parse(
                rest,
                &["--workspace", "--scopes", "--name", "--expires-days"],
                &[],
            )?;
            let expires_days = match opts.take("--expires-days") {
                Some(raw) => Some(raw.parse::<i64>().ok().filter(|d| *d > 0).ok_or_else(|| {
                    UsageError("--expires-days needs a positive number".to_owned())
                })?),
                None => None,
            };
            Ok(Command::CreateKey {
                workspace: opts.required("--workspace")?,
                scopes: opts.required("--scopes")?,
                name: opts.take("--name"),
                expires_days,
            })
        }
        other => Err(UsageError(format!("unknown command {:?}", other.join(" ")))),
    }
}

/// `--key value` options and `--flag`s.
struct Options {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Options {
    fn parse(words: &[&str], valued: &[&str], flags: &[&str]) -> Result<Self, UsageError> {
        let mut out = Self {
            values: Vec::new(),
            flags: Vec::new(),
        };
        let mut iter = words.iter();
        while let Some(word) = iter.next() {
            if flags.contains(word) {
                out.flags.push((*word).to_owned());
            } else if valued.contains(word) {
                let value = iter
                    .next()
                    .ok_or_else(|| UsageError(format!("{word} needs a value")))?;
                out.values.push(((*word).to_owned(), (*value).to_owned()));
            } else {
                return Err(UsageError(format!("unknown option {word:?}")));
            }
        }
        Ok(out)
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let at = self.values.iter().position(|(k, _)| k == key)?;
        Some(self.values.remove(at).1)
    }

    fn required(&mut self, key: &str) -> Result<String, UsageError> {
        self.take(key)
            .ok_or_else(|| UsageError(format!("{key} is required")))
    }

    fn flag(&self, key: &str) -> bool {
        self.flags.iter().any(|f| f == key)
    }
}

/// Runs an admin command against the configured database.
///
/// # Errors
/// The store, or invalid input (an unknown scope, a bad workspace id).
pub async fn run_admin(
    command: Command,
    config: &Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store(config).await?;
    match command {
        Command::Help | Command::Serve | Command::Migrate => {
            eprintln!("migrations are current");
            Ok(())
        }
        Command::CreateWorkspace { name, dry_run } => {
            let settings = WorkspaceSettings::default().with_dry_run(dry_run);
            let workspace = Workspace::new(WorkspaceId::new(), name, settings, SystemClock.now())?;
            let stored =
                crm_core::store::WorkspaceStore::insert_workspace(&store, &workspace).await?;
            println!("{}", stored.id);
            Ok(())
        }
        Command::CreateKey {
            workspace,
            scopes,
            name,
            expires_days,
        } => {
            crate::api::keys::create_key_command(&store, &workspace, &scopes, name, expires_days)
                .await
        }
    }
}

/// An error with its sources, one line: what the operator reads.
#[must_use]
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(out, ": {e}");
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(&[]).unwrap(), Command::Serve);
        assert_eq!(parse(&args("migrate")).unwrap(), Command::Migrate);
        assert_eq!(
            parse(&args("workspaces create --name Acme --dry-run")).unwrap(),
            Command::CreateWorkspace {
                name: "Acme".into(),
                dry_run: true
            }
        );
        assert_eq!(
            parse(&args(
                "keys create --workspace W --scopes inbox:read --expires-days 30"
            ))
            .unwrap(),
            Command::CreateKey {
                workspace: "W".into(),
                scopes: "inbox:read".into(),
                name: None,
                expires_days: Some(30)
            }
        );
        assert!(parse(&args("keys create --scopes x")).is_err());
        assert!(parse(&args("keys create --workspace W --scopes x --bogus 1")).is_err());
        assert!(parse(&args("dance")).is_err());
    }
}

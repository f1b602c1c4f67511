//! The settings a running service replaces on SIGHUP, without a restart: the retry rules (calling
//! hours and contact limits included) and the API tokens. `main` reads and validates the files
//! first; a file that does not validate never reaches here, and the old settings stay. Readers
//! take the current value each time they use it (nothing keeps a copy); the writer receives new
//! rules as a command, so they apply from one batch on, in order with every other command.

use std::sync::{Arc, RwLock};

use crate::config::{Config, Token};
use crate::core::retry::RetryRules;
use crate::service::writer::{Command, WriterHandle};

/// The settings SIGHUP can replace, as they are now.
pub struct Live {
    tokens: RwLock<Arc<[Token]>>,
    rules: RwLock<Arc<RetryRules>>,
}

impl Live {
    pub fn new(tokens: &[Token], rules: Arc<RetryRules>) -> Live {
        Live { tokens: RwLock::new(tokens.into()), rules: RwLock::new(rules) }
    }

    pub fn tokens(&self) -> Arc<[Token]> {
        self.tokens.read().expect("never poisoned: writers only swap an Arc").clone()
    }

    pub fn rules(&self) -> Arc<RetryRules> {
        self.rules.read().expect("never poisoned: writers only swap an Arc").clone()
    }
}

/// A validated configuration and rules file, read again after a SIGHUP.
pub struct Reload {
    pub config: Config,
    pub rules: RetryRules,
}

/// Applies each reload: the writer first (so that no call is decided by the new rules before the
/// writer has them), then what the API and the retention thread read.
pub async fn apply(mut reloads: tokio::sync::mpsc::Receiver<Reload>, live: Arc<Live>, writer: WriterHandle, started_with: Arc<Config>) {
    while let Some(Reload { config, rules }) = reloads.recv().await {
        let rules = Arc::new(rules);
        let sent = {
            let rules = rules.clone();
            writer.request(move |reply| Command::ReplaceRules { rules, reply }).await
        };
        if let Err(error) = sent {
            tracing::error!(%error, "reload not applied: the writer did not take the new rules; the old settings stay");
            continue;
        }
        *live.rules.write().expect("never poisoned") = rules.clone();
        *live.tokens.write().expect("never poisoned") = config.tokens.as_slice().into();
        tracing::info!(
            retry_config = %config.retry_config.display(),
            tokens = config.tokens.len(),
            calling_hours = %rules.calling_hours_for(0).map(|h| h.summary()).unwrap_or_else(|| "none".into()),
            "reloaded the retry rules (calling hours, contact limits) and the tokens"
        );
        let mut rest = config;
        rest.tokens = started_with.tokens.clone();
        if rest != *started_with {
            tracing::warn!("other settings in the configuration file changed too: they apply at the next restart (only the retry rules and the tokens reload)");
        }
    }
}

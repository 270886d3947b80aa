//! Rotating credentials: a [`Credential`] and the [`CredentialSource`] asked for a new one
//! before it expires ([`Builder::credentials`](crate::Builder::credentials)).
//!
//! This module keeps the current credential and every password it has handed out (so error
//! text can be scrubbed of them); the pool's task asks the source and applies the answer to
//! every node (`pool::rotate`).

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::lock;
use futures_core::future::BoxFuture;
use tokio::sync::Notify;

/// What a [`CredentialSource`] failed with.
pub type CredentialError = Box<dyn std::error::Error + Send + Sync>;

/// How often a credential that does not say how long it is valid is asked for again.
pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// A password, and optionally the user it belongs to, for every node's new connections.
/// Its `Debug` never shows the password.
///
/// ```
/// use std::time::Duration;
/// use partypool::Credential;
///
/// // An RDS IAM token is valid for 15 minutes; partypool asks for the next one after 11¼.
/// let c = Credential::new("token…").valid_for(Duration::from_secs(15 * 60));
/// assert!(!format!("{c:?}").contains("token"));
///
/// // A Vault database lease names a new user too.
/// let c = Credential::new("s3cret").user("v-app-2f3a").valid_for(Duration::from_secs(3600));
/// assert_eq!(c.username(), Some("v-app-2f3a"));
/// ```
#[derive(Clone)]
pub struct Credential {
    user: Option<String>,
    password: String,
    valid_for: Option<Duration>,
}

impl Credential {
    /// A password for the user the node's URL names.
    pub fn new(password: impl Into<String>) -> Self {
        Credential {
            user: None,
            password: password.into(),
            valid_for: None,
        }
    }

    /// Logs in as `user` instead of the URL's user (a Vault lease's generated role).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// How long it is valid from now: the next one is asked for after three quarters of
    /// that. Without it, every minute, and at once when a node refuses it.
    pub fn valid_for(mut self, lifetime: Duration) -> Self {
        self.valid_for = Some(lifetime);
        self
    }

    /// The user it logs in as, when it names one.
    pub fn username(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// How long it is valid, as the source said.
    pub fn lifetime(&self) -> Option<Duration> {
        self.valid_for
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .field("password", &"***")
            .field("valid_for", &self.valid_for)
            .finish()
    }
}

/// Where credentials come from: an IAM token generator, a Vault client, a file a secret
/// manager rotates. Any `Fn() -> impl Future<Output = Result<Credential, E>>` is one.
///
/// ```no_run
/// # async fn demo() -> Result<(), partypool::Error> {
/// use std::time::Duration;
/// use partypool::{Credential, PgReplicaPool};
///
/// let pool = PgReplicaPool::builder()
///     .primary("postgres://app@db-primary/app")
///     .replica("postgres://app@db-replica-1/app")
///     .credentials(|| async {
///         let password = tokio::fs::read_to_string("/run/secrets/db-password").await?;
///         Ok::<_, std::io::Error>(Credential::new(password.trim()))
///     })
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
pub trait CredentialSource: Send + Sync + 'static {
    /// A credential valid now.
    fn credential(&self) -> BoxFuture<'_, Result<Credential, CredentialError>>;
}

impl<F, Fut, E> CredentialSource for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credential, E>> + Send + 'static,
    E: Into<CredentialError>,
{
    fn credential(&self) -> BoxFuture<'_, Result<Credential, CredentialError>> {
        let fut = self();
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// How many passwords handed out are remembered for scrubbing (connections made with an
/// older one may still fail and print it).
const REMEMBERED: usize = 8;

/// A pool's credentials: the source, the current credential and when to ask again.
pub(crate) struct Rotation {
    source: Box<dyn CredentialSource>,
    current: Mutex<Option<(Credential, Instant)>>,
    /// Passwords handed out, newest last.
    passwords: Mutex<Vec<String>>,
    /// A node refused the credential: ask again now.
    refused: Notify,
    /// The current credential changed outside the task (a refused login renewed it): the
    /// task applies it to every node.
    changed: Notify,
    /// How many credentials were fetched.
    generation: AtomicU64,
    /// One renewal at a time: logins refused together share it.
    renewing: tokio::sync::Mutex<()>,
    /// Woken when a credential is fetched (the lazily connected pool's first probes wait
    /// for the first one).
    fetched: Notify,
}

/// A refused login renews the credential at most this often.
const RENEW_SPACING: Duration = Duration::from_secs(1);

impl Rotation {
    pub(crate) fn new(source: impl CredentialSource) -> Self {
        Rotation {
            source: Box::new(source),
            current: Mutex::new(None),
            passwords: Mutex::new(Vec::new()),
            refused: Notify::new(),
            changed: Notify::new(),
            generation: AtomicU64::new(0),
            renewing: tokio::sync::Mutex::new(()),
            fetched: Notify::new(),
        }
    }

    /// Asks the source for a credential and makes it the current one. The error is the
    /// source's message with every known password scrubbed out.
    pub(crate) async fn fetch(&self) -> Result<Credential, String> {
        match self.source.credential().await {
            Ok(c) => {
                {
                    let mut passwords = lock(&self.passwords);
                    if !c.password.is_empty() && !passwords.contains(&c.password) {
                        passwords.push(c.password.clone());
                        if passwords.len() > REMEMBERED {
                            passwords.remove(0);
                        }
                    }
                }
                *lock(&self.current) = Some((c.clone(), Instant::now()));
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.fetched.notify_waiters();
                Ok(c)
            }
            Err(e) => Err(self.scrub(&e.to_string())),
        }
    }

    /// How many credentials were fetched so far: pass it to [`renew`](Self::renew) when a
    /// login made after reading it is refused.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A login begun at generation `seen` was refused: the credential fetched since, or a
    /// new one from the source (one renewal at a time, at most one a second: a source
    /// whose answer is refused is not hammered by every login).
    pub(crate) async fn renew(&self, seen: u64) -> Result<Credential, String> {
        let _one_at_a_time = self.renewing.lock().await;
        if self.generation() != seen
            && let Some(c) = self.current()
        {
            return Ok(c);
        }
        let since = lock(&self.current).as_ref().map(|(_, at)| at.elapsed());
        if let Some(since) = since.filter(|s| *s < RENEW_SPACING) {
            tokio::time::sleep(RENEW_SPACING - since).await;
        }
        let c = self.fetch().await?;
        self.changed.notify_one();
        Ok(c)
    }

    /// Resolves when a refused login renewed the credential.
    pub(crate) async fn was_renewed(&self) {
        self.changed.notified().await;
    }

    /// Waits up to `limit` until a first credential was fetched.
    pub(crate) async fn first_fetched(&self, limit: Duration) {
        let fetched = self.fetched.notified();
        tokio::pin!(fetched);
        fetched.as_mut().enable();
        if self.current().is_none() {
            let _ = tokio::time::timeout(limit, fetched).await;
        }
    }

    /// The credential new connections use now, if one was fetched.
    pub(crate) fn current(&self) -> Option<Credential> {
        lock(&self.current).as_ref().map(|(c, _)| c.clone())
    }

    /// How long until the current credential should be replaced: three quarters of its
    /// lifetime after it was fetched (at least 100 ms), else [`DEFAULT_REFRESH`].
    pub(crate) fn refresh_in(&self) -> Duration {
        match &*lock(&self.current) {
            Some((c, at)) => {
                let due = c.valid_for.map_or(DEFAULT_REFRESH, |l| l - l / 4);
                due.saturating_sub(at.elapsed())
                    .max(Duration::from_millis(100))
            }
            None => Duration::ZERO,
        }
    }

    /// A probe's login with the credential of generation `seen` was refused: the task asks
    /// the source again, unless a credential was fetched since (then the refusal is stale).
    pub(crate) fn refused(&self, seen: u64) {
        if seen == self.generation() {
            self.refused.notify_one();
        }
    }

    /// Resolves when a node refused the credential.
    pub(crate) async fn was_refused(&self) {
        self.refused.notified().await;
    }

    /// `text` with every password handed out replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let passwords = lock(&self.passwords);
        let mut text = text.to_owned();
        for p in passwords.iter() {
            text = crate::redact::scrub(&text, Some(p));
        }
        text
    }
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fetches_remembers_and_scrubs() {
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let source = {
            let n = n.clone();
            move || {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if i == 2 {
                        return Err("vault said no to pw-1".into());
                    }
                    Ok::<_, CredentialError>(
                        Credential::new(format!("pw-{i}")).valid_for(Duration::from_secs(8)),
                    )
                }
            }
        };
        let r = Rotation::new(source);
        assert_eq!(
            r.refresh_in(),
            Duration::ZERO,
            "nothing fetched yet: at once"
        );
        assert_eq!(r.fetch().await.unwrap().password(), "pw-0");
        let due = r.refresh_in();
        assert!(
            due <= Duration::from_secs(6) && due > Duration::from_secs(5),
            "{due:?}"
        );
        assert_eq!(r.fetch().await.unwrap().password(), "pw-1");
        let e = r.fetch().await.unwrap_err();
        assert_eq!(
            e, "vault said no to ***",
            "a failed fetch's text is scrubbed"
        );
        assert_eq!(
            r.current().unwrap().password(),
            "pw-1",
            "a failure keeps the current one"
        );
        assert_eq!(r.scrub("pw-0 and pw-1"), "*** and ***");
        assert!(!format!("{r:?}").contains("pw-"));
    }

    #[test]
    fn a_lifetime_without_end_does_not_overflow() {
        let r = Rotation::new(|| async { Ok::<_, CredentialError>(Credential::new("x")) });
        *lock(&r.current) = Some((
            Credential::new("x").valid_for(Duration::MAX),
            Instant::now(),
        ));
        assert!(r.refresh_in() > Duration::from_secs(3600 * 24 * 365));
    }

    #[test]
    fn without_a_lifetime_it_is_asked_again_every_minute() {
        let r = Rotation::new(|| async { Ok::<_, CredentialError>(Credential::new("x")) });
        *lock(&r.current) = Some((Credential::new("x"), Instant::now()));
        assert!(r.refresh_in() > Duration::from_secs(59));
    }
}

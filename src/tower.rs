//! Read-your-writes per HTTP request, for tower and axum (feature `tower`; the axum
//! extractor with feature `axum`).
//!
//! [`SessionLayer`] gives each request a [`Session`]: continued from the token the client
//! sent back (a header or a cookie), or new. Handlers take it from the request's extensions
//! (with axum, as an extractor: `session: Session<Postgres>`) and use `&session` wherever they
//! would use `&pool`. When the request wrote something, the response carries the session's
//! new token, in a header and a cookie, so that the client's next request reads its own
//! writes on whichever node has them. This is Rails' `DatabaseSelector` middleware, with log
//! positions instead of a timer.
//!
//! A token that cannot be used — garbled, from another cluster, of the wrong kind — is
//! ignored with a warning: the request reads as a fresh session, never fails.
//!
//! (The same example is compiled from the README by the `checks/` workspace member, which has
//! axum; the library itself depends only on `axum-core`.)
//!
//! ```ignore
//! # async fn demo(pool: partypool::PgReplicaPool) {
//! use axum::{Router, routing::post};
//! use partypool::Session;
//! use partypool::tower::SessionLayer;
//!
//! async fn create(session: Session<sqlx::Postgres>, body: String) -> String {
//!     let id: i64 = sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
//!         .bind(body)
//!         .fetch_one(&session)
//!         .await
//!         .unwrap();
//!     id.to_string()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/notes", post(create))
//!     .layer(SessionLayer::new(pool));
//! # let _ = app; }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::future::BoxFuture;
use http::header::{COOKIE, HeaderName, HeaderValue, SET_COOKIE};
use http::{Request, Response};

use crate::{Backend, CausalToken, ReplicaPool, Session};

/// The default header: `x-partypool-token`.
pub const DEFAULT_HEADER: &str = "x-partypool-token";
/// The default cookie: `partypool_token`.
pub const DEFAULT_COOKIE: &str = "partypool_token";

/// The `SameSite` attribute of the token cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level navigations from other sites (the default).
    #[default]
    Lax,
    /// Sent on every request (browsers then require `Secure`).
    None,
}

#[derive(Debug, Clone)]
struct Names {
    header: Option<HeaderName>,
    cookie: Option<String>,
    secure: bool,
    same_site: SameSite,
    path: String,
}

/// A [`tower_layer::Layer`] that gives every request a [`Session`] of `pool`; see the
/// [module docs](self).
///
/// By default the token is read from the `x-partypool-token` header, else the
/// `partypool_token` cookie, and written back to both (the cookie `HttpOnly`,
/// `SameSite=Lax`, `Path=/`).
///
/// ```
/// # fn demo(pool: partypool::PgReplicaPool) {
/// use partypool::tower::{SameSite, SessionLayer};
///
/// let layer = SessionLayer::new(pool)
///     .without_header()                 // browsers only: the cookie
///     .cookie("app_rw")
///     .secure(true)
///     .same_site(SameSite::Strict);
/// # let _ = layer; }
/// ```
pub struct SessionLayer<DB: Backend> {
    pool: ReplicaPool<DB>,
    names: Arc<Names>,
}

impl<DB: Backend> SessionLayer<DB> {
    /// Sessions of `pool`, with the default header and cookie.
    pub fn new(pool: ReplicaPool<DB>) -> Self {
        SessionLayer {
            pool,
            names: Arc::new(Names {
                header: Some(HeaderName::from_static(DEFAULT_HEADER)),
                cookie: Some(DEFAULT_COOKIE.to_owned()),
                secure: false,
                same_site: SameSite::Lax,
                path: "/".to_owned(),
            }),
        }
    }

    fn names(&mut self) -> &mut Names {
        Arc::make_mut(&mut self.names)
    }

    /// Reads and writes the token in header `name` instead of `x-partypool-token`.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.names().header = Some(name);
        self
    }

    /// No header: the cookie only.
    pub fn without_header(mut self) -> Self {
        self.names().header = None;
        self
    }

    /// Reads and writes the token in cookie `name` instead of `partypool_token`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid cookie name (empty, or with separators, spaces or `=`).
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        assert!(valid, "invalid cookie name {name:?}");
        self.names().cookie = Some(name);
        self
    }

    /// No cookie: the header only.
    pub fn without_cookie(mut self) -> Self {
        self.names().cookie = None;
        self
    }

    /// Marks the cookie `Secure` (sent over HTTPS only). Default: off.
    pub fn secure(mut self, secure: bool) -> Self {
        self.names().secure = secure;
        self
    }

    /// The cookie's `SameSite` attribute. Default: `Lax`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.names().same_site = same_site;
        self
    }

    /// The cookie's `Path`. Default: `/`.
    ///
    /// # Panics
    ///
    /// If `path` is not visible ASCII without `;` (it would end the attribute, or not fit
    /// in a header).
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        assert!(
            path.bytes().all(|b| b.is_ascii_graphic() && b != b';'),
            "invalid cookie path {path:?}"
        );
        self.names().path = path;
        self
    }
}

impl<DB: Backend> Clone for SessionLayer<DB> {
    fn clone(&self) -> Self {
        SessionLayer {
            pool: self.pool.clone(),
            names: Arc::clone(&self.names),
        }
    }
}

impl<DB: Backend> fmt::Debug for SessionLayer<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl<S, DB: Backend> tower_layer::Layer<S> for SessionLayer<DB> {
    type Service = SessionService<S, DB>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            pool: self.pool.clone(),
            names: Arc::clone(&self.names),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
pub struct SessionService<S, DB: Backend> {
    inner: S,
    pool: ReplicaPool<DB>,
    names: Arc<Names>,
}

impl<S: Clone, DB: Backend> Clone for SessionService<S, DB> {
    fn clone(&self) -> Self {
        SessionService {
            inner: self.inner.clone(),
            pool: self.pool.clone(),
            names: Arc::clone(&self.names),
        }
    }
}

impl<S, DB: Backend> fmt::Debug for SessionService<S, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl<S, DB, B, RB> tower_service::Service<Request<B>> for SessionService<S, DB>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    DB: Backend,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let sent = incoming_token(&self.names, req.headers());
        let mut rejected = false;
        let session = match &sent {
            Some(text) => match continue_session(&self.pool, text) {
                Ok(session) => session,
                Err(reason) => {
                    tracing::warn!(%reason, "ignoring the request's partypool token: reading as a fresh session");
                    rejected = true;
                    self.pool.session()
                }
            },
            None => self.pool.session(),
        };
        req.extensions_mut().insert(session.clone());
        // The service that was polled ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let names = Arc::clone(&self.names);
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            // Only when the request changed the session (it wrote, or its token had to be
            // replaced): a read-only request leaves the client's token alone.
            if session.token().map(|t| t.to_string()) != sent {
                match session.settled_token().await {
                    Some(token) => write_token(&names, response.headers_mut(), &token),
                    // An unusable token that nothing replaced: clear the cookie, so the
                    // client stops sending it.
                    None if rejected => clear_cookie(&names, response.headers_mut()),
                    None => {}
                }
            }
            Ok(response)
        })
    }
}

/// The token the client sent: the header first, then the cookie. Cookies are compared as
/// bytes: another cookie of the site with a non-ASCII value must not hide ours.
fn incoming_token(names: &Names, headers: &http::HeaderMap) -> Option<String> {
    if let Some(name) = &names.header
        && let Some(value) = headers.get(name)
    {
        let text = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
        if !text.is_empty() {
            return Some(text);
        }
    }
    let cookie = names.cookie.as_deref()?.as_bytes();
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
        })
        .find(|(name, _)| *name == cookie)
        .map(|(_, value)| {
            let value = value.strip_prefix(b"\"").unwrap_or(value);
            let value = value.strip_suffix(b"\"").unwrap_or(value);
            String::from_utf8_lossy(value).into_owned()
        })
}

fn continue_session<DB: Backend>(
    pool: &ReplicaPool<DB>,
    text: &str,
) -> Result<Session<DB>, String> {
    let token: CausalToken = text.parse().map_err(|e: crate::Error| e.to_string())?;
    pool.session_with(token).map_err(|e| e.to_string())
}

fn write_token(names: &Names, headers: &mut http::HeaderMap, token: &CausalToken) {
    let text = token.to_string();
    if let Some(name) = &names.header
        && let Ok(value) = HeaderValue::from_str(&text)
    {
        headers.insert(name.clone(), value);
    }
    if let Some(cookie) = &names.cookie {
        let same_site = match names.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        };
        let secure = if names.secure { "; Secure" } else { "" };
        let value = format!(
            "{cookie}={text}; Path={}; HttpOnly; SameSite={same_site}{secure}",
            names.path
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(SET_COOKIE, value);
        }
    }
}

fn clear_cookie(names: &Names, headers: &mut http::HeaderMap) {
    if let Some(cookie) = &names.cookie
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{cookie}=; Path={}; Max-Age=0; HttpOnly",
            names.path
        ))
    {
        headers.append(SET_COOKIE, value);
    }
}

/// With feature `axum`: a handler argument `session: Session<DB>` is the request's session.
/// Without [`SessionLayer`] on the route it is rejected with a 500 that says so.
#[cfg(feature = "axum")]
impl<S: Send + Sync, DB: Backend> axum_core::extract::FromRequestParts<S> for Session<DB> {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session<DB>>().cloned().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no partypool session: add partypool::tower::SessionLayer to this route",
        ))
    }
}

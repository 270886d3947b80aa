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

use crate::carrier::Carrier;
use crate::{Backend, ReplicaPool, Session};

pub use crate::carrier::{DEFAULT_COOKIE, DEFAULT_HEADER, SameSite};

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
    names: Arc<Carrier>,
}

impl<DB: Backend> SessionLayer<DB> {
    /// Sessions of `pool`, with the default header and cookie.
    pub fn new(pool: ReplicaPool<DB>) -> Self {
        SessionLayer {
            pool,
            names: Arc::default(),
        }
    }

    fn names(&mut self) -> &mut Carrier {
        Arc::make_mut(&mut self.names)
    }

    /// Reads and writes the token in header `name` instead of `x-partypool-token`.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.names().header = Some(name.as_str().to_owned());
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
        self.names().set_cookie_name(name.into());
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
        self.names().set_path(path.into());
        self
    }

    /// Signs the tokens this layer hands out with HMAC-SHA256 under `secret` (at least 16
    /// bytes; 32 random ones recommended), and ignores any token without a valid signature
    /// like a garbled one. Without a secret a client can forge a token that keeps its reads
    /// on the primary (bounded per token, but re-forgeable on every request); set one in
    /// production. Every server of the application needs the same secret.
    ///
    /// # Panics
    ///
    /// If `secret` is shorter than 16 bytes.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.names().set_secret(secret.as_ref());
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
    names: Arc<Carrier>,
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
        let names = &self.names;
        let header = names
            .header
            .as_deref()
            .and_then(|h| req.headers().get(h))
            .map(HeaderValue::as_bytes);
        let cookies = req
            .headers()
            .get_all(COOKIE)
            .iter()
            .map(HeaderValue::as_bytes);
        let sent = names.incoming(header, cookies);
        let opened = names.open(&self.pool, sent);
        let session = opened.session.clone();
        req.extensions_mut().insert(session.clone());
        // The service that was polled ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let names = Arc::clone(&self.names);
        Box::pin(async move {
            // The handler runs in the request's scope: plain `&pool` calls are the session's.
            let mut response = session.scope(inner.call(req)).await?;
            let out = names.close(opened).await;
            let headers = response.headers_mut();
            if let (Some(name), Some(text)) = (&names.header, out.header)
                && let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::from_str(&text),
                )
            {
                headers.insert(name, value);
            }
            if let Some(cookie) = out.set_cookie
                && let Ok(value) = HeaderValue::from_str(&cookie)
            {
                headers.append(SET_COOKIE, value);
            }
            Ok(response)
        })
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

//! Read-your-writes per HTTP request for actix-web (feature `actix-web`): the same as the
//! [tower layer](crate::tower), as actix-web middleware.
//!
//! [`SessionMiddleware`] runs every request in a [`Session`] scope (see
//! [`Session::scope`]): handlers keep `web::Data<PgReplicaPool>` and repository functions keep
//! taking `&pool`, and their calls belong to the request's session. The session continues
//! from the token the client sent back (a header or a cookie); when the request wrote, the
//! response carries the new token, so the client's next request — on any server of the
//! application — reads its writes. A handler can also take the session itself as an
//! extractor (`session: Session<Postgres>`).
//!
//! ```no_run
//! # async fn demo(pool: partypool::PgReplicaPool) -> std::io::Result<()> {
//! use actix_web::{App, HttpServer, web};
//! use partypool::actix::SessionMiddleware;
//!
//! async fn create(pool: web::Data<partypool::PgReplicaPool>, body: String) -> String {
//!     let id: i64 = sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
//!         .bind(body)
//!         .fetch_one(pool.get_ref())
//!         .await
//!         .unwrap();
//!     id.to_string()
//! }
//!
//! let secret = std::env::var("TOKEN_SECRET").unwrap();
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(web::Data::new(pool.clone()))
//!         .wrap(SessionMiddleware::new(pool.clone()).secret(&secret))
//!         .route("/notes", web::post().to(create))
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await
//! # }
//! ```

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{COOKIE, HeaderName, HeaderValue, SET_COOKIE};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_core::future::LocalBoxFuture;

use crate::carrier::Carrier;
pub use crate::carrier::{DEFAULT_COOKIE, DEFAULT_HEADER, SameSite};
use crate::{Backend, ReplicaPool, Session};

/// actix-web middleware that runs every request in a [`Session`] of `pool`; see the
/// [module docs](self). The token's header and cookie are the tower layer's
/// (`x-partypool-token`, `partypool_token`), so the two interoperate.
pub struct SessionMiddleware<DB: Backend> {
    pool: ReplicaPool<DB>,
    carrier: Arc<Carrier>,
}

impl<DB: Backend> Clone for SessionMiddleware<DB> {
    fn clone(&self) -> Self {
        SessionMiddleware {
            pool: self.pool.clone(),
            carrier: Arc::clone(&self.carrier),
        }
    }
}

impl<DB: Backend> std::fmt::Debug for SessionMiddleware<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("carrier", &self.carrier)
            .finish_non_exhaustive()
    }
}

impl<DB: Backend> SessionMiddleware<DB> {
    /// Sessions of `pool`, with the default header and cookie.
    ///
    /// ```no_run
    /// # fn demo(pool: partypool::PgReplicaPool) {
    /// let sessions = partypool::actix::SessionMiddleware::new(pool).cookie("app_rw").secure(true);
    /// # let _ = sessions; }
    /// ```
    pub fn new(pool: ReplicaPool<DB>) -> Self {
        SessionMiddleware {
            pool,
            carrier: Arc::default(),
        }
    }

    fn carrier(&mut self) -> &mut Carrier {
        Arc::make_mut(&mut self.carrier)
    }

    /// Reads and writes the token in header `name` instead of `x-partypool-token`.
    pub fn header(mut self, name: &str) -> Self {
        self.carrier().header = Some(name.to_ascii_lowercase());
        self
    }

    /// No header: the cookie only.
    pub fn without_header(mut self) -> Self {
        self.carrier().header = None;
        self
    }

    /// Reads and writes the token in cookie `name` instead of `partypool_token`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid cookie name.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.carrier().set_cookie_name(name.into());
        self
    }

    /// No cookie: the header only.
    pub fn without_cookie(mut self) -> Self {
        self.carrier().cookie = None;
        self
    }

    /// Marks the cookie `Secure`. Default: off.
    pub fn secure(mut self, secure: bool) -> Self {
        self.carrier().secure = secure;
        self
    }

    /// The cookie's `SameSite` attribute. Default: `Lax`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.carrier().same_site = same_site;
        self
    }

    /// The cookie's `Path`. Default: `/`.
    ///
    /// # Panics
    ///
    /// If `path` is not visible ASCII without `;`.
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.carrier().set_path(path.into());
        self
    }

    /// Signs tokens with HMAC-SHA256 under `secret` and ignores unsigned or badly signed
    /// ones; see [`SessionLayer::secret`](crate::tower::SessionLayer::secret) (the same
    /// format: a token signed by one is accepted by the other under the same secret).
    ///
    /// # Panics
    ///
    /// If `secret` is shorter than 16 bytes.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.carrier().set_secret(secret.as_ref());
        self
    }
}

impl<S, B, DB> Transform<S, ServiceRequest> for SessionMiddleware<DB>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
    DB: Backend,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = SessionService<S, DB>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            pool: self.pool.clone(),
            carrier: Arc::clone(&self.carrier),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around the application.
pub struct SessionService<S, DB: Backend> {
    service: Rc<S>,
    pool: ReplicaPool<DB>,
    carrier: Arc<Carrier>,
}

impl<S, B, DB> Service<ServiceRequest> for SessionService<S, DB>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
    DB: Backend,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, actix_web::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let carrier = Arc::clone(&self.carrier);
        let header = carrier
            .header
            .as_deref()
            .and_then(|h| req.headers().get(h))
            .map(HeaderValue::as_bytes);
        let cookies = req.headers().get_all(COOKIE).map(HeaderValue::as_bytes);
        let sent = carrier.incoming(header, cookies);
        let opened = carrier.open(&self.pool, sent);
        let session = opened.session.clone();
        req.extensions_mut().insert(session.clone());
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let mut response = session.scope(service.call(req)).await?;
            let out = carrier.close(opened).await;
            let headers = response.headers_mut();
            if let (Some(name), Some(text)) = (&carrier.header, out.header)
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

/// A handler argument `session: Session<DB>` is the request's session. Without
/// [`SessionMiddleware`] it is rejected with a 500 that says so.
impl<DB: Backend> FromRequest for Session<DB> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Session<DB>>()
                .cloned()
                .ok_or_else(|| {
                    actix_web::error::ErrorInternalServerError(
                        "no partypool session: wrap the app in partypool::actix::SessionMiddleware",
                    )
                }),
        )
    }
}

//! Members that come from outside the configuration, and the one reconcile that turns a
//! source's word into joins and drains (`plan`). Sources: DNS names whose addresses are the
//! nodes (a Kubernetes headless service, CloudNativePG's `-r` / `-ro` services), re-read
//! every [`Config::discovery_interval`](crate::Config::discovery_interval).
//!
//! A name given to [`Builder::dns`](crate::Builder::dns) is one node per address, named
//! `host/addr:port`. An address that appears joins after its first successful probe; one
//! that disappears drains (running calls finish, no new ones) and closes. A failed or empty
//! lookup changes nothing: a DNS outage must not empty the pool.
//!
//! Only names given to `dns` are expanded: `localhost` resolving to `::1` and `127.0.0.1`,
//! or a primary's VIP name, stay one node, resolved by the driver at each connection.

use std::io;
use std::net::SocketAddr;

use futures_core::future::BoxFuture;

mod dns;
#[cfg(feature = "patroni")]
pub(crate) mod patroni;
mod reconcile;

pub(crate) use dns::DnsSource;
pub(crate) use reconcile::{Plan, plan};

/// Resolves a host name to socket addresses: the seam DNS discovery goes through.
///
/// [`SystemResolver`] (the default) asks the operating system. Give the builder another one
/// ([`Builder::resolver`](crate::Builder::resolver)) to take members from elsewhere (a
/// service registry) or to drive discovery in tests.
///
/// ```
/// use std::net::SocketAddr;
/// use partypool::discovery::Resolve;
///
/// /// Always the same two addresses.
/// struct Fixed(Vec<SocketAddr>);
///
/// impl Resolve for Fixed {
///     fn resolve<'a>(
///         &'a self,
///         _host: &'a str,
///         _port: u16,
///     ) -> futures_core::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
///         Box::pin(async move { Ok(self.0.clone()) })
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `host` has now, with `port`.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`, through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

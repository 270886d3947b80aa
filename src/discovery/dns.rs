//! [`DnsSource`]: a DNS name whose addresses are the members.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::Resolve;
use crate::roles::{Origin, Role};
use crate::topology::Member;

/// A DNS name whose addresses are members.
#[derive(Clone)]
pub(crate) struct DnsSource {
    /// The URL as given (its host is the name).
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) role: Role,
}

impl fmt::Debug for DnsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.host, self.port, self.role)
    }
}

impl DnsSource {
    /// Reads a `dns` URL: it must name a host (not an address).
    pub(crate) fn parse(url: &str, role: Role, default_port: u16) -> Result<DnsSource, String> {
        let u = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = match u.host() {
            // (`postgres:` is not a special scheme to `url`: an address is an opaque host.)
            Some(url::Host::Domain(h))
                if h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('[') =>
            {
                h.to_owned()
            }
            Some(_) => return Err("DNS discovery needs a host name, not an address".into()),
            None => return Err("no host".into()),
        };
        Ok(DnsSource {
            url: url.to_owned(),
            host,
            port: u.port().unwrap_or(default_port),
            role,
        })
    }

    /// The node name for one address: `host/addr:port`.
    pub(crate) fn node_name(&self, addr: SocketAddr) -> String {
        format!("{}/{addr}", self.host)
    }

    /// Whether `name` is one of this source's nodes.
    pub(crate) fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.host)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The URL of one address: the same user, database and options, the address as host.
    pub(crate) fn url_for(&self, addr: SocketAddr) -> String {
        let mut u = url::Url::parse(&self.url).expect("parsed before");
        let _ = u.set_ip_host(addr.ip());
        let _ = u.set_port(Some(addr.port()));
        u.to_string()
    }

    /// The members the name stands for now: one per address (an empty answer is an error:
    /// a DNS outage must not empty the pool).
    pub(crate) async fn desired(&self, resolver: &Arc<dyn Resolve>) -> io::Result<Vec<Member>> {
        let addrs = self.lookup(resolver).await?;
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
        }
        Ok(addrs
            .into_iter()
            .map(|a| Member {
                url: self.url_for(a),
                role: self.role,
                origin: Origin::Dns,
                name: Some(self.node_name(a)),
                zone: None,
            })
            .collect())
    }

    /// Resolves the name: the distinct addresses, in a stable order.
    pub(crate) async fn lookup(&self, resolver: &Arc<dyn Resolve>) -> io::Result<Vec<SocketAddr>> {
        let mut seen = HashSet::new();
        let mut addrs: Vec<SocketAddr> = resolver
            .resolve(&self.host, self.port)
            .await?
            .into_iter()
            .filter(|a| seen.insert(*a))
            .collect();
        addrs.sort();
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_sources_name_their_nodes_by_address() {
        let s = DnsSource::parse(
            "postgres://u:p@db.svc:6432/app?sslmode=disable",
            Role::Discovered,
            5432,
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port), ("db.svc", 6432));
        let a: SocketAddr = "10.0.0.7:6432".parse().unwrap();
        assert_eq!(s.node_name(a), "db.svc/10.0.0.7:6432");
        assert_eq!(
            s.url_for(a),
            "postgres://u:p@10.0.0.7:6432/app?sslmode=disable"
        );
        let v6: SocketAddr = "[::1]:6432".parse().unwrap();
        assert_eq!(
            s.url_for(v6),
            "postgres://u:p@[::1]:6432/app?sslmode=disable"
        );
        assert!(s.owns("db.svc/10.0.0.7:6432") && !s.owns("db.svc2/x") && !s.owns("db.svc"));
        let d = DnsSource::parse("postgres://db.svc/app", Role::Discovered, 5432).unwrap();
        assert_eq!(d.port, 5432);
        assert!(DnsSource::parse("postgres://127.0.0.1/app", Role::Discovered, 5432).is_err());
        assert!(DnsSource::parse("nonsense", Role::Discovered, 5432).is_err());
    }
}

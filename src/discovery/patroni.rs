//! Members, roles and lag from Patroni's REST API (feature `patroni`).
//!
//! Every [`Config::discovery_interval`](crate::Config::discovery_interval) the pool reads
//! `GET /cluster` from the first endpoint that answers. Each member is a node (named as
//! Patroni names it, URL from the template with the member's host and port); members that
//! appear join, members that leave drain. A member Patroni reports as not running, or with
//! more lag than `max_replica_lag_bytes`, serves no reads. When Patroni names a new leader,
//! it and the current writer are probed at once and the writer elected again, so writes
//! move as soon as the leader is writable rather than at the next health round. The probe
//! keeps the last word: a "leader" that is still in recovery takes no writes.
//!
//! The HTTP client is `hyper` 1 with `hyper-util`'s pooled client: the crates `reqwest` is
//! built on (and that axum applications already compile), without a second runtime. HTTPS
//! endpoints go through `hyper-rustls` (rustls with ring: no OpenSSL), trusting the system's
//! roots and any CA given to [`Builder::patroni_ca`](crate::Builder::patroni_ca).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// One member as Patroni reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    /// `leader` (or `standby_leader`), `replica`, `sync_standby`.
    pub(crate) role: String,
    /// `running`, `streaming`, `starting`, `stopped`, `crashed`, …
    pub(crate) state: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Bytes of WAL behind the leader, when Patroni knows.
    pub(crate) lag: Option<u64>,
    /// Its `zone` tag (`tags: {zone: eu-west-1a}` in its Patroni configuration), if any.
    pub(crate) zone: Option<String>,
}

impl Member {
    pub(crate) fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming")
    }

    /// Why Patroni's word keeps this member out of the reads, if it does: it is not
    /// running, or (a replica) it is further behind than `max_lag` bytes.
    pub(crate) fn veto(&self, max_lag: Option<u64>) -> Option<String> {
        if !self.is_running() {
            return Some(format!("Patroni reports it {}", self.state));
        }
        match (self.lag, max_lag) {
            (Some(lag), Some(max)) if !self.is_leader() && lag > max => {
                Some(format!("Patroni reports {lag} bytes of lag"))
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ClusterDoc {
    #[serde(default)]
    members: Vec<MemberDoc>,
}

#[derive(Deserialize)]
struct MemberDoc {
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    state: String,
    host: String,
    port: u16,
    /// A number, or `"unknown"`.
    #[serde(default)]
    lag: Option<serde_json::Value>,
    /// The member's tags (`nofailover`, `clonefrom`, and any of the operator's own).
    #[serde(default)]
    tags: Option<serde_json::Value>,
}

/// The members in a `GET /cluster` document.
pub(crate) fn parse_cluster(body: &[u8]) -> Result<Vec<Member>, String> {
    let doc: ClusterDoc = serde_json::from_slice(body)
        .map_err(|e| format!("not a Patroni /cluster document: {e}"))?;
    Ok(doc
        .members
        .into_iter()
        .map(|m| Member {
            name: m.name,
            role: m.role,
            state: m.state,
            host: m.host,
            port: m.port,
            lag: m.lag.and_then(|l| l.as_u64()),
            zone: m
                .tags
                .as_ref()
                .and_then(|t| t.get("zone"))
                .and_then(|z| z.as_str())
                .map(str::to_owned),
        })
        .collect())
}

/// Patroni's REST endpoints and how to reach the members' databases.
pub(crate) struct PatroniSource {
    endpoints: Vec<http::Uri>,
    /// A database URL whose host and port are replaced by each member's.
    template: url::Url,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

/// The client for `endpoints`: plain HTTP, and HTTPS trusting the system's roots (loaded only
/// when an endpoint is HTTPS) plus `extra` CAs.
fn client(
    endpoints: &[http::Uri],
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if endpoints.iter().any(|e| e.scheme_str() == Some("https")) {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "a system root certificate could not be loaded");
        }
        roots.add_parsable_certificates(native.certs);
    }
    for ca in extra {
        roots
            .add(ca.clone())
            .map_err(|e| format!("Patroni CA certificate: {e}"))?;
    }
    // ring rather than aws-lc-rs (rustls' default): it builds with the C compiler alone, in
    // seconds, where aws-lc-rs adds a large C library to every build with the feature.
    // rustls deprecates ring's provider for lacking post-quantum key exchange; for a status
    // read from a cluster manager on the operator's own network, classical ECDHE is enough.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An error with its causes (`client error (Connect): invalid peer certificate:
/// UnknownIssuer`): the HTTP client's own message names only the step that failed.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The certificates in a PEM text (a CA bundle), for [`Builder::patroni_ca`].
///
/// [`Builder::patroni_ca`]: crate::Builder::patroni_ca
pub(crate) fn parse_pem(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the PEM text".into());
    }
    Ok(certs)
}

impl std::fmt::Debug for PatroniSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatroniSource")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl PatroniSource {
    /// `endpoints`: one or more `http://host:port` (comma-separated); `template`: a database
    /// URL (user, password, database, options) for every member.
    pub(crate) fn new(
        endpoints: &str,
        template: &str,
        ca: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<PatroniSource, String> {
        let endpoints = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let base = e.trim_end_matches('/');
                if !base.starts_with("http://") && !base.starts_with("https://") {
                    return Err(format!(
                        "{e}: Patroni endpoints are http:// or https:// URLs"
                    ));
                }
                format!("{base}/cluster")
                    .parse::<http::Uri>()
                    .map_err(|err| format!("{e}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no Patroni endpoint".into());
        }
        let template = template_url(template)?;
        let client = client(&endpoints, ca)?;
        Ok(PatroniSource {
            endpoints,
            template,
            client,
        })
    }

    /// Trusts `ca` too for its HTTPS endpoints.
    pub(crate) fn trust(
        &mut self,
        ca: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<(), String> {
        self.client = client(&self.endpoints, ca)?;
        Ok(())
    }

    /// The members, from the first endpoint that answers within `timeout`.
    pub(crate) async fn members(&self, timeout: Duration) -> Result<Vec<Member>, String> {
        let mut errors = Vec::new();
        for uri in &self.endpoints {
            let get = async {
                let response = self
                    .client
                    .get(uri.clone())
                    .await
                    .map_err(|e| with_causes(&e))?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                parse_cluster(&body)
            };
            match tokio::time::timeout(timeout, get).await {
                Ok(Ok(members)) => return Ok(members),
                Ok(Err(e)) => errors.push(format!("{uri}: {e}")),
                Err(_) => errors.push(format!("{uri}: no answer within {timeout:?}")),
            }
        }
        Err(errors.join("; "))
    }

    /// The pool members Patroni's members stand for (one whose URL cannot be made is skipped
    /// with a warning).
    pub(crate) fn desired(&self, found: &[Member]) -> Vec<crate::topology::Member> {
        found
            .iter()
            .filter_map(|m| match self.url_for(m) {
                Ok(url) => Some(crate::topology::Member {
                    url,
                    role: crate::roles::Role::Discovered,
                    origin: crate::roles::Origin::Patroni,
                    name: Some(m.name.clone()),
                    zone: m.zone.clone(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "a Patroni member is skipped");
                    None
                }
            })
            .collect()
    }

    /// The database URL of a member (an IPv6 address in brackets), or why there is none.
    pub(crate) fn url_for(&self, m: &Member) -> Result<String, String> {
        let mut u = self.template.clone();
        let host = if m.host.contains(':') && !m.host.starts_with('[') {
            format!("[{}]", m.host)
        } else {
            m.host.clone()
        };
        u.set_host(Some(&host))
            .map_err(|e| format!("member {} host {:?}: {e}", m.name, m.host))?;
        u.set_port(Some(m.port))
            .map_err(|()| format!("member {}: the template URL takes no port", m.name))?;
        Ok(u.to_string())
    }
}

/// The template as a URL. Its host is replaced by each member's, so it may have none:
/// `postgres://app:pw@/app` and `postgres:///app?user=app` are taken as written.
fn template_url(template: &str) -> Result<url::Url, String> {
    let parse = |t: &str| url::Url::parse(t).map_err(|e| format!("template URL: {e}"));
    let hostless = match template.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first `/`, `?` or `#`; its host after the last `@`.
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let (userinfo, host) = match authority.rfind('@') {
                Some(at) => authority.split_at(at + 1),
                None => ("", authority),
            };
            host.is_empty()
                .then(|| format!("{scheme}://{userinfo}placeholder{tail}"))
        }
        None => None,
    };
    parse(hostless.as_deref().unwrap_or(template))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_needs_no_host() {
        let m = Member {
            name: "pg1".into(),
            role: "leader".into(),
            state: "running".into(),
            host: "10.0.0.1".into(),
            port: 5432,
            lag: None,
            zone: None,
        };
        for (template, want) in [
            (
                "postgres://app:pw@/app",
                "postgres://app:pw@10.0.0.1:5432/app",
            ),
            (
                "postgres://app@/app?sslmode=disable",
                "postgres://app@10.0.0.1:5432/app?sslmode=disable",
            ),
            (
                "postgres:///app?user=app",
                "postgres://10.0.0.1:5432/app?user=app",
            ),
            (
                "postgres://app:pw@old-host:1/app",
                "postgres://app:pw@10.0.0.1:5432/app",
            ),
        ] {
            let s = PatroniSource::new("http://127.0.0.1:8008", template, &[]).unwrap();
            assert_eq!(s.url_for(&m).unwrap(), want, "{template}");
        }
    }

    #[test]
    fn reads_what_patroni_reports() {
        let body = br#"{"members": [
            {"name": "pg1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:8008/patroni",
             "host": "127.0.0.1", "port": 5432, "timeline": 3},
            {"name": "pg2", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 5433,
             "timeline": 3, "lag": 0, "tags": {"zone": "eu-1b", "nofailover": true}},
            {"name": "pg3", "role": "sync_standby", "state": "stopped", "host": "127.0.0.1", "port": 5434,
             "lag": "unknown"}
        ], "scope": "demo"}"#;
        let m = parse_cluster(body).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m[0].is_leader() && m[0].is_running() && m[0].lag.is_none());
        assert!(!m[1].is_leader() && m[1].is_running() && m[1].lag == Some(0));
        assert_eq!(
            (m[0].zone.as_deref(), m[1].zone.as_deref()),
            (None, Some("eu-1b"))
        );
        assert!(!m[2].is_running() && m[2].lag.is_none());
        assert_eq!(m[0].veto(Some(0)), None, "a leader has no lag");
        assert_eq!(m[1].veto(Some(0)), None);
        assert_eq!(
            m[2].veto(None).as_deref(),
            Some("Patroni reports it stopped")
        );
        let behind = Member {
            lag: Some(5000),
            ..m[1].clone()
        };
        assert_eq!(behind.veto(None), None);
        assert_eq!(
            behind.veto(Some(4096)).as_deref(),
            Some("Patroni reports 5000 bytes of lag")
        );
        assert!(parse_cluster(b"<html>").is_err());
        assert!(parse_cluster(b"{}").unwrap().is_empty());
    }

    #[test]
    fn member_urls_come_from_the_template() {
        let s = PatroniSource::new(
            "http://127.0.0.1:8008/, http://127.0.0.1:8009",
            "postgres://app:pw@placeholder/app?sslmode=disable",
            &[],
        )
        .unwrap();
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.endpoints[0].to_string(), "http://127.0.0.1:8008/cluster");
        let m = Member {
            name: "pg2".into(),
            role: "replica".into(),
            state: "running".into(),
            host: "10.0.0.2".into(),
            port: 6432,
            lag: None,
            zone: None,
        };
        assert_eq!(
            s.url_for(&m).unwrap(),
            "postgres://app:pw@10.0.0.2:6432/app?sslmode=disable"
        );
        let v6 = Member {
            host: "::1".into(),
            ..m.clone()
        };
        assert_eq!(
            s.url_for(&v6).unwrap(),
            "postgres://app:pw@[::1]:6432/app?sslmode=disable"
        );
        let bad = Member {
            host: "a b".into(),
            ..m
        };
        assert!(s.url_for(&bad).is_err());
        assert!(PatroniSource::new("ftp://x:8008", "postgres://a@b/c", &[]).is_err());
        assert!(PatroniSource::new("", "postgres://a@b/c", &[]).is_err());
        assert!(PatroniSource::new("https://x:8008", "postgres://a@b/c", &[]).is_ok());
        assert!(parse_pem(b"not pem").is_err());
    }
}

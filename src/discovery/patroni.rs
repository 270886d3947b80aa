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
//! The HTTP client is `hyper` 1 with `hyper-util`'s pooled client over plain HTTP: the
//! crates `reqwest` is built on (and that axum applications already compile), without a TLS
//! stack or a second runtime. Patroni's REST API over HTTPS is not supported yet.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
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
    client: Client<HttpConnector, Empty<Bytes>>,
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
    pub(crate) fn new(endpoints: &str, template: &str) -> Result<PatroniSource, String> {
        let endpoints = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let base = e.trim_end_matches('/');
                if !base.starts_with("http://") {
                    return Err(format!("{e}: Patroni endpoints are http:// URLs"));
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
        Ok(PatroniSource {
            endpoints,
            template,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
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
                    .map_err(|e| e.to_string())?;
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
            let s = PatroniSource::new("http://127.0.0.1:8008", template).unwrap();
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
        assert!(PatroniSource::new("https://x:8008", "postgres://a@b/c").is_err());
        assert!(PatroniSource::new("", "postgres://a@b/c").is_err());
    }
}

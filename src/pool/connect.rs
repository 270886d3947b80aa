//! Building a pool's nodes from their URLs, and the first round of probes at `connect`.

use std::sync::Arc;

use futures_util::future::join_all;
use sqlx::Connection;
use sqlx::pool::PoolOptions;

use super::builder::Hooks;
use crate::backend::Backend;
use crate::cluster::{Cluster, Event};
use crate::config::Config;
use crate::error::Error;
use crate::node::Node;
use crate::roles::Role;
use crate::topology::Member;
use crate::{health, redact};

type Options<DB> = <<DB as sqlx::Database>::Connection as Connection>::Options;

/// What the discovery sources named at `connect`.
pub(super) struct Discovered {
    /// Their members now.
    pub(super) members: Vec<Member>,
    /// Why none was found, when none was.
    pub(super) failure: Option<String>,
    /// What Patroni said of its members, applied once the nodes exist.
    #[cfg(feature = "patroni")]
    pub(super) patroni: Vec<crate::discovery::patroni::Member>,
}

/// Asks every DNS name and Patroni cluster for its members, once.
#[cfg_attr(not(feature = "patroni"), allow(unused_variables))]
pub(super) async fn discovered_members<DB: Backend>(
    config: &Config,
    hooks: &Hooks<DB>,
) -> Discovered {
    let mut found = Discovered {
        members: Vec::new(),
        failure: None,
        #[cfg(feature = "patroni")]
        patroni: Vec::new(),
    };
    #[cfg(feature = "patroni")]
    {
        let mut errors = Vec::new();
        for source in &hooks.patroni {
            match source.members(config.acquire_timeout).await {
                Ok(said) => {
                    found.members.extend(source.desired(&said));
                    found.patroni.extend(said);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            found.failure = Some(format!(
                "no Patroni endpoint answered: {}",
                errors.join("; ")
            ));
        }
    }
    if found.failure.is_none() && !hooks.dns.is_empty() {
        found.failure = Some("no DNS name resolved to an address".to_owned());
    }
    for source in &hooks.dns {
        match source.desired(&hooks.resolver).await {
            Ok(members) => found.members.extend(members),
            // Looked up again every discovery interval.
            Err(e) => tracing::warn!(name = %source.host, error = %e, "DNS lookup failed"),
        }
    }
    found
}

/// Builds the nodes: multi-host URLs split into one node per host, the declared primary (at
/// most one) first. Declared nodes are named `primary`, `replica-1`, …; the others by their
/// `host:port`.
pub(super) fn build_nodes<DB: Backend>(
    members: Vec<Member>,
    config: &Config,
    hooks: &Hooks<DB>,
) -> Result<Vec<Arc<Node<DB>>>, Error> {
    if members.is_empty() {
        return Err(Error::Config(
            "no nodes: call .primary(url), .node(url) or .nodes(url)".into(),
        ));
    }
    if members.iter().all(|m| m.role == Role::Replica) {
        return Err(Error::Config(
            "no primary: call .primary(url), or .node(url) / .nodes(url) to let the probes \
             find it"
                .into(),
        ));
    }
    if members.iter().filter(|m| m.role == Role::Primary).count() > 1 {
        return Err(Error::Config(
            "more than one declared primary (to let the probes choose among several, \
             list them with .nodes(url) or in one multi-host URL)"
                .into(),
        ));
    }
    let (mut ordered, rest): (Vec<Member>, Vec<Member>) =
        members.into_iter().partition(|m| m.role == Role::Primary);
    let primary_url = ordered.first().map(|m| m.url.clone());
    ordered.extend(rest);
    let mut nodes = Vec::with_capacity(ordered.len());
    let mut replicas = 0;
    let mut names = std::collections::HashSet::new();
    for m in ordered {
        let (name, weight) = match (m.role, m.name) {
            (_, Some(name)) => (name, 1),
            (Role::Primary, None) => ("primary".to_owned(), 1),
            (Role::Replica, None) => {
                replicas += 1;
                let weight = config
                    .replica_weights
                    .get(replicas - 1)
                    .copied()
                    .unwrap_or(1);
                (format!("replica-{replicas}"), weight)
            }
            (_, None) => (crate::topology::host_port(&m.url), 1),
        };
        let unique = unique_name(&name, |n| names.contains(n));
        names.insert(unique.clone());
        nodes.push(Arc::new(
            node::<DB>(unique, m.role, &m.url, m.zone.as_deref(), config, hooks)?
                .with_weight(weight)
                .with_origin(m.origin),
        ));
    }
    if hooks.simulated_replicas > 0 {
        let Some(url) = primary_url else {
            return Err(Error::Config(
                "simulate_replicas needs a declared primary: call .primary(url)".into(),
            ));
        };
        if !DB::SIMULATES {
            return Err(Error::Config(
                "simulated replicas are available for PostgreSQL and MariaDB (not SQLite yet)"
                    .into(),
            ));
        }
        let ring = Arc::new(crate::node::Ring::new(config.simulated_lag));
        for i in 1..=hooks.simulated_replicas {
            let name = unique_name(&format!("simulated-{i}"), |n| names.contains(n));
            names.insert(name.clone());
            let mut node = node::<DB>(name, Role::Replica, &url, None, &simulated(config), hooks)?
                .with_origin(crate::roles::Origin::Simulated);
            node.simulated = Some(Arc::clone(&ring));
            nodes.push(Arc::new(node));
        }
    }
    Ok(nodes)
}

/// A simulated replica's settings: its sessions are read-only whatever
/// `strict_replicas` says (it is the primary's server).
fn simulated(config: &Config) -> Config {
    let mut config = config.clone();
    config.strict_replicas = true;
    config
}

/// `base`, or `base#2`, `base#3`, … : the first that is not `taken`.
pub(super) fn unique_name(base: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut name = base.to_owned();
    let mut n = 1;
    while taken(&name) {
        n += 1;
        name = format!("{base}#{n}");
    }
    name
}

/// The probes at `connect`, all at once.
///
/// With a declared primary, it must answer within the acquire timeout and its system
/// identifier is the cluster's; the others that do not answer start unhealthy and the
/// health task keeps probing them. Without one, `connect` succeeds when any node answers:
/// the writer is the node that is not in recovery (the newest timeline and position among
/// several), and with none, reads work and writes fail at once until one appears. The
/// results are recorded after the identity is known, so a node of another cluster never
/// enters the rotation.
pub(super) async fn first_round<DB: Backend>(
    cluster: &Cluster<DB>,
    config: &Config,
) -> Result<(), Error> {
    let nodes = Arc::clone(&cluster.snapshot().nodes);
    let declared = nodes[0].role == Role::Primary;
    let primary_wait = config.acquire_timeout.max(config.health_check_timeout);
    let wait = |i: usize| {
        if i == 0 || !declared {
            primary_wait
        } else {
            config.health_check_timeout
        }
    };
    let mut outcomes = join_all(
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| tokio::time::timeout(wait(i), health::probe(&**n, true))),
    )
    .await;
    let answered = |i: usize| match &outcomes[i] {
        Ok(Ok(p)) => Some(p),
        _ => None,
    };
    let close_all = || join_all(nodes.iter().map(|n| n.pool.close()));
    let writer = if declared {
        0
    } else {
        let writable = (0..nodes.len())
            .filter(|&i| answered(i).is_some_and(|p| p.in_recovery == Some(false)))
            .max_by_key(|&i| answered(i).map(|p| (p.timeline, p.position)));
        match writable.or_else(|| (0..nodes.len()).find(|&i| answered(i).is_some())) {
            Some(i) => i,
            None => {
                let reasons: Vec<String> = nodes
                    .iter()
                    .zip(&outcomes)
                    .map(|(n, o)| {
                        let why = match o {
                            Ok(Err(e)) => n.scrub(&e.to_string()),
                            _ => format!("no answer within {primary_wait:?}"),
                        };
                        format!("{} ({}): {why}", n.name, n.url)
                    })
                    .collect();
                close_all().await;
                return Err(Error::NoNodeAnswered {
                    reasons: reasons.join("; "),
                });
            }
        }
    };
    let Some(probe) = answered(writer) else {
        let source = match outcomes.swap_remove(0) {
            Ok(Err(e)) => e,
            _ => sqlx::Error::PoolTimedOut,
        };
        let primary = &nodes[0];
        let reason = primary.scrub(&source.to_string());
        close_all().await;
        return Err(Error::PrimaryUnreachable {
            node: primary.name.clone(),
            url: primary.url.clone(),
            reason,
            source,
        });
    };
    if declared && probe.in_recovery == Some(true) {
        tracing::warn!(node = %nodes[0].name, "the configured primary is in recovery (a standby)");
    }
    // The identity first, so a node of another cluster never enters the rotation.
    let mut events = vec![Event::Identity(probe.cluster_id), Event::Writer(writer)];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let seen = health::observation(&nodes[i], outcome, wait(i));
        events.push(Event::Observed(i, seen));
    }
    events.push(Event::Round);
    cluster.apply(&events);
    Ok(())
}

/// Builds one node and its (lazy) pool from a URL.
pub(super) fn node<DB: Backend>(
    name: String,
    role: Role,
    raw: &str,
    zone: Option<&str>,
    config: &Config,
    hooks: &Hooks<DB>,
) -> Result<Node<DB>, Error> {
    // The zone: the member's, else the URL's `zone` parameter (taken out: no driver knows it).
    let (stripped, url_zone) = crate::topology::take_zone(raw);
    let raw = stripped.as_str();
    let zone = zone.map(str::to_owned).or(url_zone);
    let url = redact::redact_url(raw);
    let secret = redact::password_of(raw);
    let invalid = |reason: String| Error::InvalidUrl {
        node: name.clone(),
        url: url.clone(),
        reason,
    };
    let scheme = raw.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if !scheme.is_some_and(|s| DB::SCHEMES.contains(&s.as_str())) {
        let expected: Vec<String> = DB::SCHEMES.iter().map(|s| format!("{s}://")).collect();
        return Err(invalid(format!(
            "expected a URL starting with {}",
            expected.join(" or ")
        )));
    }
    // Given as options (`primary_with`, …): those, else the URL parsed.
    let options: Options<DB> = match hooks.options.get(raw) {
        Some(options) => options.clone(),
        None => raw
            .parse()
            .map_err(|e: sqlx::Error| invalid(redact::scrub(&e.to_string(), secret.as_deref())))?,
    };
    let max = match role {
        Role::Primary => config
            .primary_max_connections
            .or(DB::PRIMARY_MAX_CONNECTIONS)
            .unwrap_or(config.max_connections),
        _ => config.max_connections,
    };
    let options = match &hooks.connect_options {
        Some(f) => f(options),
        None => options,
    };
    // Strict replicas: every session of a declared replica is read-only. (Nodes of discovered
    // role take the writes whenever the probes say so: theirs stay writable.)
    let strict = config.strict_replicas && role == Role::Replica;
    let (options, on_connect) = if strict {
        DB::read_only_sessions(options)
    } else {
        (options, None)
    };
    let mut pool = PoolOptions::<DB>::new()
        .max_connections(max)
        .min_connections(config.min_connections.min(max))
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .test_before_acquire(config.test_before_acquire);
    // Counts every connection that comes back, for read-your-writes (see `Lending`).
    let lending = Arc::new(crate::node::Lending::default());
    let returns = Arc::clone(&lending);
    // A read on a simulated replica runs in a snapshot's transaction, ended here (on any
    // other connection there is none: a check of a counter).
    pool = pool.after_release(move |conn, _| {
        returns.returned();
        Box::pin(async move {
            crate::simulate::leave::<DB>(conn).await?;
            Ok(true)
        })
    });
    match (hooks.after_connect.clone(), on_connect) {
        (None, None) => {}
        (hook, on_connect) => {
            pool = pool.after_connect(move |conn, meta| {
                let hook = hook.clone();
                Box::pin(async move {
                    if let Some(sql) = on_connect {
                        DB::set_session(conn, sql).await?;
                    }
                    match hook {
                        Some(hook) => hook(conn, meta).await,
                        None => Ok(()),
                    }
                })
            });
        }
    }
    // The monitor credential: the node's URL with another user and password (and, where
    // the backend says so, no database: a monitor user rarely may use the application's),
    // through the same options hook.
    let probe_options = match &hooks.monitor {
        None => None,
        Some((user, password)) => {
            let mut u = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
            let bad = |_| invalid("cannot set the monitor user in this URL".into());
            u.set_username(user).map_err(bad)?;
            u.set_password(Some(password)).map_err(bad)?;
            DB::monitor_url(&mut u);
            let o = <Options<DB> as sqlx::ConnectOptions>::from_url(&u)
                .map_err(|e| invalid(redact::scrub(&e.to_string(), Some(password))))?;
            Some(match &hooks.connect_options {
                Some(f) => f(o),
                None => o,
            })
        }
    };
    let pool = pool.connect_lazy_with(options);
    let mut node = Node::new(name, role, url, secret, pool).with_lending(lending);
    node.strict = strict;
    node.local = match &config.prefer_zone {
        Some(preferred) => zone.as_deref() == Some(preferred.as_str()),
        None => true,
    };
    node.zone = zone;
    if let Some(rotation) = &hooks.credentials {
        let probe = (*node.pool.connect_options()).clone();
        if DB::with_credential(probe, None, "").is_none() {
            return Err(Error::Config(
                "credentials: this database has no passwords".into(),
            ));
        }
        if let Some(credential) = rotation.current() {
            node.use_credential(&credential);
        }
        node.rotation = Some(Arc::clone(rotation));
    }
    if let Some(options) = probe_options {
        node = node.with_probe_options(options, hooks.monitor.as_ref().map(|(_, p)| p.clone()));
    }
    Ok(node)
}

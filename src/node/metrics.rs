//! [`NodeMetrics`]: a node's handles in the `metrics` facade.

use crate::telemetry::NodeAttributes;

/// The node's handles in the `metrics` facade, registered once: partypool's own, labelled
/// with its `node` name (never its URL), and OpenTelemetry's database client metrics,
/// with the semantic conventions' attributes. Without an installed recorder they do nothing.
pub(crate) struct NodeMetrics {
    pub(crate) queries: metrics::Counter,
    pub(crate) errors: metrics::Counter,
    pub(crate) retries: metrics::Counter,
    pub(crate) replans: metrics::Counter,
    pub(crate) misroutes: metrics::Counter,
    pub(crate) duration: metrics::Histogram,
    pub(crate) healthy: metrics::Gauge,
    pub(crate) in_flight: metrics::Gauge,
    pub(crate) lag_seconds: metrics::Gauge,
    pub(crate) lag_bytes: metrics::Gauge,
    /// `db.client.operation.duration` (seconds).
    pub(crate) operation_duration: metrics::Histogram,
    /// `db.client.connection.count`, `state` = `idle` / `used`.
    pub(crate) connections_idle: metrics::Gauge,
    pub(crate) connections_used: metrics::Gauge,
    /// `db.client.connection.max`, `db.client.connection.idle.min`.
    pub(crate) connections_max: metrics::Gauge,
    pub(crate) connections_idle_min: metrics::Gauge,
    /// `db.client.connection.pending_requests`: calls waiting for a connection.
    pub(crate) pending_requests: metrics::Gauge,
    /// `db.client.connection.timeouts`: waits for a connection that timed out.
    pub(crate) timeouts: metrics::Counter,
}

impl NodeMetrics {
    pub(crate) fn new(node: &str, attrs: &NodeAttributes) -> Self {
        let labels = [("node", node.to_owned())];
        let mut operation = vec![
            ("db.system.name", attrs.system.to_owned()),
            ("partypool.node.name", node.to_owned()),
        ];
        if let Some(namespace) = &attrs.namespace {
            operation.push(("db.namespace", namespace.clone()));
        }
        if let Some(address) = &attrs.address {
            operation.push(("server.address", address.clone()));
        }
        if let Some(port) = attrs.port {
            operation.push(("server.port", port.to_string()));
        }
        let pool = [("db.client.connection.pool.name", node.to_owned())];
        let state = |s: &str| {
            [
                pool[0].clone(),
                ("db.client.connection.state", s.to_owned()),
            ]
        };
        NodeMetrics {
            queries: metrics::counter!("partypool_queries_total", &labels),
            errors: metrics::counter!("partypool_errors_total", &labels),
            retries: metrics::counter!("partypool_retries_total", &labels),
            replans: metrics::counter!("partypool_replans_total", &labels),
            misroutes: metrics::counter!("partypool_misroutes_total", &labels),
            duration: metrics::histogram!("partypool_query_duration_seconds", &labels),
            healthy: metrics::gauge!("partypool_node_healthy", &labels),
            in_flight: metrics::gauge!("partypool_in_flight", &labels),
            lag_seconds: metrics::gauge!("partypool_replica_lag_seconds", &labels),
            lag_bytes: metrics::gauge!("partypool_replica_lag_bytes", &labels),
            operation_duration: metrics::histogram!("db.client.operation.duration", &operation),
            connections_idle: metrics::gauge!("db.client.connection.count", &state("idle")),
            connections_used: metrics::gauge!("db.client.connection.count", &state("used")),
            connections_max: metrics::gauge!("db.client.connection.max", &pool),
            connections_idle_min: metrics::gauge!("db.client.connection.idle.min", &pool),
            pending_requests: metrics::gauge!("db.client.connection.pending_requests", &pool),
            timeouts: metrics::counter!("db.client.connection.timeouts", &pool),
        }
    }
}

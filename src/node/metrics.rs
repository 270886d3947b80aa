//! [`NodeMetrics`]: a node's handles in the `metrics` facade.

/// The node's handles in the `metrics` facade, registered once with a `node` label (its
/// name, never its URL). Without an installed recorder they do nothing.
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
}

impl NodeMetrics {
    pub(crate) fn new(node: &str) -> Self {
        let labels = [("node", node.to_owned())];
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
        }
    }
}

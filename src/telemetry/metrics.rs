//! The service's Prometheus metrics: one `Registry` per `Application`, so that several instances in one process
//! (the integration tests) count apart, rendered by `GET /metrics` with the text encoder.
//!
//! Most collectors are counted where the event happens, through handles resolved once here (an increment is one
//! atomic add). What another part of the service already keeps (the subscriber's counters, the pool's state) is
//! read when scraped instead of being counted twice: see `Sampled`.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::config::SourceKind;
use crate::domain::{FlagRule, RejectClass};
use crate::telemetry::worker_histograms::WorkerHistograms;

/// The content type of `render`'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Label value of requests that no route matched; keeps the `route` label bounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Seconds, from half a millisecond (a commit of one row on a local database) to the ack wait.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds, from 50 µs (a cache hit) to a slow database query.
const HTTP_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Every collector of one service instance.
pub struct Metrics {
    registry: Registry,
    /// Messages that passed validation (replays included).
    pub orders_validated: IntCounter,
    orders_flagged: Vec<IntCounter>,
    orders_rejected: Vec<IntCounter>,
    /// New orders committed.
    pub orders_persisted: IntCounter,
    /// Orders committed before (a redelivery or a re-publish).
    pub orders_duplicate: IntCounter,
    /// Messages per transaction.
    pub commit_batch_messages: Histogram,
    /// Payload bytes per transaction (messages, documents, reasons).
    pub commit_batch_bytes: Histogram,
    /// Time of each committed transaction.
    pub commit_duration: Histogram,
    pub commit_retries: IntCounter,
    /// Transactions given up after their retries; their messages stay unacknowledged.
    pub commit_failures: IntCounter,
    /// From a delivery's arrival to its ack being sent.
    pub ack_duration: Histogram,
    delivery_attempts: HistogramVec,
    broker_recovery: HistogramVec,
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// Misses answered from the negative cache, without a query.
    pub cache_negative_hits: IntCounter,
    /// Ids read through from PostgreSQL after a miss, by result.
    pub cache_read_through_found: IntCounter,
    pub cache_read_through_not_found: IntCounter,
    pub cache_read_through_errors: IntCounter,
    /// Lookup queries (each reads a batch of coalesced misses).
    pub cache_read_through_queries: IntCounter,
    pub cache_evictions: IntCounter,
    /// Orders delivered by the change feed (every instance's commits, this one's included).
    pub feed_orders: IntCounter,
    /// From an order's transaction start to its delivery by the feed, per delivered batch (its oldest order).
    pub feed_lag: Histogram,
    /// LISTEN connections replaced after a loss.
    pub feed_reconnects: IntCounter,
    /// 1 while the feed's LISTEN connection is up.
    pub feed_connected: IntGauge,
    pub cache_restore_duration: Gauge,
    pub cache_restored_orders: IntGauge,
    /// Labels `route` (the template, or `UNMATCHED_ROUTE`) and `status`.
    pub http_request_duration: WorkerHistograms,
    /// Set when scraped, from the same check as `/readyz`.
    pub ready: IntGauge,
    /// 1 while deliveries wait and nothing has committed for `STALL_AFTER`.
    pub pipeline_stalled: IntGauge,
    /// Messages refused even as dead letters, left unacknowledged.
    pub messages_unstorable: IntGauge,
}

impl Metrics {
    /// A fresh registry holding every collector. Fails only on a programming error (a bad or duplicate name).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let orders_flagged = register(
            r,
            IntCounterVec::new(
                opts(
                    "orders_flagged_total",
                    "Orders stored with an accepted inconsistency, by rule.",
                ),
                &["rule"],
            )?,
        )?;
        let orders_rejected = register(
            r,
            IntCounterVec::new(
                opts(
                    "orders_rejected_total",
                    "Messages committed as dead letters, by reason class.",
                ),
                &["reason"],
            )?,
        )?;
        let cache_lookups = register(
            r,
            IntCounterVec::new(
                opts(
                    "cache_lookups_total",
                    "Cache lookups by result (hit or miss).",
                ),
                &["result"],
            )?,
        )?;
        let read_throughs = register(
            r,
            IntCounterVec::new(
                opts(
                    "cache_read_throughs_total",
                    "Ids read through from PostgreSQL after a cache miss, by result (found, not_found, error).",
                ),
                &["result"],
            )?,
        )?;
        let http_request_duration = register(
            r,
            WorkerHistograms::new(
                name("http_request_duration_seconds"),
                "HTTP requests by route template and status, with their latency.",
                &["route", "status"],
                &HTTP_BUCKETS,
            )?,
        )?;
        let delivery_attempts = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    name("message_delivery_attempts"),
                    "Deliveries of each message so far, observed on every delivery, by source (JetStream counts \
                     them; STAN does not).",
                )
                .buckets(vec![1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0]),
                &["source"],
            )?,
        )?;
        let broker_recovery = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    name("broker_recovery_seconds"),
                    "From losing a broker connection to the next message or answer from the broker, by source.",
                )
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]),
                &["source"],
            )?,
        )?;
        // Counted by the log layer that sees actix-http's events (`logs::MalformedRequests`), once per process.
        registry.register(Box::new(Sampled(vec![SampledMetric::labelled(
            "http_malformed_requests_total",
            MetricType::COUNTER,
            "Requests the HTTP server could not parse (400 or 431 before any route), in this process; the default \
             log filter leaves them out of the log.",
            HashMap::new(),
            || crate::telemetry::malformed_requests() as f64,
        )?])))?;
        Ok(Metrics {
            delivery_attempts,
            broker_recovery,
            orders_validated: counter(
                r,
                "orders_validated_total",
                "Messages that passed validation.",
            )?,
            // Every label value is created up front, so that a rate over it exists before the first event.
            orders_flagged: FlagRule::ALL
                .iter()
                .map(|rule| orders_flagged.with_label_values(&[rule.as_str()]))
                .collect(),
            orders_rejected: RejectClass::ALL
                .iter()
                .map(|class| orders_rejected.with_label_values(&[class.as_str()]))
                .collect(),
            orders_persisted: counter(r, "orders_persisted_total", "New orders committed.")?,
            orders_duplicate: counter(
                r,
                "orders_duplicate_total",
                "Orders that were stored before (redeliveries, re-publishes), acked without a write.",
            )?,
            commit_batch_messages: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        name("commit_batch_messages"),
                        "Messages per committed transaction.",
                    )
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 12)?),
                )?,
            )?,
            commit_batch_bytes: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        name("commit_batch_bytes"),
                        "Payload bytes (messages, documents, reasons) per transaction.",
                    )
                    .buckets(prometheus::exponential_buckets(1024.0, 4.0, 11)?),
                )?,
            )?,
            commit_duration: latency_histogram(
                r,
                "commit_duration_seconds",
                "Time of each committed transaction.",
            )?,
            commit_retries: counter(
                r,
                "commit_retries_total",
                "Transactions that failed and were tried again.",
            )?,
            commit_failures: counter(
                r,
                "commit_failures_total",
                "Transactions given up after their retries; their messages are not acknowledged.",
            )?,
            ack_duration: latency_histogram(
                r,
                "ack_duration_seconds",
                "From a delivery's arrival to its ack being sent.",
            )?,
            cache_entries: gauge(
                r,
                "cache_entries",
                "Orders in an HTTP worker's cache (the one that changed last; without a bound all hold the same).",
            )?,
            cache_bytes: gauge(
                r,
                "cache_bytes",
                "Bytes of order JSON in an HTTP worker's cache (shared with the other workers' caches).",
            )?,
            cache_hits: cache_lookups.with_label_values(&["hit"]),
            cache_misses: cache_lookups.with_label_values(&["miss"]),
            cache_negative_hits: counter(
                r,
                "cache_negative_hits_total",
                "Misses answered 404 from the negative cache (ids recently not found), without a query.",
            )?,
            cache_read_through_found: read_throughs.with_label_values(&["found"]),
            cache_read_through_not_found: read_throughs.with_label_values(&["not_found"]),
            cache_read_through_errors: read_throughs.with_label_values(&["error"]),
            cache_read_through_queries: counter(
                r,
                "cache_read_through_queries_total",
                "Queries reading missed ids from PostgreSQL; each reads a batch of coalesced misses.",
            )?,
            cache_evictions: counter(
                r,
                "cache_evictions_total",
                "Orders evicted from a worker's cache to stay within CACHE_MAX_BYTES.",
            )?,
            feed_orders: counter(
                r,
                "feed_orders_total",
                "Orders delivered by the change feed from PostgreSQL, whoever committed them.",
            )?,
            feed_lag: latency_histogram(
                r,
                "feed_lag_seconds",
                "From the start of an order's transaction to its delivery by the change feed \
                 (the oldest order of each delivered batch).",
            )?,
            feed_reconnects: counter(
                r,
                "feed_reconnects_total",
                "Change feed (LISTEN) connections replaced after a loss.",
            )?,
            feed_connected: gauge(
                r,
                "feed_connected",
                "1 while the change feed's LISTEN connection is up, else 0.",
            )?,
            cache_restore_duration: register(
                r,
                Gauge::with_opts(opts(
                    "cache_restore_duration_seconds",
                    "Time taken at start to load the stored orders from PostgreSQL.",
                ))?,
            )?,
            cache_restored_orders: gauge(
                r,
                "cache_restored_orders",
                "Orders loaded from PostgreSQL at start.",
            )?,
            http_request_duration,
            ready: gauge(
                r,
                "ready",
                "1 when the service is ready (cache restored, database reachable, subscribed), else 0.",
            )?,
            pipeline_stalled: gauge(
                r,
                "pipeline_stalled",
                "1 while deliveries wait and nothing has committed for STALL_AFTER seconds, else 0.",
            )?,
            messages_unstorable: gauge(
                r,
                "messages_unstorable",
                "Messages PostgreSQL refused even as dead letters; they stay unacknowledged.",
            )?,
            registry,
        })
    }

    /// The counter of one flag rule.
    pub fn flagged(&self, rule: FlagRule) -> &IntCounter {
        // `ALL` lists every rule, so the fallback is never taken.
        let index = FlagRule::ALL.iter().position(|r| *r == rule).unwrap_or(0);
        &self.orders_flagged[index]
    }

    /// The counter of one reject class.
    pub fn rejected(&self, class: RejectClass) -> &IntCounter {
        let index = RejectClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        &self.orders_rejected[index]
    }

    /// Exposes the subscriber's own counters and connection state.
    /// The delivery-attempts histogram of one source.
    pub fn delivery_attempts(&self, source: SourceKind) -> Histogram {
        self.delivery_attempts.with_label_values(&[source.as_str()])
    }

    /// The recovery-time histogram of one source.
    pub fn broker_recovery(&self, source: SourceKind) -> Histogram {
        self.broker_recovery.with_label_values(&[source.as_str()])
    }

    /// Exposes one source's link to its broker, read when scraped: `broker_server{source, server}` (1 for the server
    /// the connection is on now, no series while none), `broker_disconnected_seconds{source}` (0 while the link
    /// works), and for JetStream `stream_replicas{source}`.
    pub fn watch_link(
        &self,
        source: SourceKind,
        server: impl Fn() -> Option<String> + Send + Sync + 'static,
        down_for: impl Fn() -> Option<std::time::Duration> + Send + Sync + 'static,
        replicas: impl Fn() -> Option<usize> + Send + Sync + 'static,
    ) -> Result<(), prometheus::Error> {
        let labels = HashMap::from([("source".to_owned(), source.as_str().to_owned())]);
        let mut metrics = vec![SampledMetric::labelled(
            "broker_disconnected_seconds",
            MetricType::GAUGE,
            "Seconds the source has been without a working broker connection; 0 while it works.",
            labels.clone(),
            move || down_for().map_or(0.0, |down| down.as_secs_f64()),
        )?];
        if source == SourceKind::JetStream {
            metrics.push(SampledMetric::labelled(
                "stream_replicas",
                MetricType::GAUGE,
                "Replicas of the JetStream stream, as found at connect.",
                labels.clone(),
                move || replicas().map_or(0.0, |replicas| replicas as f64),
            )?);
        }
        self.registry.register(Box::new(Sampled(metrics)))?;
        self.registry.register(Box::new(ServerGauge {
            desc: Desc::new(
                name("broker_server"),
                "1 for the broker server (host:port) each source's connection is on now."
                    .to_owned(),
                vec!["server".to_owned()],
                labels,
            )?,
            read: Box::new(server),
        }))
    }

    /// Registers metrics read when scraped from state another part keeps (a subscriber's counters, the database
    /// pool), each series with `labels`: the owner of the state says what to read, so this registry knows no part
    /// above it.
    pub fn watch(
        &self,
        labels: &[(&str, &str)],
        readings: Vec<Reading>,
    ) -> Result<(), prometheus::Error> {
        let labels: HashMap<String, String> = labels
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let metrics = readings
            .into_iter()
            .map(|reading| {
                SampledMetric::labelled(
                    reading.name,
                    reading.kind,
                    reading.help,
                    labels.clone(),
                    reading.read,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.registry.register(Box::new(Sampled(metrics)))
    }

    /// The text exposition of every collector.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

fn name(base: &str) -> String {
    format!("order_service_{base}")
}

fn opts(base: &str, help: &str) -> Opts {
    Opts::new(name(base), help)
}

/// A histogram of seconds with the latency buckets, named `<base>` (prefixed as every metric is), registered.
fn latency_histogram(
    registry: &Registry,
    base: &str,
    help: &str,
) -> Result<Histogram, prometheus::Error> {
    register(
        registry,
        Histogram::with_opts(
            HistogramOpts::new(name(base), help).buckets(LATENCY_BUCKETS.to_vec()),
        )?,
    )
}

/// A counter named `<base>` (prefixed as every metric is), registered.
fn counter(registry: &Registry, base: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    register(registry, IntCounter::with_opts(opts(base, help))?)
}

/// A gauge named `<base>` (prefixed as every metric is), registered.
fn gauge(registry: &Registry, base: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    register(registry, IntGauge::with_opts(opts(base, help))?)
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// `broker_server{source, server}`: one series at 1 for the server a source is on, none while it is on none. A label
/// whose value changes is beyond `Sampled`, whose labels are fixed.
struct ServerGauge {
    desc: Desc,
    read: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

impl Collector for ServerGauge {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::GAUGE);
        if let Some(server) = (self.read)() {
            let mut label = proto::LabelPair::default();
            label.set_name("server".to_owned());
            label.set_value(server);
            let mut labels = self.desc.const_label_pairs.clone();
            labels.push(label);
            labels.sort_by(|a, b| a.name().cmp(b.name()));
            let mut gauge = proto::Gauge::default();
            gauge.set_value(1.0);
            let mut metric = proto::Metric::default();
            metric.set_label(labels);
            metric.set_gauge(gauge);
            family.set_metric(vec![metric]);
        }
        vec![family]
    }
}

/// One metric read when scraped: its name without the `order_service_` prefix, counter or gauge, its help, and
/// how to read its value.
pub struct Reading {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    pub read: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl Reading {
    pub fn counter(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Reading {
        Reading {
            name,
            kind: MetricType::COUNTER,
            help,
            read: Box::new(read),
        }
    }

    pub fn gauge(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Reading {
        Reading {
            name,
            kind: MetricType::GAUGE,
            help,
            read: Box::new(read),
        }
    }
}

/// Metrics whose values are read from state owned elsewhere each time they are scraped.
struct Sampled(Vec<SampledMetric>);

struct SampledMetric {
    desc: Desc,
    kind: MetricType,
    read: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl SampledMetric {
    /// With constant labels (the source of a subscriber's counters).
    fn labelled(
        base: &str,
        kind: MetricType,
        help: &str,
        labels: HashMap<String, String>,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Result<SampledMetric, prometheus::Error> {
        Ok(SampledMetric {
            desc: Desc::new(name(base), help.to_owned(), Vec::new(), labels)?,
            kind,
            read: Box::new(read),
        })
    }

    fn family(&self) -> MetricFamily {
        let value = (self.read)();
        let mut metric = proto::Metric::default();
        metric.set_label(self.desc.const_label_pairs.clone());
        if self.kind == MetricType::COUNTER {
            let mut counter = proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(self.kind);
        family.set_metric(vec![metric]);
        family
    }
}

impl Collector for Sampled {
    fn desc(&self) -> Vec<&Desc> {
        self.0.iter().map(|m| &m.desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.iter().map(SampledMetric::family).collect()
    }
}

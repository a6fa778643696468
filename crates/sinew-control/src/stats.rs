//! Golden metrics: each proxy's request counters (cumulative, reported
//! every 2 s on its stream) kept for a few minutes, and turned into request
//! rate, success rate and latency quantiles per service and per edge over a
//! window (`GET /v1/stats`, `sinew top`, the dashboard).
//!
//! ```text
//! Stats (per proxy, cumulative) ─ ring of (time, counters) per proxy, ≤ KEEP old
//! /v1/stats?window=W ─ per proxy: latest − the last report at or before now−W
//!   (a counter that went down = the proxy restarted: its latest counts whole)
//!   ─ services: inbound series summed by (namespace, service)
//!   ─ edges: outbound/ingress series summed by (namespace, from = the proxy's service, to)
//! ```
//!
//! A service's figures are its sidecars' inbound view (every caller,
//! meshed or not); an edge's are the callers' outbound view (their
//! timeouts, retries and connect failures included). Stats are in the
//! memory of the replica holding each proxy's stream: with several
//! replicas, each shows the proxies connected to it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sinew_proto::{Stats as Report, StatsSeries};

/// How long reports are kept: the longest window.
pub(crate) const KEEP: Duration = Duration::from_secs(600);
/// The least time a rate is divided by: the proxies' report interval. Two
/// reports can come moments apart (a proxy's session restarting, as when it
/// switches to its new certificate), and a handful of requests over a few
/// microseconds is no rate.
const MIN_RATE_SPAN: f64 = 2.0;

/// One proxy's reports.
#[derive(Debug)]
struct Proxy {
    namespace: String,
    service: String,
    /// Latency bucket upper bounds of its reports (ms).
    bounds_ms: Vec<f64>,
    /// What its outlier detection has ejected, as of its last report.
    ejections: Vec<sinew_proto::Ejection>,
    reports: VecDeque<(Instant, Vec<StatsSeries>)>,
}

/// Every proxy's reports, by `namespace/name`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    proxies: Mutex<HashMap<String, Proxy>>,
}

/// Counts summed over proxies for one service or edge.
#[derive(Debug, Default, Clone)]
struct Sum {
    by_class: [u64; 5],
    buckets: Vec<u64>,
    bounds_ms: Vec<f64>,
    instances: usize,
    /// Requests per second, summed over proxies (each over its own span:
    /// a proxy that started inside the window counts from its start).
    rps: f64,
}

impl Sum {
    fn add(&mut self, by_class: &[u64], buckets: &[u64], bounds_ms: &[f64], seconds: f64) {
        if seconds > 0.0 {
            self.rps += by_class.iter().sum::<u64>() as f64 / seconds;
        }
        for (a, b) in self.by_class.iter_mut().zip(by_class) {
            *a += b;
        }
        if self.buckets.len() < buckets.len() {
            self.buckets.resize(buckets.len(), 0);
            self.bounds_ms = bounds_ms.to_vec();
        }
        for (a, b) in self.buckets.iter_mut().zip(buckets) {
            *a += b;
        }
    }

    fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// The `q` quantile in ms: the upper bound of the bucket it falls in
    /// (the last finite bound for the +Inf bucket); `None` without requests.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return self.bounds_ms.get(i).or(self.bounds_ms.last()).copied();
            }
        }
        self.bounds_ms.last().copied()
    }

    fn json(&self) -> Value {
        let total = self.total();
        let failed = self.by_class[4];
        json!({
            "requests": total,
            "rps": round(self.rps, 2),
            "success_rate": (total > 0).then(|| round(1.0 - failed as f64 / total as f64, 4)),
            "p50_ms": self.quantile_ms(0.5),
            "p99_ms": self.quantile_ms(0.99),
            "by_class": {"1xx": self.by_class[0], "2xx": self.by_class[1], "3xx": self.by_class[2], "4xx": self.by_class[3], "5xx": self.by_class[4]},
        })
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Stats {
    /// Keeps `report` from proxy `id` (`namespace/name`) of `service`.
    pub(crate) fn record(&self, id: &str, namespace: &str, service: &str, report: Report) {
        let now = Instant::now();
        let mut proxies = self.proxies.lock().unwrap_or_else(PoisonError::into_inner);
        let proxy = proxies.entry(id.to_owned()).or_insert_with(|| Proxy {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            bounds_ms: Vec::new(),
            ejections: Vec::new(),
            reports: VecDeque::new(),
        });
        proxy.bounds_ms = report.bounds_ms;
        proxy.ejections = report.ejections;
        proxy.reports.push_back((now, report.series));
        while proxy
            .reports
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > KEEP)
        {
            proxy.reports.pop_front();
        }
        // Proxies gone for longer than KEEP.
        proxies.retain(|_, p| {
            p.reports
                .back()
                .is_some_and(|(t, _)| now.duration_since(*t) <= KEEP)
        });
    }

    /// Golden metrics over the last `window`: `{window_s, services, edges}`.
    pub(crate) fn summary(&self, window: Duration) -> Value {
        let now = Instant::now();
        let proxies = self.proxies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut services: BTreeMap<(String, String), Sum> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String, String), Sum> = BTreeMap::new();
        let mut publishes: BTreeMap<(String, String, String), Sum> = BTreeMap::new();
        let mut seconds: f64 = 0.0;
        // (namespace, service) → (address, subset) → the proxies ejecting it.
        let mut ejected: BTreeMap<(String, String), Ejected> = BTreeMap::new();
        for (id, proxy) in proxies.iter() {
            if proxy
                .reports
                .back()
                .is_some_and(|(t, _)| now.duration_since(*t) <= Duration::from_secs(10))
            {
                for e in &proxy.ejections {
                    ejected
                        .entry((proxy.namespace.clone(), e.service.clone()))
                        .or_default()
                        .entry((e.address.clone(), e.subset.clone()))
                        .or_default()
                        .push(id.clone());
                }
            }
        }
        for proxy in proxies.values() {
            let Some((latest_at, latest)) = proxy.reports.back() else {
                continue;
            };
            // A proxy silent for the whole window contributes nothing.
            if now.duration_since(*latest_at) > window + Duration::from_secs(5) {
                continue;
            }
            let base = proxy
                .reports
                .iter()
                .rev()
                .find(|(t, _)| now.duration_since(*t) >= window)
                .or(proxy.reports.front());
            let (base_at, base) = match base {
                Some((t, series)) if t < latest_at => (*t, Some(series)),
                _ => (*latest_at, None),
            };
            let span = latest_at.duration_since(base_at).as_secs_f64();
            seconds = seconds.max(span);
            let span = if span > 0.0 {
                span.max(MIN_RATE_SPAN)
            } else {
                0.0
            };
            let mut counted_inbound = false;
            for series in latest {
                let before = base.and_then(|b| {
                    b.iter()
                        .find(|s| s.direction == series.direction && s.service == series.service)
                });
                let (by_class, buckets) = delta(series, before);
                if by_class.iter().all(|n| *n == 0) {
                    continue;
                }
                match series.direction.as_str() {
                    "inbound" => {
                        let sum = services
                            .entry((proxy.namespace.clone(), proxy.service.clone()))
                            .or_default();
                        sum.add(&by_class, &buckets, &proxy.bounds_ms, span);
                        if !counted_inbound {
                            sum.instances += 1;
                            counted_inbound = true;
                        }
                    }
                    "publish" => {
                        publishes
                            .entry((
                                proxy.namespace.clone(),
                                proxy.service.clone(),
                                series.service.clone(),
                            ))
                            .or_default()
                            .add(&by_class, &[], &[], span);
                    }
                    "outbound" | "ingress" => {
                        edges
                            .entry((
                                proxy.namespace.clone(),
                                proxy.service.clone(),
                                series.service.clone(),
                            ))
                            .or_default()
                            .add(&by_class, &buckets, &proxy.bounds_ms, span);
                    }
                    _ => {}
                }
            }
        }
        let seconds = if seconds > 0.0 {
            seconds
        } else {
            window.as_secs_f64()
        };
        let services: Vec<Value> = services
            .iter()
            .map(|((namespace, service), sum)| {
                let mut v = sum.json();
                v["namespace"] = json!(namespace);
                v["service"] = json!(service);
                v["instances"] = json!(sum.instances);
                v["ejections"] = ejections(ejected.get(&(namespace.clone(), service.clone())));
                v
            })
            .collect();
        let edges: Vec<Value> = edges
            .iter()
            .map(|((namespace, from, to), sum)| {
                let mut v = sum.json();
                v["namespace"] = json!(namespace);
                v["from"] = json!(from);
                v["to"] = json!(to);
                v
            })
            .collect();
        let publishes: Vec<Value> = publishes
            .iter()
            .map(|((namespace, from, topic), sum)| {
                json!({
                    "namespace": namespace, "from": from, "topic": topic,
                    "events": sum.by_class[1], "rps": round(sum.rps, 2),
                    "refused": sum.by_class[3], "failed": sum.by_class[4],
                })
            })
            .collect();
        json!({
            "window_s": round(seconds, 1),
            "services": services,
            "edges": edges,
            "publishes": publishes,
        })
    }
}

/// One service's ejected endpoints: (address, subset) → the proxies ejecting it.
type Ejected = BTreeMap<(String, String), Vec<String>>;

/// A service's ejected endpoints: `[{address, subset, by: [proxy…]}]`.
fn ejections(of: Option<&Ejected>) -> Value {
    Value::Array(
        of.into_iter()
            .flatten()
            .map(|((address, subset), by)| {
                json!({
                    "address": address,
                    "subset": (!subset.is_empty()).then_some(subset),
                    "by": by,
                })
            })
            .collect(),
    )
}

/// `series` − `before` (the whole of `series` when a counter went down: the
/// proxy restarted in between).
fn delta(series: &StatsSeries, before: Option<&StatsSeries>) -> ([u64; 5], Vec<u64>) {
    let mut by_class = [0u64; 5];
    for (slot, n) in by_class.iter_mut().zip(&series.by_class) {
        *slot = *n;
    }
    let mut buckets = series.buckets.clone();
    let Some(before) = before else {
        return (by_class, buckets);
    };
    let went_down = series
        .by_class
        .iter()
        .zip(&before.by_class)
        .any(|(now, then)| now < then)
        || series
            .buckets
            .iter()
            .zip(&before.buckets)
            .any(|(now, then)| now < then);
    if went_down {
        return (by_class, buckets);
    }
    for (slot, then) in by_class.iter_mut().zip(&before.by_class) {
        *slot -= then;
    }
    for (slot, then) in buckets.iter_mut().zip(&before.buckets) {
        *slot -= then;
    }
    (by_class, buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(direction: &str, service: &str, ok: u64, failed: u64) -> StatsSeries {
        StatsSeries {
            direction: direction.into(),
            service: service.into(),
            by_class: vec![0, ok, 0, 0, failed],
            // All in the 1 ms bucket but one slow one in the 100 ms bucket.
            buckets: vec![0, ok + failed - 1, 1, 0],
        }
    }

    fn report(series: Vec<StatsSeries>) -> Report {
        Report {
            bounds_ms: vec![0.5, 1.0, 100.0],
            series,
            ejections: Vec::new(),
        }
    }

    #[test]
    fn services_and_edges_from_counter_differences() {
        let stats = Stats::default();
        stats.record(
            "default/web-1",
            "default",
            "web",
            report(vec![series("outbound", "catalog", 10, 0)]),
        );
        stats.record(
            "default/catalog-1",
            "default",
            "catalog",
            report(vec![series("inbound", "catalog", 10, 0)]),
        );
        std::thread::sleep(Duration::from_millis(20));
        stats.record(
            "default/web-1",
            "default",
            "web",
            report(vec![series("outbound", "catalog", 100, 10)]),
        );
        stats.record(
            "default/catalog-1",
            "default",
            "catalog",
            report(vec![series("inbound", "catalog", 100, 10)]),
        );
        let s = stats.summary(Duration::from_millis(10));
        let service = &s["services"][0];
        assert_eq!(service["service"], "catalog");
        assert_eq!(service["requests"], 100, "{s}");
        assert_eq!(service["success_rate"], 0.9);
        assert_eq!(service["instances"], 1);
        assert_eq!(service["p50_ms"], 1.0);
        let edge = &s["edges"][0];
        assert_eq!(
            (edge["from"].as_str(), edge["to"].as_str()),
            (Some("web"), Some("catalog"))
        );
        assert_eq!(edge["requests"], 100);
        assert_eq!(service["ejections"], json!([]));
        assert_eq!(s["publishes"], json!([]));

        // web's outlier detection ejects one catalog endpoint.
        let mut with_ejection = report(vec![series("outbound", "catalog", 100, 10)]);
        with_ejection.ejections.push(sinew_proto::Ejection {
            service: "catalog".into(),
            subset: String::new(),
            address: "10.0.0.9:8080".into(),
        });
        stats.record("default/web-1", "default", "web", with_ejection);
        let s = stats.summary(Duration::from_millis(10));
        assert_eq!(
            s["services"][0]["ejections"],
            json!([{"address": "10.0.0.9:8080", "subset": null, "by": ["default/web-1"]}])
        );
    }

    #[test]
    fn reports_moments_apart_give_a_sane_rate() {
        let stats = Stats::default();
        // A session's first report, then the next session's, microseconds
        // later, now with the service's first 5 requests.
        stats.record("default/shipping-1", "default", "shipping", report(vec![]));
        stats.record(
            "default/shipping-1",
            "default",
            "shipping",
            report(vec![series("inbound", "shipping", 5, 0)]),
        );
        let s = stats.summary(Duration::from_secs(30));
        let service = &s["services"][0];
        assert_eq!(service["requests"], 5, "{s}");
        let rps = service["rps"].as_f64().unwrap_or_default();
        assert!(rps <= 2.5, "5 requests since the last report: {rps}/s");
    }

    #[test]
    fn a_restarted_proxy_counts_from_zero() {
        let before = series("inbound", "a", 100, 0);
        let after = series("inbound", "a", 5, 0);
        let (by_class, _) = delta(&after, Some(&before));
        assert_eq!(by_class[1], 5);
    }

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let mut sum = Sum::default();
        sum.add(&[0, 100, 0, 0, 0], &[0, 99, 1, 0], &[0.5, 1.0, 100.0], 10.0);
        assert_eq!(sum.rps, 10.0);
        assert_eq!(sum.quantile_ms(0.5), Some(1.0));
        assert_eq!(sum.quantile_ms(0.999), Some(100.0));
        assert_eq!(Sum::default().quantile_ms(0.5), None);
    }
}

//! Prometheus text exposition (format 0.0.4) of the registry: families grouped, deterministic order.
//!
//! Families render in [`names::ALL`] order; series within a family in label
//! order. Status-class series appear once they have counted something;
//! everything else (histograms, connection gauges, error kinds, reload
//! results) renders even at zero. A family with no series is left out.

use super::exposition::{Float, Writer, NO_EXTRA};
use super::labels::{Direction, ProxyErrorKind, ReloadResult};
use super::metrics::Metrics;
use super::names::{self, LATENCY_BUCKETS};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    /// Appends the whole registry to `out` in Prometheus text format 0.0.4.
    pub fn render(&self, out: &mut String) {
        let mut w = Writer { out };
        self.render_requests(&mut w);
        self.render_connections(&mut w);
        self.render_services(&mut w);
        self.render_process(&mut w);
    }

    fn render_requests(&self, w: &mut Writer<'_>) {
        w.family(&names::REQUESTS_TOTAL, &self.requests, |w, def, l, m| {
            w.status_classes(def, l, &m.status);
        });
        w.family(
            &names::REQUEST_DURATION_SECONDS,
            &self.requests,
            |w, def, l, m| {
                let cumulative = m.latency.cumulative();
                for (bound, count) in LATENCY_BUCKETS.iter().zip(cumulative) {
                    let le = Float(bound.as_secs_f64());
                    w.line(def, "_bucket", l, Some(("le", le)), count);
                }
                let total = cumulative[LATENCY_BUCKETS.len()];
                w.line(def, "_bucket", l, Some(("le", "+Inf")), total);
                let sum = Float(m.latency.sum().as_secs_f64());
                w.line(def, "_sum", l, NO_EXTRA, sum);
                w.line(def, "_count", l, NO_EXTRA, total);
            },
        );
        w.family(
            &names::DIRECT_RESPONSES_TOTAL,
            &self.direct_responses,
            |w, def, l, m| {
                w.status_classes(def, l, &m.status);
            },
        );
        w.header(&names::PROXY_ERRORS_TOTAL);
        for kind in ProxyErrorKind::ALL {
            let value = self.proxy_error(kind).get();
            w.line(
                &names::PROXY_ERRORS_TOTAL,
                "",
                &[kind.as_str()],
                NO_EXTRA,
                value,
            );
        }
    }

    fn render_connections(&self, w: &mut Writer<'_>) {
        w.header(&names::OPEN_CONNECTIONS);
        for d in Direction::ALL {
            let value = self.connections(d).open_now();
            w.line(&names::OPEN_CONNECTIONS, "", &[d.as_str()], NO_EXTRA, value);
        }
        w.header(&names::CONNECTIONS_TOTAL);
        for d in Direction::ALL {
            let value = self.connections(d).total();
            w.line(
                &names::CONNECTIONS_TOTAL,
                "",
                &[d.as_str()],
                NO_EXTRA,
                value,
            );
        }
        w.family(
            &names::UPSTREAM_CONNECT_ERRORS_TOTAL,
            &self.upstreams,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.connect_errors.get());
            },
        );
        w.family(
            &names::UPSTREAM_CONNECTIONS_TOTAL,
            &self.upstreams,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.connects.get());
            },
        );
        w.family(
            &names::UPSTREAM_TLS_ERRORS_TOTAL,
            &self.upstreams,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.tls_errors.get());
            },
        );
        for (def, family) in [
            (&names::INBOUND_TLS_CONNECTIONS_TOTAL, &self.inbound_tls),
            (&names::INBOUND_TLS_REFUSED_TOTAL, &self.inbound_tls_refused),
            (&names::EVENTS_TOTAL, &self.events),
            (&names::EVENTS_PUBLISHED_TOTAL, &self.events_published),
        ] {
            w.family(def, family, |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.get());
            });
        }
        w.family(&names::EVENTS_LAG, &self.events_lag, |w, def, l, m| {
            w.line(def, "", l, NO_EXTRA, m.get());
        });
        w.family(&names::TCP_BYTES_TOTAL, &self.tcp, |w, def, l, m| {
            w.line(
                def,
                "",
                l,
                Some(("direction", "to_upstream")),
                m.to_upstream.get(),
            );
            w.line(
                def,
                "",
                l,
                Some(("direction", "to_downstream")),
                m.to_downstream.get(),
            );
        });
    }

    fn render_services(&self, w: &mut Writer<'_>) {
        let services = &self.services;
        w.family(&names::RETRIES_TOTAL, services, |w, def, l, m| {
            w.line(def, "", l, NO_EXTRA, m.retries.get());
        });
        w.family(
            &names::RETRY_BUDGET_EXHAUSTED_TOTAL,
            services,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.retry_budget_exhausted.get());
            },
        );
        w.family(
            &names::CIRCUIT_BREAKER_REJECTIONS_TOTAL,
            services,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.circuit_breaker_rejections.get());
            },
        );
        w.family(
            &names::RATE_LIMITED_TOTAL,
            &self.rate_limited,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.get());
            },
        );
        w.family(
            &names::AUTHZ_DENIED_TOTAL,
            &self.authz_denied,
            |w, def, l, m| {
                w.line(def, "", l, NO_EXTRA, m.get());
            },
        );
        w.family(&names::OUTLIER_EJECTIONS_TOTAL, services, |w, def, l, m| {
            w.line(def, "", l, NO_EXTRA, m.outlier_ejections.get());
        });
        w.family(&names::HEALTHY_ENDPOINTS, services, |w, def, l, m| {
            w.line(def, "", l, NO_EXTRA, m.healthy_endpoints.get());
        });
    }

    fn render_process(&self, w: &mut Writer<'_>) {
        let none: &[&str] = &[];
        w.header(&names::CONFIG_VERSION);
        w.line(
            &names::CONFIG_VERSION,
            "",
            none,
            NO_EXTRA,
            self.config_version.get(),
        );
        w.header(&names::CONFIG_RELOADS_TOTAL);
        for result in ReloadResult::ALL {
            let value = self.config_reloads(result);
            w.line(
                &names::CONFIG_RELOADS_TOTAL,
                "",
                &[result.as_str()],
                NO_EXTRA,
                value,
            );
        }
        let dropped = self.access_log_dropped.get();
        w.header(&names::ACCESS_LOG_DROPPED_TOTAL);
        w.line(
            &names::ACCESS_LOG_DROPPED_TOTAL,
            "",
            none,
            NO_EXTRA,
            dropped,
        );
        let start = Float(self.start_time.as_secs_f64());
        w.header(&names::START_TIME_SECONDS);
        w.line(&names::START_TIME_SECONDS, "", none, NO_EXTRA, start);
        w.header(&names::BUILD_INFO);
        w.line(&names::BUILD_INFO, "", &[self.version], NO_EXTRA, 1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::telemetry::RequestLabels;

    fn registry() -> Metrics {
        Metrics::with_start_time(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
    }

    fn rendered(m: &Metrics) -> String {
        let mut out = String::new();
        m.render(&mut out);
        out
    }

    const GOLDEN: &str = r#"# HELP sinew_requests_total HTTP requests completed by the proxy, by response status class.
# TYPE sinew_requests_total counter
sinew_requests_total{direction="inbound",service="web",route="",backend="web",status_class="2xx"} 1
sinew_requests_total{direction="inbound",service="web",route="",backend="web",status_class="5xx"} 1
# HELP sinew_request_duration_seconds Time from request received until the response completed (HTTP/1.1), or until its headers arrived (HTTP/2; upgrades: until the 101), in seconds.
# TYPE sinew_request_duration_seconds histogram
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.0001"} 0
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.0002"} 1
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.0005"} 1
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.001"} 1
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.002"} 1
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.005"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.01"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.02"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.05"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.1"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.2"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="0.5"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="1"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="2"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="5"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="10"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="20"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="30"} 2
sinew_request_duration_seconds_bucket{direction="inbound",service="web",route="",backend="web",le="+Inf"} 2
sinew_request_duration_seconds_sum{direction="inbound",service="web",route="",backend="web"} 0.00315
sinew_request_duration_seconds_count{direction="inbound",service="web",route="",backend="web"} 2
# HELP sinew_proxy_errors_total Requests that failed in the proxy, by reason.
# TYPE sinew_proxy_errors_total counter
sinew_proxy_errors_total{kind="bad_request"} 0
sinew_proxy_errors_total{kind="no_route"} 1
sinew_proxy_errors_total{kind="no_endpoint"} 0
sinew_proxy_errors_total{kind="forbidden"} 0
sinew_proxy_errors_total{kind="unauthorized"} 0
sinew_proxy_errors_total{kind="circuit_open"} 0
sinew_proxy_errors_total{kind="rate_limited"} 0
sinew_proxy_errors_total{kind="upstream_connect"} 0
sinew_proxy_errors_total{kind="upstream_timeout"} 0
sinew_proxy_errors_total{kind="upstream_error"} 0
sinew_proxy_errors_total{kind="downstream_closed"} 0
sinew_proxy_errors_total{kind="internal"} 0
# HELP sinew_open_connections Downstream connections currently open.
# TYPE sinew_open_connections gauge
sinew_open_connections{direction="inbound"} 1
sinew_open_connections{direction="outbound"} 0
sinew_open_connections{direction="tcp"} 0
sinew_open_connections{direction="ingress"} 0
# HELP sinew_connections_total Downstream connections accepted.
# TYPE sinew_connections_total counter
sinew_connections_total{direction="inbound"} 2
sinew_connections_total{direction="outbound"} 0
sinew_connections_total{direction="tcp"} 0
sinew_connections_total{direction="ingress"} 0
# HELP sinew_upstream_connect_errors_total Failed attempts to open a connection to an upstream endpoint.
# TYPE sinew_upstream_connect_errors_total counter
sinew_upstream_connect_errors_total{service="web",endpoint="127.0.0.1:8080"} 1
# HELP sinew_upstream_connections_total Connections successfully opened to an upstream endpoint.
# TYPE sinew_upstream_connections_total counter
sinew_upstream_connections_total{service="web",endpoint="127.0.0.1:8080"} 4
# HELP sinew_upstream_tls_errors_total mTLS handshakes with an upstream sidecar that failed (untrusted certificate, wrong SPIFFE ID, no shared protocol).
# TYPE sinew_upstream_tls_errors_total counter
sinew_upstream_tls_errors_total{service="web",endpoint="127.0.0.1:8080"} 0
# HELP sinew_config_version Version of the config snapshot the proxy is serving.
# TYPE sinew_config_version gauge
sinew_config_version 3
# HELP sinew_config_reloads_total Config updates received, by result (ok or rejected).
# TYPE sinew_config_reloads_total counter
sinew_config_reloads_total{result="ok"} 1
sinew_config_reloads_total{result="rejected"} 1
# HELP sinew_access_log_dropped_total Access log lines dropped because the log writer fell behind.
# TYPE sinew_access_log_dropped_total counter
sinew_access_log_dropped_total 0
# HELP sinew_start_time_seconds Start time of the proxy since the Unix epoch, in seconds.
# TYPE sinew_start_time_seconds gauge
sinew_start_time_seconds 1700000000.5
# HELP sinew_build_info Always 1; labelled with the proxy's version.
# TYPE sinew_build_info gauge
sinew_build_info{version="VERSION"} 1
"#;

    #[test]
    fn renders_the_exact_exposition_text() {
        let m = registry();
        let web = m.requests(&RequestLabels {
            direction: Direction::Inbound,
            service: "web",
            route: "",
            backend: "web",
        });
        web.record(200, Duration::from_micros(150));
        web.record(503, Duration::from_millis(3));
        let _open = m.connections(Direction::Inbound).open();
        drop(m.connections(Direction::Inbound).open());
        let upstream = m.upstream("web", "127.0.0.1:8080");
        upstream.connects.add(4);
        upstream.connect_errors.inc();
        m.proxy_error(ProxyErrorKind::NoRoute).inc();
        m.config_reloaded(ReloadResult::Ok, 3);
        m.config_reloaded(ReloadResult::Rejected, 4);

        let expected = GOLDEN.replace("VERSION", env!("CARGO_PKG_VERSION"));
        assert_eq!(rendered(&m), expected);
    }

    #[test]
    fn families_render_in_declared_order_each_once() {
        let m = registry();
        let labels = RequestLabels {
            direction: Direction::Outbound,
            service: "s",
            route: "r",
            backend: "b",
        };
        m.requests(&labels).record(200, Duration::ZERO);
        m.direct_responses("r").record(403);
        m.upstream("s", "e");
        m.tcp("s").to_downstream.add(9);
        m.service("s").retries.inc();
        m.rate_limited("route", "r.rules[0]").inc();
        m.authz_denied("s", "default/no-admin").inc();
        m.inbound_tls("spiffe://sinew.local/ns/default/svc/a").inc();
        m.inbound_tls_refused("plaintext").inc();
        m.events("delivered", "inventory-orders").inc();
        m.events_published("orders", "ok").inc();
        m.events_lag("inventory-orders", "3").set(7);
        let text = rendered(&m);
        assert!(text.contains(
            "sinew_events_total{subscription=\"inventory-orders\",outcome=\"delivered\"} 1\n"
        ));
        assert!(text.contains(
            "sinew_inbound_tls_connections_total{client_id=\"spiffe://sinew.local/ns/default/svc/a\"} 1\n"
        ));
        assert!(text.contains("sinew_inbound_tls_refused_total{reason=\"plaintext\"} 1\n"));
        assert!(text
            .contains("sinew_authz_denied_total{service=\"s\",policy=\"default/no-admin\"} 1\n"));
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let declared: Vec<&str> = names::ALL.iter().map(|d| d.name).collect();
        assert_eq!(types, declared);
        assert!(
            text.contains("sinew_tcp_bytes_total{service=\"s\",direction=\"to_downstream\"} 9\n")
        );
        assert!(text.contains("sinew_direct_responses_total{route=\"r\",status_class=\"4xx\"} 1\n"));
        assert!(text.contains("sinew_rate_limited_total{scope=\"route\",name=\"r.rules[0]\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = registry();
        m.upstream("we\"ird\\svc\nx", "é:1");
        let text = rendered(&m);
        let expected =
            r#"sinew_upstream_connections_total{service="we\"ird\\svc\nx",endpoint="é:1"} 0"#;
        assert!(text.lines().any(|l| l == expected), "{text}");
        // Every sample line stays on one line: 2 header lines + 1 sample.
        let lines = text
            .lines()
            .filter(|l| l.contains("sinew_upstream_connections_total"))
            .count();
        assert_eq!(lines, 3);
    }
}

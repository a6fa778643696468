//! Decoders for the pieces several kinds share: metadata, retries, backoff, rate limits, value matchers.

use super::check::{exactly_one, name, pattern, positive, positive_duration, status};
use super::node::{Node, Value};
use super::reader::{boolean, float, one_of, string, uint, Cx, D};
use crate::{
    Backoff, ErrorKind, Metadata, RateLimit, Retries, RetryBudget, RetryOn, ValueMatch,
    DEFAULT_NAMESPACE,
};

/// `metadata`.
pub(crate) fn metadata(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Metadata> {
    let mut m = cx.map(node, path)?;
    let n = m.req(cx, "name", name);
    let namespace = m.or(cx, "namespace", DEFAULT_NAMESPACE.to_owned(), name);
    let labels = m.or(cx, "labels", Default::default(), |cx, n, p| {
        cx.string_map(n, p)
    });
    m.finish(cx);
    Some(Metadata {
        name: n?,
        namespace: namespace?,
        labels: labels?,
    })
}

const RETRY_ON: &[(&str, RetryOn)] = &[
    ("connect-failure", RetryOn::ConnectFailure),
    ("refused-stream", RetryOn::RefusedStream),
    ("reset", RetryOn::Reset),
    ("gateway-error", RetryOn::GatewayError),
    ("5xx", RetryOn::ServerError),
    ("retriable-status-codes", RetryOn::RetriableStatusCodes),
    ("cancelled", RetryOn::Cancelled),
    ("deadline-exceeded", RetryOn::DeadlineExceeded),
    ("resource-exhausted", RetryOn::ResourceExhausted),
    ("unavailable", RetryOn::Unavailable),
];

/// `retries` (of a Service or a Route rule).
pub(crate) fn retries(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Retries> {
    let d = Retries::default();
    let mut m = cx.map(node, path)?;
    let attempts = m.or(cx, "attempts", d.attempts, uint);
    let on = m.or(cx, "on", d.on, |cx, n, p| {
        cx.list(n, p, |cx, n, p| one_of(cx, n, p, RETRY_ON))
    });
    let codes = m.or(cx, "retriable_status_codes", Vec::new(), |cx, n, p| {
        cx.list(n, p, status)
    });
    let per_try_timeout = m.opt(cx, "per_try_timeout", positive_duration);
    let backoff = m.or(cx, "backoff", d.backoff, |cx, n, p| {
        backoff(cx, n, p, Backoff::RETRY_DEFAULT)
    });
    let budget = m.or(cx, "budget", d.budget, retry_budget);
    let retry_non_idempotent = m.or(cx, "retry_non_idempotent", false, boolean);
    let max_body_bytes = m.or(cx, "max_body_bytes", d.max_body_bytes, |cx, n, p| {
        let v: u32 = uint(cx, n, p)?;
        if v > Retries::MAX_BODY_BYTES_LIMIT {
            let limit = Retries::MAX_BODY_BYTES_LIMIT;
            return cx.invalid(n, p, format!("{v} is above the limit of {limit} (16 MiB)"));
        }
        Some(v)
    });
    let honor_retry_after = m.or(cx, "honor_retry_after", true, boolean);
    let (on_node, codes_node) = (m.node_of("on"), m.node_of("retriable_status_codes"));
    let (on_path, codes_path) = (m.path_of("on"), m.path_of("retriable_status_codes"));
    m.finish(cx);
    let (on, codes) = (on?, codes?);
    let wants_codes = on.contains(&RetryOn::RetriableStatusCodes);
    if wants_codes && codes.is_empty() {
        return cx.invalid(
            on_node,
            &on_path,
            "`retriable-status-codes` needs a non-empty `retriable_status_codes` list",
        );
    }
    if !wants_codes && !codes.is_empty() {
        return cx.invalid(
            codes_node,
            &codes_path,
            "has no effect unless `on` includes `retriable-status-codes`",
        );
    }
    Some(Retries {
        attempts: attempts?,
        on,
        retriable_status_codes: codes,
        per_try_timeout: per_try_timeout?,
        backoff: backoff?,
        budget: budget?,
        retry_non_idempotent: retry_non_idempotent?,
        max_body_bytes: max_body_bytes?,
        honor_retry_after: honor_retry_after?,
    })
}

/// `backoff {base, max}` with per-use defaults.
pub(crate) fn backoff(cx: &mut Cx<'_>, node: &Node, path: &str, default: Backoff) -> D<Backoff> {
    let mut m = cx.map(node, path)?;
    let base = m.or(cx, "base", default.base, positive_duration);
    let max = m.or(cx, "max", default.max, positive_duration);
    m.finish(cx);
    let (base, max) = (base?, max?);
    if max < base {
        return cx.invalid(node, path, format!("max ({max}) is below base ({base})"));
    }
    Some(Backoff { base, max })
}

fn retry_budget(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<RetryBudget> {
    let d = RetryBudget::default();
    let mut m = cx.map(node, path)?;
    let ratio = m.or(cx, "ratio", d.ratio, |cx, n, p| {
        let v = float(cx, n, p)?;
        if !(0.0..=1.0).contains(&v) {
            return cx.invalid(n, p, format!("ratio {v} is outside 0.0..=1.0"));
        }
        Some(v)
    });
    let min_per_second = m.or(cx, "min_per_second", d.min_per_second, uint);
    m.finish(cx);
    Some(RetryBudget {
        ratio: ratio?,
        min_per_second: min_per_second?,
    })
}

/// `rate_limit {requests_per_second, burst}` (of a Service or a Route rule):
/// whole numbers from 1 to [`RateLimit::MAX_PER_SECOND`]; `burst` defaults
/// to `requests_per_second`.
pub(crate) fn rate_limit(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<RateLimit> {
    if !matches!(node.value, Value::Map(_)) {
        let msg = format!(
            "expected a map like `{{requests_per_second: 100, burst: 200}}`, found {}",
            node.describe()
        );
        cx.err(ErrorKind::InvalidType, node, path, msg);
        return None;
    }
    let mut m = cx.map(node, path)?;
    let requests_per_second = m.req(cx, "requests_per_second", per_second);
    let burst = m.opt(cx, "burst", per_second);
    m.finish(cx);
    let requests_per_second = requests_per_second?;
    Some(RateLimit {
        requests_per_second,
        burst: burst?.unwrap_or(requests_per_second),
    })
}

/// A count in 1..=[`RateLimit::MAX_PER_SECOND`].
fn per_second(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<u32> {
    let v: u32 = positive(cx, node, path)?;
    if v > RateLimit::MAX_PER_SECOND {
        let max = RateLimit::MAX_PER_SECOND;
        return cx.invalid(node, path, format!("{v} is above the limit of {max}"));
    }
    Some(v)
}

/// A header/query matcher: exactly one of `exact`, `prefix`, `regex`, `present`.
pub(crate) fn value_match(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<ValueMatch> {
    let mut m = cx.map(node, path)?;
    let exact = m.opt(cx, "exact", string);
    let prefix = m.opt(cx, "prefix", string);
    let regex = m.opt(cx, "regex", pattern);
    let present = m.opt(cx, "present", boolean);
    m.finish(cx);
    let options = vec![
        exact?.map(ValueMatch::Exact),
        prefix?.map(ValueMatch::Prefix),
        regex?.map(ValueMatch::Regex),
        present?.map(ValueMatch::Present),
    ];
    exactly_one(
        cx,
        node,
        path,
        &["exact", "prefix", "regex", "present"],
        options,
    )
}

//! Decoding and checking `Route.spec`.

use super::check::{
    any_key, exactly_one, header_key, header_name, host, method, name, pattern, percent,
    positive_duration, status, url_path,
};
use super::common::{rate_limit, retries, value_match};
use super::node::Node;
use super::reader::{string, uint, Cx, D};
use crate::Duration;
use crate::{
    Backend, DirectResponse, ErrorKind, Fault, FaultAbort, FaultDelay, HeaderOps, HeaderPolicy,
    JwksSource, JwtRule, Mirror, PathMatch, Rewrite, RouteAction, RouteMatch, RouteRule, RouteSpec,
};

/// `Route.spec`.
pub(crate) fn route_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<RouteSpec> {
    let mut m = cx.map(node, path)?;
    let hosts = m.req(cx, "hosts", |cx, n, p| {
        let hosts = cx.list(n, p, host)?;
        if hosts.is_empty() {
            return cx.invalid(n, p, "needs at least one host");
        }
        for (i, h) in hosts.iter().enumerate() {
            if hosts[..i].contains(h) {
                return cx.invalid(n, p, format!("host `{h}` is listed twice"));
            }
        }
        Some(hosts)
    });
    let rules = m.req(cx, "rules", |cx, n, p| {
        let rules = cx.list(n, p, rule)?;
        if rules.is_empty() {
            return cx.invalid(n, p, "needs at least one rule");
        }
        Some(rules)
    });
    let jwt = m.opt(cx, "jwt", jwt_rule);
    m.finish(cx);
    Some(RouteSpec {
        hosts: hosts?,
        rules: rules?,
        jwt: jwt?,
    })
}

/// `jwt: {issuers, audiences, jwks: {file} | {url, refresh}, leeway}`.
fn jwt_rule(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<JwtRule> {
    let mut m = cx.map(node, path)?;
    let strings = |cx: &mut Cx<'_>, n: &Node, p: &str| cx.list(n, p, super::reader::nonempty);
    let issuers = m.or(cx, "issuers", Vec::new(), strings);
    let audiences = m.or(cx, "audiences", Vec::new(), strings);
    let jwks = m.req(cx, "jwks", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let file = m.opt(cx, "file", super::reader::nonempty);
        let url = m.opt(cx, "url", |cx, n, p| {
            let s = super::reader::nonempty(cx, n, p)?;
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                return cx.invalid(n, p, format!("`{s}` is not an http:// or https:// URL"));
            }
            Some(s)
        });
        let refresh = m.or(cx, "refresh", Duration::from_secs(300), positive_duration);
        let url_node = m.node_of("url");
        m.finish(cx);
        match (file?, url?) {
            (Some(file), None) => Some(JwksSource::File(file.into())),
            (None, Some(url)) => Some(JwksSource::Url {
                url,
                refresh: refresh?,
            }),
            (Some(_), Some(_)) => cx.invalid(url_node, p, "give `file` or `url`, not both"),
            (None, None) => cx.invalid(n, p, "needs `file` or `url`"),
        }
    });
    let leeway = m.or(
        cx,
        "leeway",
        Duration::from_secs(60),
        super::reader::duration,
    );
    m.finish(cx);
    Some(JwtRule {
        issuers: issuers?,
        audiences: audiences?,
        jwks: jwks?,
        leeway: leeway?,
    })
}

fn rule(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<RouteRule> {
    let mut m = cx.map(node, path)?;
    let matches = m.or(cx, "match", Vec::new(), |cx, n, p| {
        cx.list(n, p, route_match)
    });
    let backends = m.opt(cx, "backends", backends);
    let direct = m.opt(cx, "direct_response", direct_response);
    let timeout = m.opt(cx, "timeout", positive_duration);
    let rewrite = m.opt(cx, "rewrite", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let prefix = m.req(cx, "prefix", url_path);
        m.finish(cx);
        Some(Rewrite { prefix: prefix? })
    });
    let headers = m.or(cx, "headers", HeaderPolicy::default(), header_policy);
    let fault = m.opt(cx, "fault", fault);
    let mirror = m.opt(cx, "mirror", mirror);
    let retries = m.opt(cx, "retries", retries);
    let fallback = m.opt(cx, "fallback", direct_response);
    let rate_limit = m.opt(cx, "rate_limit", rate_limit);
    let only_forwarding: Vec<String> = ["rewrite", "mirror", "retries", "fallback", "rate_limit"]
        .into_iter()
        .filter(|k| m.has(k))
        .map(|k| m.path_of(k))
        .collect();
    m.finish(cx);
    let options = vec![
        backends?.map(RouteAction::Backends),
        direct?.map(RouteAction::DirectResponse),
    ];
    let action = exactly_one(cx, node, path, &["backends", "direct_response"], options)?;
    if matches!(action, RouteAction::DirectResponse(_)) {
        if let Some(field) = only_forwarding.first() {
            return cx.invalid(
                node,
                field,
                "only applies to rules with `backends`, not `direct_response`",
            );
        }
    }
    Some(RouteRule {
        matches: matches?,
        action,
        timeout: timeout?,
        rewrite: rewrite?,
        headers: headers?,
        fault: fault?,
        mirror: mirror?,
        retries: retries?,
        fallback: fallback?,
        rate_limit: rate_limit?,
    })
}

fn route_match(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<RouteMatch> {
    let mut m = cx.map(node, path)?;
    let p = m.opt(cx, "path", path_match);
    let method = m.opt(cx, "method", method);
    let headers = m.or(cx, "headers", Default::default(), |cx, n, p| {
        cx.named_map(n, p, header_key, value_match)
    });
    let query = m.or(cx, "query", Default::default(), |cx, n, p| {
        cx.named_map(n, p, any_key, value_match)
    });
    m.finish(cx);
    Some(RouteMatch {
        path: p?,
        method: method?,
        headers: headers?,
        query: query?,
    })
}

fn path_match(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<PathMatch> {
    let mut m = cx.map(node, path)?;
    let exact = m.opt(cx, "exact", url_path);
    let prefix = m.opt(cx, "prefix", url_path);
    let regex = m.opt(cx, "regex", pattern);
    m.finish(cx);
    let options = vec![
        exact?.map(PathMatch::Exact),
        prefix?.map(PathMatch::Prefix),
        regex?.map(PathMatch::Regex),
    ];
    exactly_one(cx, node, path, &["exact", "prefix", "regex"], options)
}

fn backends(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Vec<Backend>> {
    let list = cx.list(node, path, |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let service = m.req(cx, "service", name);
        let subset = m.opt(cx, "subset", name);
        let weight = m.or(cx, "weight", 1, uint);
        let failover = m.or(cx, "failover", Vec::new(), |cx, n, p| cx.list(n, p, name));
        let (fo_node, fo_path) = (m.node_of("failover"), m.path_of("failover"));
        m.finish(cx);
        let (subset, failover) = (subset?, failover?);
        check_failover(cx, fo_node, &fo_path, subset.as_deref(), &failover)?;
        Some(Backend {
            service: service?,
            subset,
            weight: weight?,
            failover,
        })
    })?;
    if list.is_empty() {
        return cx.invalid(node, path, "needs at least one backend");
    }
    if list.iter().map(|b| u64::from(b.weight)).sum::<u64>() == 0 {
        return cx.invalid(
            node,
            path,
            "backend weights sum to 0; at least one weight must be above 0",
        );
    }
    Some(list)
}

/// `failover` needs a primary `subset` and names each other subset once.
fn check_failover(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    subset: Option<&str>,
    failover: &[String],
) -> D<()> {
    if failover.is_empty() {
        return Some(());
    }
    let Some(primary) = subset else {
        return cx.invalid(
            node,
            path,
            "needs a `subset` on the backend: failover goes from that subset to these, in order",
        );
    };
    let super::node::Value::Seq(items) = &node.value else {
        return Some(());
    };
    let mut ok = true;
    for (i, (s, n)) in failover.iter().zip(items).enumerate() {
        let msg = if s == primary {
            format!("`{s}` is the backend's own subset")
        } else if failover[..i].contains(s) {
            format!("`{s}` is listed twice")
        } else {
            continue;
        };
        cx.invalid::<()>(n, &super::reader::index(path, i), msg);
        ok = false;
    }
    ok.then_some(())
}

fn direct_response(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<DirectResponse> {
    let mut m = cx.map(node, path)?;
    let status = m.req(cx, "status", status);
    let body = m.opt(cx, "body", string);
    let headers = m.or(cx, "headers", Default::default(), |cx, n, p| {
        cx.named_map(n, p, header_key, string)
    });
    m.finish(cx);
    Some(DirectResponse {
        status: status?,
        body: body?,
        headers: headers?,
    })
}

fn header_policy(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<HeaderPolicy> {
    let mut m = cx.map(node, path)?;
    let request = m.or(cx, "request", HeaderOps::default(), header_ops);
    let response = m.or(cx, "response", HeaderOps::default(), header_ops);
    m.finish(cx);
    Some(HeaderPolicy {
        request: request?,
        response: response?,
    })
}

fn header_ops(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<HeaderOps> {
    let mut m = cx.map(node, path)?;
    let set = m.or(cx, "set", Default::default(), |cx, n, p| {
        cx.named_map(n, p, header_key, string)
    });
    let remove = m.or(cx, "remove", Vec::new(), |cx, n, p| {
        cx.list(n, p, header_name)
    });
    m.finish(cx);
    Some(HeaderOps {
        set: set?,
        remove: remove?,
    })
}

fn fault(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Fault> {
    let mut m = cx.map(node, path)?;
    let delay = m.opt(cx, "delay", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let fixed = m.req(cx, "fixed", positive_duration);
        let pct = m.or(cx, "percent", 100.0, percent);
        m.finish(cx);
        Some(FaultDelay {
            fixed: fixed?,
            percent: pct?,
        })
    });
    let abort = m.opt(cx, "abort", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let status = m.req(cx, "status", status);
        let pct = m.or(cx, "percent", 100.0, percent);
        m.finish(cx);
        Some(FaultAbort {
            status: status?,
            percent: pct?,
        })
    });
    m.finish(cx);
    let (delay, abort) = (delay?, abort?);
    if delay.is_none() && abort.is_none() {
        cx.err(
            ErrorKind::MissingField,
            node,
            path,
            "needs `delay`, `abort` or both",
        );
        return None;
    }
    Some(Fault { delay, abort })
}

fn mirror(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Mirror> {
    let mut m = cx.map(node, path)?;
    let service = m.req(cx, "service", name);
    let pct = m.or(cx, "percent", 100.0, percent);
    m.finish(cx);
    Some(Mirror {
        service: service?,
        percent: pct?,
    })
}

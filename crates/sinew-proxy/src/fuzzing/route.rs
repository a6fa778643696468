//! Fuzz target `route_matcher`: an arbitrary request routed through a fixed table.

use std::sync::LazyLock;

use sinew_model::{parse_str, Snapshot};

use crate::route::{
    normalize_host, normalize_path, split_target, Action, ClusterId, HeaderSource, RequestView,
    RouteTable, VirtualHost,
};

/// Exact, wildcard and implicit hosts; path, method, header, query and regex
/// matchers; rewrites.
const CONFIG: &str = r#"
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec:
  endpoints:
    - {address: 127.0.0.1:9081, labels: {version: v1}}
    - {address: 127.0.0.1:9082, labels: {version: v2}}
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: api}
spec:
  endpoints: [{address: 127.0.0.1:9090}]
---
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: ratings}
spec:
  endpoints: [{address: 127.0.0.1:9091}]
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews, reviews.example.com]
  rules:
    - match: [{headers: {x-canary: {exact: "1"}}}, {query: {canary: {present: true}}}]
      backends: [{service: reviews, subset: v2}]
    - match: [{path: {prefix: /internal}}]
      direct_response: {status: 403, body: "forbidden\n"}
    - match: [{path: {regex: "^/items/[0-9]+$"}, method: DELETE}]
      direct_response: {status: 405}
    - match: [{path: {exact: /robots.txt}, headers: {user-agent: {regex: "(?i)bot"}}}]
      direct_response: {status: 200, body: "no"}
    - match: [{path: {prefix: /v1/}}, {path: {exact: /legacy}}]
      rewrite: {prefix: /api/v1}
      backends:
        - {service: reviews, subset: v1, weight: 90}
        - {service: reviews, subset: v2, weight: 10}
    - backends: [{service: reviews, subset: v1}]
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {name: api}
spec:
  hosts: ["*.api.example.com", "*.example.com", api]
  rules:
    - match: [{query: {version: {prefix: "2"}}, headers: {x-debug: {present: false}}}]
      rewrite: {prefix: /}
      backends: [{service: api}]
    - match: [{path: {prefix: /static}, headers: {cookie: {regex: "session=[a-z]+"}}}]
      rewrite: {prefix: /assets/}
      backends: [{service: api}]
    - match: [{method: POST, query: {q: {exact: "a b"}}}]
      backends: [{service: api}]
"#;

static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
    let resources = parse_str("route_matcher.yaml", CONFIG).expect("the fixed config parses");
    let snapshot = Snapshot::build(resources, 1).expect("the fixed config is consistent");
    let mut next = 0;
    let mut cluster = |_: &str, _: Option<&str>| {
        next += 1;
        ClusterId(next)
    };
    RouteTable::build(&snapshot, &mut cluster)
});

/// Routes the request in `data` (`host \n method \n request-target \n
/// name:value \n …`) as the proxy does: split and normalize the target,
/// find the virtual host, take the first matching rule, rewrite the path.
///
/// Checks that the virtual host is the most specific one naming the host
/// (against a brute-force oracle) and ignores case, that the rule matches
/// and none before it does, that a backend picked is one of the rule's, and
/// that a rewritten path is still canonical.
pub fn route_matcher(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let (Some(host), Some(method), Some(target)) = (lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let headers: Vec<(&str, &str)> = lines
        .map(|line| line.split_once(':').unwrap_or((line, "")))
        .collect();
    let headers: &[(&str, &str)] = &headers;
    let (path, query) = split_target(target);
    let Ok(path) = normalize_path(path) else {
        return;
    };
    let req = RequestView {
        method,
        path: &path,
        query,
        headers: &headers as &dyn HeaderSource,
    };

    let table = &*TABLE;
    let vhost = table.virtual_host(host);
    assert!(same(vhost, expected_vhost(table, host)), "{host:?}");
    assert!(same(vhost, table.virtual_host(&host.to_ascii_uppercase())));
    let rule = vhost.and_then(|v| v.route(&req));
    let shorthand = table.route(host, &req);
    assert!(match (rule, shorthand) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (a, b) => a.is_none() && b.is_none(),
    });
    let (Some(vhost), Some(rule)) = (vhost, rule) else {
        return;
    };
    assert!(rule.matches(&req));
    for earlier in vhost.rules().iter().take_while(|r| !std::ptr::eq(*r, rule)) {
        assert!(
            !earlier.matches(&req),
            "rule {} matched before rule {}",
            earlier.index,
            rule.index
        );
    }
    if let Action::Forward(forward) = &rule.action {
        assert!(forward.backends().contains(forward.pick_backend()));
        if let Some(rewrite) = &forward.rewrite {
            let rewritten = rewrite.apply(&path);
            assert_eq!(
                normalize_path(&rewritten).as_deref(),
                Ok(&*rewritten),
                "{path:?} rewritten"
            );
        }
    }
}

fn same(a: Option<&VirtualHost>, b: Option<&VirtualHost>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// The virtual host a request for `authority` belongs to, by brute force:
/// an exact name, else the longest `*.suffix` with a non-empty label before
/// the suffix, else `*`.
fn expected_vhost<'t>(table: &'t RouteTable, authority: &str) -> Option<&'t VirtualHost> {
    let host = normalize_host(authority);
    let named = |name: &str| {
        table
            .virtual_hosts()
            .iter()
            .find(|v| v.names.iter().any(|n| &**n == name))
    };
    if !host.starts_with('*') {
        if let Some(v) = named(&host) {
            return Some(v);
        }
    }
    let wildcard = table
        .virtual_hosts()
        .iter()
        .flat_map(|v| v.names.iter().map(move |n| (v, n)))
        .filter_map(|(v, n)| {
            let suffix = n.strip_prefix("*.")?;
            let label = host.strip_suffix(suffix)?.strip_suffix('.')?;
            (!label.is_empty() && !label.ends_with('.')).then_some((suffix.len(), v))
        })
        .max_by_key(|(len, _)| *len);
    match wildcard {
        Some((_, v)) => Some(v),
        None => named("*"),
    }
}

//! Decoding and checking the smaller kinds: `Mesh`, `AuthorizationPolicy`, `Subscription`.

use super::check::{
    dns_name, header_key, method, name, positive, positive_duration, topic, url_path,
};
use super::common::{backoff, value_match};
use super::node::{Node, Value};
use super::reader::{nonempty, one_of, string, uint, Cx, D};
use crate::{
    AuthorizationPolicySpec, AuthzAction, AuthzFrom, AuthzRule, AuthzTarget, AuthzTo, AuthzWhen,
    Backoff, Deliver, MeshSpec, MtlsMode, Ordering, StartPosition, SubscriptionRetry,
    SubscriptionSpec, TopicOperation,
};

/// `Mesh.spec` (every field has a default).
pub(crate) fn mesh_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<MeshSpec> {
    let d = MeshSpec::default();
    let mut m = cx.map(node, path)?;
    let trust_domain = m.or(cx, "trust_domain", d.trust_domain, dns_name);
    let mtls = m.or(cx, "mtls", d.mtls, |cx, n, p| {
        let modes = [
            ("strict", MtlsMode::Strict),
            ("permissive", MtlsMode::Permissive),
            ("disabled", MtlsMode::Disabled),
        ];
        one_of(cx, n, p, &modes)
    });
    let cert_ttl = m.or(cx, "cert_ttl", d.cert_ttl, positive_duration);
    m.finish(cx);
    Some(MeshSpec {
        trust_domain: trust_domain?,
        mtls: mtls?,
        cert_ttl: cert_ttl?,
    })
}

/// `AuthorizationPolicy.spec`.
pub(crate) fn policy_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<AuthorizationPolicySpec> {
    let mut m = cx.map(node, path)?;
    let service = m.opt(cx, "target", name);
    let topic_name = m.opt(cx, "topic", topic);
    let topic_node = m.node_of("topic");
    let action = m.req(cx, "action", |cx, n, p| {
        one_of(
            cx,
            n,
            p,
            &[("allow", AuthzAction::Allow), ("deny", AuthzAction::Deny)],
        )
    });
    // Which conditions the rules may use depends on what is protected.
    let for_topic = matches!(topic_name, Some(Some(_)));
    let rules = m.req(cx, "rules", |cx, n, p| {
        let rules = cx.list(n, p, |cx, n, p| authz_rule(cx, n, p, for_topic))?;
        if rules.is_empty() {
            return cx.invalid(n, p, "needs at least one rule");
        }
        Some(rules)
    });
    m.finish(cx);
    let target = match (service?, topic_name?) {
        (Some(s), None) => AuthzTarget::Service(s),
        (None, Some(t)) => AuthzTarget::Topic(t),
        (Some(_), Some(_)) => {
            let at = format!("{path}.topic");
            return cx.invalid(
                topic_node,
                &at,
                "give `target` (a service) or `topic`, not both",
            );
        }
        (None, None) => return cx.invalid(node, path, "needs `target` (a service) or `topic`"),
    };
    Some(AuthorizationPolicySpec {
        target,
        action: action?,
        rules: rules?,
    })
}

/// Why a request condition is refused in a topic policy.
const NOT_FOR_TOPICS: &str =
    "does not apply to a topic policy: its rules use `from` and `to.operations` (publish, subscribe)";

fn authz_rule(cx: &mut Cx<'_>, node: &Node, path: &str, for_topic: bool) -> D<AuthzRule> {
    let mut m = cx.map(node, path)?;
    let from = m.or(cx, "from", AuthzFrom::default(), |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let identities = m.or(cx, "identities", Vec::new(), |cx, n, p| {
            cx.list(n, p, identity)
        });
        let namespaces = m.or(cx, "namespaces", Vec::new(), |cx, n, p| cx.list(n, p, name));
        m.finish(cx);
        Some(AuthzFrom {
            identities: identities?,
            namespaces: namespaces?,
        })
    });
    let to = m.or(cx, "to", AuthzTo::default(), |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let methods = m.or(cx, "methods", Vec::new(), |cx, n, p| {
            if for_topic {
                return cx.invalid(n, p, NOT_FOR_TOPICS);
            }
            cx.list(n, p, method)
        });
        let paths = m.or(cx, "paths", Vec::new(), |cx, n, p| {
            if for_topic {
                return cx.invalid(n, p, NOT_FOR_TOPICS);
            }
            cx.list(n, p, glob_path)
        });
        let operations = m.or(cx, "operations", Vec::new(), |cx, n, p| {
            if !for_topic {
                return cx.invalid(n, p, "`to.operations` applies to topic policies only");
            }
            cx.list(n, p, |cx, n, p| {
                one_of(
                    cx,
                    n,
                    p,
                    &[
                        ("publish", TopicOperation::Publish),
                        ("subscribe", TopicOperation::Subscribe),
                    ],
                )
            })
        });
        m.finish(cx);
        Some(AuthzTo {
            methods: methods?,
            paths: paths?,
            operations: operations?,
        })
    });
    let when = m.or(cx, "when", AuthzWhen::default(), |cx, n, p| {
        if for_topic {
            return cx.invalid(n, p, NOT_FOR_TOPICS);
        }
        let mut m = cx.map(n, p)?;
        let headers = m.or(cx, "headers", Default::default(), |cx, n, p| {
            cx.named_map(n, p, header_key, value_match)
        });
        m.finish(cx);
        Some(AuthzWhen { headers: headers? })
    });
    m.finish(cx);
    Some(AuthzRule {
        from: from?,
        to: to?,
        when: when?,
    })
}

/// `*` (any authenticated caller), or a SPIFFE ID, or one ending in `*` (a prefix).
fn identity(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    if s != "*" && (!s.starts_with("spiffe://") || star_inside(&s)) {
        return cx.invalid(node, path, format!("`{s}` is not `*` or a SPIFFE ID pattern like spiffe://sinew.local/ns/default/svc/web (a `*` may only end it)"));
    }
    Some(s)
}

/// An exact path, a prefix (`/a/*`), or a glob (`*` within a segment, `**` across).
fn glob_path(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = url_path(cx, node, path)?;
    if s.contains("***") {
        return cx.invalid(
            node,
            path,
            format!("`{s}`: use `*` (within a segment) or `**` (across segments)"),
        );
    }
    Some(s)
}

fn star_inside(s: &str) -> bool {
    s.trim_end_matches('*').contains('*') || s.ends_with("**")
}

/// `Subscription.spec`.
pub(crate) fn subscription_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<SubscriptionSpec> {
    let mut m = cx.map(node, path)?;
    let topic_path = m.path_of("topic");
    let topic_node = m.node_of("topic");
    let t = m.req(cx, "topic", topic);
    let service = m.req(cx, "service", name);
    let deliver = m.req(cx, "deliver", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let path = m.req(cx, "path", url_path);
        m.finish(cx);
        Some(Deliver { path: path? })
    });
    let ordering = m.or(cx, "ordering", Ordering::Key, |cx, n, p| {
        one_of(
            cx,
            n,
            p,
            &[("key", Ordering::Key), ("none", Ordering::None)],
        )
    });
    let max_in_flight = m.or(cx, "max_in_flight", 16, positive);
    let retry = m.or(cx, "retry", SubscriptionRetry::default(), |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let max_attempts = m.or(cx, "max_attempts", 8, positive);
        let b = m.or(cx, "backoff", Backoff::DELIVERY_DEFAULT, |cx, n, p| {
            backoff(cx, n, p, Backoff::DELIVERY_DEFAULT)
        });
        m.finish(cx);
        Some(SubscriptionRetry {
            max_attempts: max_attempts?,
            backoff: b?,
        })
    });
    let dead_letter = m.opt(cx, "dead_letter", topic);
    let start = m.or(cx, "start", StartPosition::Latest, start);
    let dl_path = m.path_of("dead_letter");
    let dl_node = m.node_of("dead_letter");
    m.finish(cx);
    let (t, dead_letter) = (t?, dead_letter?);
    if dead_letter.as_deref() == Some(t.as_str()) {
        return cx.invalid(dl_node, &dl_path, "must differ from `topic`");
    }
    // The default dead-letter topic must be a topic too, or the first event
    // to dead-letter would wait forever for a publish that cannot succeed.
    if dead_letter.is_none() && t.len() + crate::DLQ_SUFFIX.len() > crate::MAX_TOPIC_LEN {
        let (suffix, max) = (crate::DLQ_SUFFIX, crate::MAX_TOPIC_LEN);
        return cx.invalid(
            topic_node,
            &topic_path,
            format!(
                "with the default dead_letter `{t}{suffix}` this is over {max} characters: shorten it or name a `dead_letter`"
            ),
        );
    }
    Some(SubscriptionSpec {
        topic: t,
        service: service?,
        deliver: deliver?,
        ordering: ordering?,
        max_in_flight: max_in_flight?,
        retry: retry?,
        dead_letter,
        start: start?,
    })
}

fn start(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<StartPosition> {
    if let Value::Scalar { .. } = node.value {
        let words = [("earliest", 0u8), ("latest", 1)];
        return match one_of(cx, node, path, &words)? {
            0 => Some(StartPosition::Earliest),
            _ => Some(StartPosition::Latest),
        };
    }
    let mut m = cx.map(node, path)?;
    let offset = m.opt(cx, "offset", uint);
    let time = m.opt(cx, "time", rfc3339);
    m.finish(cx);
    let options = vec![
        offset?.map(StartPosition::Offset),
        time?.map(StartPosition::Time),
    ];
    super::check::exactly_one(cx, node, path, &["offset", "time"], options)
}

fn rfc3339(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = nonempty(cx, node, path)?;
    if !is_rfc3339(&s) {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not an RFC 3339 time like 2024-05-01T12:00:00Z"),
        );
    }
    Some(s)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` with fields in range.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(_), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return false;
    };
    let seps = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    let ranges = (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec <= 60;
    let mut rest = &s[19.min(s.len())..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    let zone = match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] if rest.len() == 6 => {
            let z = rest.as_bytes();
            z[3] == b':' && num_ok(&rest[1..3], 23) && num_ok(&rest[4..6], 59)
        }
        _ => false,
    };
    seps && ranges && zone
}

fn num_ok(s: &str, max: u32) -> bool {
    s.bytes().all(|c| c.is_ascii_digit()) && s.parse::<u32>().is_ok_and(|n| n <= max)
}

#[cfg(test)]
mod tests {
    use super::is_rfc3339;

    #[test]
    fn rfc3339_times() {
        assert!(is_rfc3339("2024-05-01T12:00:00Z"));
        assert!(is_rfc3339("2024-05-01T12:00:00.123+02:00"));
        assert!(!is_rfc3339("2024-05-01"));
        assert!(!is_rfc3339("2024-13-01T12:00:00Z"));
        assert!(!is_rfc3339("2024-05-01T12:00:00"));
        assert!(!is_rfc3339("2024-05-01T12:00:00+2:00"));
    }
}

//! The retry rules as a matrix of methods × outcomes × conditions.

use super::*;

fn policy(on: &[RetryOn], codes: &[u16], non_idempotent: bool) -> RetryPolicy {
    RetryPolicy::from_model(&Retries {
        on: on.to_vec(),
        retriable_status_codes: codes.to_vec(),
        retry_non_idempotent: non_idempotent,
        ..Retries::default()
    })
}

const METHODS: [(&str, bool); 9] = [
    ("GET", true),
    ("HEAD", true),
    ("OPTIONS", true),
    ("TRACE", true),
    ("PUT", true),
    ("DELETE", true),
    ("POST", false),
    ("PATCH", false),
    ("CONNECT", false),
];

const ALL_ON: [RetryOn; 10] = [
    RetryOn::ConnectFailure,
    RetryOn::RefusedStream,
    RetryOn::Reset,
    RetryOn::GatewayError,
    RetryOn::ServerError,
    RetryOn::RetriableStatusCodes,
    RetryOn::Cancelled,
    RetryOn::DeadlineExceeded,
    RetryOn::ResourceExhausted,
    RetryOn::Unavailable,
];

#[test]
fn idempotent_methods_per_rfc_9110() {
    for (method, idempotent) in METHODS {
        assert_eq!(is_idempotent(method), idempotent, "{method}");
    }
    assert!(!is_idempotent("get"), "methods are case-sensitive");
    assert!(!is_idempotent(""));
}

/// Which single condition makes each outcome retryable, and whether the
/// request was sent (so the method matters).
#[test]
fn each_outcome_needs_its_condition() {
    let cases: &[(Outcome, &[RetryOn], bool)] = &[
        (Outcome::ConnectFailed, &[RetryOn::ConnectFailure], false),
        (Outcome::RefusedStream, &[RetryOn::RefusedStream], false),
        (
            Outcome::Reset {
                request_sent: false,
            },
            &[RetryOn::ConnectFailure],
            false,
        ),
        (
            Outcome::Reset { request_sent: true },
            &[RetryOn::Reset],
            true,
        ),
        (
            Outcome::Timeout {
                request_sent: false,
            },
            &[RetryOn::ConnectFailure, RetryOn::GatewayError],
            false,
        ),
        (
            Outcome::Timeout { request_sent: true },
            &[RetryOn::GatewayError, RetryOn::ServerError],
            true,
        ),
        (
            Outcome::Status(502),
            &[RetryOn::GatewayError, RetryOn::ServerError],
            true,
        ),
        (
            Outcome::Status(503),
            &[RetryOn::GatewayError, RetryOn::ServerError],
            true,
        ),
        (
            Outcome::Status(504),
            &[RetryOn::GatewayError, RetryOn::ServerError],
            true,
        ),
        (
            Outcome::Status(500),
            &[RetryOn::ServerError, RetryOn::RetriableStatusCodes],
            true,
        ),
        (Outcome::Status(599), &[RetryOn::ServerError], true),
        (Outcome::Status(429), &[RetryOn::RetriableStatusCodes], true),
        (Outcome::Status(200), &[], true),
        (Outcome::Status(404), &[], true),
        (Outcome::GrpcStatus(1), &[RetryOn::Cancelled], true),
        (Outcome::GrpcStatus(4), &[RetryOn::DeadlineExceeded], true),
        (Outcome::GrpcStatus(8), &[RetryOn::ResourceExhausted], true),
        (Outcome::GrpcStatus(14), &[RetryOn::Unavailable], true),
        (Outcome::GrpcStatus(0), &[], true),
        (Outcome::GrpcStatus(13), &[], true),
        (Outcome::GrpcStatus(99), &[], true),
    ];
    let codes = [429, 500];
    for &(outcome, enabling, sent) in cases {
        for condition in ALL_ON {
            for non_idempotent in [false, true] {
                let policy = policy(&[condition], &codes, non_idempotent);
                for (method, idempotent) in METHODS {
                    let want =
                        enabling.contains(&condition) && (!sent || idempotent || non_idempotent);
                    assert_eq!(
                        policy.retryable(&outcome, is_idempotent(method)),
                        want,
                        "{outcome:?} on {condition:?} {method} non_idempotent={non_idempotent}"
                    );
                }
            }
        }
        // Everything on: exactly the sent-ness rule remains.
        let all = policy(&ALL_ON, &codes, false);
        let any = !enabling.is_empty();
        assert_eq!(all.retryable(&outcome, true), any, "{outcome:?}");
        assert_eq!(
            all.retryable(&outcome, false),
            any && !sent,
            "{outcome:?} POST"
        );
    }
}

#[test]
fn listed_status_codes_need_the_condition_and_a_listing() {
    let listed = policy(&[RetryOn::RetriableStatusCodes], &[409, 503], false);
    assert!(listed.retryable(&Outcome::Status(409), true));
    assert!(listed.retryable(&Outcome::Status(503), true));
    assert!(!listed.retryable(&Outcome::Status(502), true));
    assert!(!listed.retryable(&Outcome::Status(408), true));
    let unlisted = policy(&[RetryOn::GatewayError], &[409], false);
    assert!(!unlisted.retryable(&Outcome::Status(409), true));
    // Out-of-range codes are ignored, not a panic.
    let odd = policy(&[RetryOn::RetriableStatusCodes], &[700, u16::MAX], false);
    assert!(!odd.retryable(&Outcome::Status(700), true));
    assert!(!odd.retryable(&Outcome::Status(u16::MAX), true));
}

#[test]
fn default_policy_matches_the_model_defaults() {
    let policy = RetryPolicy::from_model(&Retries::default());
    assert_eq!(policy.attempts(), 1);
    assert!(!policy.allows_retry(0));
    assert!(policy.allows_retry(1));
    assert!(!policy.allows_retry(2));
    assert_eq!(policy.per_try_timeout(), None);
    assert!(!policy.retry_non_idempotent());
    assert!(policy.honor_retry_after());
    assert_eq!(policy.max_body_bytes(), 64 * 1024);
    // POST is retried on connect failure, not after it was sent.
    assert!(policy.retryable(&Outcome::ConnectFailed, is_idempotent("POST")));
    assert!(policy.retryable(&Outcome::RefusedStream, is_idempotent("POST")));
    assert!(!policy.retryable(&Outcome::Status(503), is_idempotent("POST")));
    assert!(policy.retryable(&Outcome::Status(503), is_idempotent("GET")));
    assert!(!policy.retryable(&Outcome::Status(500), is_idempotent("GET")));
    assert!(!policy.retryable(&Outcome::Reset { request_sent: true }, true));
    assert!(policy.retryable(&Outcome::Timeout { request_sent: true }, true));
}

#[test]
fn attempts_timeout_and_backoff_come_from_the_model() {
    let policy = RetryPolicy::from_model(&Retries {
        attempts: 3,
        per_try_timeout: Some(sinew_model::Duration::from_millis(300)),
        backoff: sinew_model::Backoff {
            base: sinew_model::Duration::from_millis(10),
            max: sinew_model::Duration::from_millis(40),
        },
        max_body_bytes: 1024,
        honor_retry_after: false,
        ..Retries::default()
    });
    assert!((1..=3).all(|n| policy.allows_retry(n)));
    assert!(!policy.allows_retry(4));
    assert_eq!(policy.per_try_timeout(), Some(Duration::from_millis(300)));
    assert_eq!(policy.max_body_bytes(), 1024);
    assert!(!policy.honor_retry_after());
    let mut rng = fastrand::Rng::with_seed(3);
    for retry in 1..=8 {
        let ceiling = Duration::from_millis((10u64 << (retry - 1).min(2)).min(40));
        assert!(policy.backoff(retry, &mut rng) <= ceiling, "retry {retry}");
    }
}

#[test]
fn attempts_zero_disables_retries() {
    let policy = RetryPolicy::from_model(&Retries {
        attempts: 0,
        ..Retries::default()
    });
    assert!(!policy.allows_retry(1));
}

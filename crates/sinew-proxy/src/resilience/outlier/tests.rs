//! Ejection, expiry, growing ejection times, decay and the max percent.

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn config(consecutive_errors: u32, max_ejection_percent: u32) -> OutlierConfig {
    OutlierConfig {
        consecutive_errors,
        consecutive_gateway_errors: None,
        consecutive_connect_errors: None,
        base_ejection: 30 * SEC,
        max_ejection_percent,
        interval: 10 * SEC,
    }
}

fn fail(detector: &OutlierDetector, index: usize, times: u32, now: Instant) {
    for _ in 0..times {
        detector.report(index, false, now);
    }
}

#[test]
fn ejects_on_the_threshold_and_returns_after_base_time() {
    let detector = OutlierDetector::new(4, config(3, 100));
    let t0 = Instant::now();
    fail(&detector, 2, 2, t0);
    assert!(!detector.is_ejected(2, t0), "two errors are not three");
    detector.report(2, false, t0);
    assert!(detector.is_ejected(2, t0));
    assert!(!detector.is_ejected(1, t0), "others unaffected");
    assert_eq!(detector.ejected_count(t0), 1);
    assert_eq!(detector.healthy_count(t0), 3);
    assert_eq!(detector.ejections(), 1);
    assert!(detector.is_ejected(2, t0 + 30 * SEC - Duration::from_millis(1)));
    assert!(!detector.is_ejected(2, t0 + 30 * SEC));
    assert_eq!(detector.ejected_count(t0 + 30 * SEC), 0);
}

#[test]
fn a_success_breaks_the_run() {
    let detector = OutlierDetector::new(2, config(3, 100));
    let t0 = Instant::now();
    fail(&detector, 0, 2, t0);
    detector.report(0, true, t0);
    fail(&detector, 0, 2, t0);
    assert!(!detector.is_ejected(0, t0));
    detector.report(0, false, t0);
    assert!(detector.is_ejected(0, t0));
}

#[test]
fn reports_while_ejected_are_ignored_and_the_run_restarts() {
    let detector = OutlierDetector::new(2, config(2, 100));
    let t0 = Instant::now();
    fail(&detector, 0, 2, t0);
    fail(&detector, 0, 10, t0 + SEC);
    assert_eq!(detector.ejections(), 1, "no re-ejection while ejected");
    let back = t0 + 30 * SEC;
    detector.report(0, false, back);
    assert!(
        !detector.is_ejected(0, back),
        "the run starts again after return"
    );
    detector.report(0, false, back);
    assert!(detector.is_ejected(0, back));
}

#[test]
fn ejection_time_grows_with_each_ejection_up_to_the_cap() {
    let detector = OutlierDetector::new(2, config(1, 100));
    let mut now = Instant::now();
    let mut lengths = Vec::new();
    for _ in 0..13 {
        detector.report(0, false, now);
        let mut length = Duration::ZERO;
        while detector.is_ejected(0, now + length) {
            length += SEC;
        }
        lengths.push(length.as_secs());
        now += length; // straight back in: no healthy interval to decay
    }
    assert_eq!(
        lengths,
        [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300, 300]
    );
    assert_eq!(detector.times_ejected(0, now), 13);
}

#[test]
fn base_longer_than_the_cap_is_kept() {
    let config = OutlierConfig {
        base_ejection: 400 * SEC,
        ..config(1, 100)
    };
    let detector = OutlierDetector::new(2, config);
    let t0 = Instant::now();
    detector.report(0, false, t0);
    assert!(detector.is_ejected(0, t0 + 399 * SEC));
    detector.report(0, false, t0 + 400 * SEC);
    assert!(
        detector.is_ejected(0, t0 + 799 * SEC),
        "capped at base, not 300 s"
    );
    assert!(!detector.is_ejected(0, t0 + 800 * SEC));
}

#[test]
fn ejection_count_decays_one_per_healthy_interval() {
    let detector = OutlierDetector::new(2, config(1, 100));
    let t0 = Instant::now();
    detector.report(0, false, t0); // 30 s
    detector.report(0, false, t0 + 30 * SEC); // 60 s, until 90 s
    assert_eq!(detector.times_ejected(0, t0 + 90 * SEC), 2);
    assert_eq!(detector.times_ejected(0, t0 + 99 * SEC), 2);
    assert_eq!(detector.times_ejected(0, t0 + 100 * SEC), 1);
    // Ejected again after one healthy interval: 2 × base, not 3 ×.
    let t = t0 + 105 * SEC;
    detector.report(0, false, t);
    assert!(detector.is_ejected(0, t + 59 * SEC));
    assert!(!detector.is_ejected(0, t + 60 * SEC));
    // Long healthy: back to the base time.
    let t = t + 60 * SEC + 3600 * SEC;
    assert_eq!(detector.times_ejected(0, t), 0);
    detector.report(0, false, t);
    assert!(!detector.is_ejected(0, t + 30 * SEC));
}

#[test]
fn max_percent_rounds_down_and_refuses_the_excess() {
    let detector = OutlierDetector::new(5, config(1, 50));
    let t0 = Instant::now();
    for i in 0..5 {
        detector.report(i, false, t0);
    }
    assert_eq!(detector.ejected_count(t0), 2, "50 % of 5 rounds down to 2");
    assert_eq!(detector.ejections(), 2);
    assert_eq!(detector.refused_ejections(), 3);
    assert!(!detector.is_ejected(4, t0));
    // Once one returns, the next error on a refused endpoint ejects it.
    let later = t0 + 30 * SEC;
    detector.report(4, false, later);
    assert!(detector.is_ejected(4, later));
}

#[test]
fn one_may_always_be_ejected_from_two_or_more() {
    let t0 = Instant::now();
    let three = OutlierDetector::new(3, config(1, 10));
    three.report(0, false, t0);
    three.report(1, false, t0);
    assert_eq!(
        three.ejected_count(t0),
        1,
        "10 % of 3 rounds to 0, but one is allowed"
    );
    let single = OutlierDetector::new(1, config(1, 50));
    single.report(0, false, t0);
    assert!(!single.is_ejected(0, t0), "a lone endpoint needs 100 %");
    let single_full = OutlierDetector::new(1, config(1, 100));
    single_full.report(0, false, t0);
    assert!(single_full.is_ejected(0, t0));
    let none = OutlierDetector::new(4, config(1, 0));
    none.report(0, false, t0);
    assert_eq!(none.ejected_count(t0), 0, "0 % ejects nothing");
    assert_eq!(none.refused_ejections(), 1);
}

#[test]
fn clear_returns_an_endpoint_at_once() {
    let detector = OutlierDetector::new(2, config(1, 100));
    let t0 = Instant::now();
    detector.report(1, false, t0);
    detector.clear(1, t0 + SEC);
    assert!(!detector.is_ejected(1, t0 + SEC));
    assert_eq!(detector.times_ejected(1, t0 + SEC), 1);
    assert_eq!(
        detector.times_ejected(1, t0 + 11 * SEC),
        0,
        "decay starts at clear"
    );
}

#[test]
fn out_of_range_indices_are_ignored() {
    let detector = OutlierDetector::new(1, config(1, 100));
    let t0 = Instant::now();
    detector.report(5, false, t0);
    detector.clear(5, t0);
    assert!(!detector.is_ejected(5, t0));
    assert_eq!(detector.times_ejected(5, t0), 0);
    assert_eq!(detector.len(), 1);
    assert!(OutlierDetector::new(0, config(1, 100)).is_empty());
}

#[test]
fn config_from_model() {
    let config = OutlierConfig::default();
    assert_eq!(config.consecutive_errors, 5);
    assert_eq!(config.consecutive_gateway_errors, None);
    assert_eq!(config.consecutive_connect_errors, None);
    assert_eq!(config.base_ejection, 30 * SEC);
    assert_eq!(config.max_ejection_percent, 50);
    assert_eq!(config.interval, 10 * SEC);
}

#[test]
fn concurrent_errors_eject_within_the_percent() {
    let detector = std::sync::Arc::new(OutlierDetector::new(4, config(3, 50)));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let detector = std::sync::Arc::clone(&detector);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    for i in 0..4 {
                        detector.report(i, false, t0);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    assert_eq!(detector.ejected_count(t0), 2);
    assert_eq!(detector.ejections(), 2);
}

#[test]
fn gateway_and_connect_runs_have_their_own_thresholds() {
    let config = OutlierConfig {
        consecutive_gateway_errors: Some(3),
        consecutive_connect_errors: Some(2),
        ..config(10, 100)
    };
    let detector = OutlierDetector::new(4, config);
    let t0 = Instant::now();
    // Gateway errors: three in a row eject, well before ten errors.
    for failure in [Failure::Gateway, Failure::Connect, Failure::Gateway] {
        assert!(!detector.is_ejected(0, t0));
        detector.report_failure(0, failure, t0);
    }
    assert!(detector.is_ejected(0, t0));
    // A plain 5xx ends the gateway run but not the error run.
    detector.report_failure(1, Failure::Gateway, t0);
    detector.report_failure(1, Failure::Gateway, t0);
    detector.report_failure(1, Failure::Server, t0);
    detector.report_failure(1, Failure::Gateway, t0);
    assert!(!detector.is_ejected(1, t0));
    // Connect failures: two in a row.
    detector.report_failure(2, Failure::Connect, t0);
    detector.report_failure(2, Failure::Server, t0);
    detector.report_failure(2, Failure::Connect, t0);
    assert!(
        !detector.is_ejected(2, t0),
        "another error ends the connect run"
    );
    detector.report_failure(2, Failure::Connect, t0);
    assert!(detector.is_ejected(2, t0));
    // All errors still count toward consecutive_errors.
    for _ in 0..9 {
        detector.report_failure(3, Failure::Server, t0);
    }
    assert!(!detector.is_ejected(3, t0));
    detector.report_failure(3, Failure::Gateway, t0);
    assert!(detector.is_ejected(3, t0));
}

#[test]
fn a_success_ends_every_run() {
    let config = OutlierConfig {
        consecutive_gateway_errors: Some(2),
        consecutive_connect_errors: Some(2),
        ..config(2, 100)
    };
    let detector = OutlierDetector::new(2, config);
    let t0 = Instant::now();
    detector.report_failure(0, Failure::Connect, t0);
    detector.report(0, true, t0);
    detector.report_failure(0, Failure::Connect, t0);
    assert!(!detector.is_ejected(0, t0));
}

//! Exponential backoff with full jitter, and `Retry-After` parsing.
//!
//! Retry `n` (1-based) waits a uniformly random time in
//! `[0, min(max, base · 2^(n-1))]` ("full jitter", as in the AWS
//! architecture blog's comparison): retries of many clients spread over the
//! whole interval instead of arriving together.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest `Retry-After` a retry waits for; a longer one is passed to
/// the client instead.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(5);

/// The largest wait retry `attempt` (1-based; 0 counts as 1) may draw:
/// `min(max, base · 2^(attempt-1))`, without overflow.
///
/// ```
/// use std::time::Duration;
/// use sinew_proxy::resilience::ceiling;
/// let (base, max) = (Duration::from_millis(25), Duration::from_millis(250));
/// assert_eq!(ceiling(1, base, max), Duration::from_millis(25));
/// assert_eq!(ceiling(3, base, max), Duration::from_millis(100));
/// assert_eq!(ceiling(40, base, max), max);
/// ```
#[must_use]
pub fn ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1);
    2u32.checked_pow(exponent)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(max, |d| d.min(max))
}

/// The wait before retry `attempt` (1-based): uniform in
/// `[0, `[`ceiling`]`(attempt, base, max)]`, drawn from `rng`.
///
/// ```
/// use std::time::Duration;
/// use sinew_proxy::resilience::delay;
/// let mut rng = fastrand::Rng::with_seed(7);
/// let d = delay(2, Duration::from_millis(25), Duration::from_millis(250), &mut rng);
/// assert!(d <= Duration::from_millis(50));
/// ```
pub fn delay(attempt: u32, base: Duration, max: Duration, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = super::duration_nanos(ceiling(attempt, base, max));
    Duration::from_nanos(rng.u64(0..=ceiling))
}

/// The value a too-large delta-seconds is taken as (RFC 9111 §1.2.2: 2³¹).
const DELTA_SECONDS_CAP: u64 = 1 << 31;

/// How long a `Retry-After` header value (RFC 9110 §10.2.3) asks to wait,
/// as of `now`.
///
/// Accepts delta-seconds (`120`; values past 2³¹ count as 2³¹) and the
/// preferred HTTP-date form, IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`);
/// a date in the past means "now" (`Some(Duration::ZERO)`). The obsolete
/// RFC 850 and asctime date forms and anything malformed give `None`.
/// Surrounding spaces and tabs are ignored.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use sinew_proxy::resilience::retry_after;
/// assert_eq!(retry_after(b"3", SystemTime::now()), Some(Duration::from_secs(3)));
/// assert_eq!(retry_after(b"soon", SystemTime::now()), None);
/// ```
#[must_use]
pub fn retry_after(header: &[u8], now: SystemTime) -> Option<Duration> {
    let value = trim(header);
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        let seconds = value
            .iter()
            .try_fold(0u64, |n, &b| {
                n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .map_or(DELTA_SECONDS_CAP, |n| n.min(DELTA_SECONDS_CAP));
        return Some(Duration::from_secs(seconds));
    }
    let at = imf_fixdate(value)?;
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i128::from(since.as_secs()),
        Err(before) => -i128::from(before.duration().as_secs()),
    };
    let wait = u64::try_from(i128::from(at) - now).unwrap_or(0);
    Some(Duration::from_secs(wait))
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

const DAY_NAMES: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Seconds since the Unix epoch of an IMF-fixdate such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`; the day name must name a weekday but is
/// not checked against the date.
fn imf_fixdate(s: &[u8]) -> Option<i64> {
    if s.len() != 29
        || s[3] != b','
        || s[4] != b' '
        || s[7] != b' '
        || s[11] != b' '
        || s[16] != b' '
        || s[19] != b':'
        || s[22] != b':'
        || s[25] != b' '
        || &s[26..] != b"GMT"
    {
        return None;
    }
    if !DAY_NAMES.iter().any(|name| &s[0..3] == name.as_slice()) {
        return None;
    }
    let month = MONTHS.iter().position(|m| &s[8..11] == m.as_slice())? + 1;
    let day = digits(&s[5..7])?;
    let year = digits(&s[12..16])?;
    let (hour, minute, second) = (
        digits(&s[17..19])?,
        digits(&s[20..22])?,
        digits(&s[23..25])?,
    );
    let month = u32::try_from(month).ok()?;
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

/// The decimal value of `s`, which must be all ASCII digits.
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_from_base_up_to_max() {
        let (base, max) = (25 * MS, 250 * MS);
        let ceilings: Vec<_> = (0..7).map(|n| ceiling(n, base, max)).collect();
        assert_eq!(
            ceilings,
            [
                25 * MS,
                25 * MS,
                50 * MS,
                100 * MS,
                200 * MS,
                250 * MS,
                250 * MS
            ]
        );
        assert_eq!(ceiling(u32::MAX, base, max), max);
        assert_eq!(ceiling(33, Duration::MAX, Duration::MAX), Duration::MAX);
        assert_eq!(ceiling(1, base, 10 * MS), 10 * MS, "max wins over base");
    }

    #[test]
    fn delay_is_full_jitter_within_ceiling() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let (base, max) = (25 * MS, 250 * MS);
        for attempt in 1..=6 {
            let top = ceiling(attempt, base, max);
            let samples: Vec<_> = (0..4000)
                .map(|_| delay(attempt, base, max, &mut rng))
                .collect();
            assert!(samples.iter().all(|&d| d <= top), "attempt {attempt}");
            let (low, high) = (top / 10, top - top / 10);
            assert!(samples.iter().any(|&d| d < low), "reaches the bottom");
            assert!(samples.iter().any(|&d| d > high), "reaches the top");
            let mean = samples.iter().sum::<Duration>() / 4000;
            let half = top / 2;
            assert!(
                mean > half - top / 20 && mean < half + top / 20,
                "uniform: mean {mean:?} near {half:?}"
            );
        }
    }

    #[test]
    fn delay_of_zero_base_is_zero() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(delay(3, Duration::ZERO, 250 * MS, &mut rng), Duration::ZERO);
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = at(1_000_000);
        assert_eq!(retry_after(b"120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(b"0", now), Some(Duration::ZERO));
        assert_eq!(retry_after(b" \t7 ", now), Some(Duration::from_secs(7)));
        let cap = Some(Duration::from_secs(1 << 31));
        assert_eq!(retry_after(b"99999999999999999999999", now), cap);
        assert_eq!(retry_after(b"4294967296", now), cap);
        for bad in [
            &b""[..],
            b"  ",
            b"-1",
            b"+5",
            b"1.5",
            b"12 s",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_imf_fixdate() {
        // 1994-11-06T08:49:37Z = 784111777 (RFC 9110's example date).
        let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(imf_fixdate(date), Some(784_111_777));
        assert_eq!(
            retry_after(date, at(784_111_657)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(date, at(784_111_777)), Some(Duration::ZERO));
        assert_eq!(
            retry_after(date, at(900_000_000)),
            Some(Duration::ZERO),
            "past"
        );
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            retry_after(b"Thu, 01 Jan 1970 00:00:05 GMT", before_epoch),
            Some(Duration::from_secs(15))
        );
        // Leap day, and the end of a leap year.
        assert_eq!(
            imf_fixdate(b"Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(
            imf_fixdate(b"Tue, 31 Dec 2024 23:59:59 GMT"),
            Some(1_735_689_599)
        );
        assert_eq!(
            imf_fixdate(b"Wed, 01 Mar 2000 00:00:00 GMT"),
            Some(951_868_800)
        );
    }

    #[test]
    fn retry_after_refuses_other_date_forms_and_bad_dates() {
        let now = at(0);
        for bad in [
            &b"Sunday, 06-Nov-94 08:49:37 GMT"[..], // RFC 850
            b"Sun Nov  6 08:49:37 1994",            // asctime
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Xyz, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Wed, 29 Feb 2023 00:00:00 GMT",
            b"Sat, 29 Feb 1900 00:00:00 GMT",
            b"Sun, 31 Apr 1994 00:00:00 GMT",
            b"Sun, 00 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:00:00 GMT",
            b"Sun, 06 Nov 1994 08:60:00 GMT",
            b"Sun, 06 Nov 19a4 08:49:37 GMT",
        ] {
            assert_eq!(
                retry_after(bad, now),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let padded = b" Sun, 06 Nov 1994 08:49:37 GMT\t";
        assert_eq!(
            retry_after(padded, now),
            Some(Duration::from_secs(784_111_777))
        );
    }
}

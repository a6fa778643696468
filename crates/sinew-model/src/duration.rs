//! `Duration`: a std duration written with units (`250ms`, `1m30s`), never a bare number.

use std::fmt;
use std::str::FromStr;

/// A span of time as written in resources: digits followed by a unit
/// (`ns`, `us`, `ms`, `s`, `m`, `h`), possibly compound (`1m30s`).
///
/// ```
/// use sinew_model::Duration;
/// let d: Duration = "1m30s".parse().unwrap();
/// assert_eq!(d.as_std(), std::time::Duration::from_secs(90));
/// assert_eq!(d.to_string(), "1m30s");
/// assert!("5".parse::<Duration>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// The string was empty.
    Empty,
    /// A number without a unit, such as `5`.
    MissingUnit,
    /// A unit that is not one of `ns`, `us`, `ms`, `s`, `m`, `h`.
    UnknownUnit,
    /// Something other than digits where a number was expected.
    Malformed,
    /// The value does not fit in a duration.
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "duration is empty (e.g. 5s)",
            Self::MissingUnit => "duration needs a unit (e.g. 5s)",
            Self::UnknownUnit => "unknown duration unit; use ns, us, ms, s, m or h (e.g. 5s)",
            Self::Malformed => "invalid duration; expected digits and a unit, like 250ms or 1m30s",
            Self::Overflow => "duration is too large",
        })
    }
}

impl std::error::Error for DurationError {}

impl Duration {
    /// Builds a duration from whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// Builds a duration from whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    /// The wrapped std duration.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(DurationError::Malformed);
            }
            let value: u128 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::Overflow)?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| !c.is_alphabetic())
                .unwrap_or(rest.len());
            let unit = match (&rest[..unit_len], unit_len) {
                (_, 0) if rest.is_empty() => return Err(DurationError::MissingUnit),
                (_, 0) => return Err(DurationError::Malformed),
                ("µs", _) => "us",
                (u, _) => u,
            };
            let nanos = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, n)| *n)
                .ok_or(DurationError::UnknownUnit)?;
            total = value
                .checked_mul(nanos)
                .and_then(|v| total.checked_add(v))
                .ok_or(DurationError::Overflow)?;
            rest = &rest[unit_len..];
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
        // The remainder is below 1e9, so it always fits in a u32.
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Self(std::time::Duration::new(secs, nanos)))
    }
}

impl fmt::Display for Duration {
    /// Canonical form: largest units first, zero parts omitted (`1m30s`, `250ms`, `0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.0.as_nanos();
        if left == 0 {
            return f.write_str("0s");
        }
        for (name, nanos) in UNITS {
            let n = left / nanos;
            if n > 0 {
                write!(f, "{n}{name}")?;
                left -= n * nanos;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<std::time::Duration, DurationError> {
        s.parse::<Duration>().map(Duration::as_std)
    }

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(d("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(d("1m30s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(d("2h"), Ok(std::time::Duration::from_secs(7200)));
        assert_eq!(d("10us"), Ok(std::time::Duration::from_micros(10)));
        assert_eq!(d("10µs"), Ok(std::time::Duration::from_micros(10)));
        assert_eq!(d("7ns"), Ok(std::time::Duration::from_nanos(7)));
        assert_eq!(d("0s"), Ok(std::time::Duration::ZERO));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(d("5"), Err(DurationError::MissingUnit));
        assert_eq!(d("1m30"), Err(DurationError::MissingUnit));
        assert_eq!(d(""), Err(DurationError::Empty));
        assert_eq!(d("5d"), Err(DurationError::UnknownUnit));
        assert_eq!(d("ms"), Err(DurationError::Malformed));
        assert_eq!(d("1.5s"), Err(DurationError::Malformed));
        assert_eq!(d("-1s"), Err(DurationError::Malformed));
        assert_eq!(d("99999999999999999999999h"), Err(DurationError::Overflow));
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (input, shown) in [
            ("90s", "1m30s"),
            ("1500ms", "1s500ms"),
            ("24h", "24h"),
            ("0ms", "0s"),
        ] {
            let parsed: Duration = input.parse().unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(shown.parse::<Duration>().unwrap(), parsed);
        }
        assert_eq!(
            serde_json::to_string(&Duration::from_millis(250)).unwrap(),
            "\"250ms\""
        );
    }
}

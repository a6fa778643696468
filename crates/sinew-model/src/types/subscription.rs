//! `Subscription`: delivery of a topic's events to a service, with ordering, retry and dead-lettering.

use super::{Backoff, Location, Metadata};

/// Delivers a topic's events to a service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Subscription {
    /// Name (also the consumer group), namespace and labels.
    pub metadata: Metadata,
    /// The subscription's settings.
    pub spec: SubscriptionSpec,
    /// Where it was read from (not serialized, ignored by `==`).
    #[serde(skip)]
    pub location: Location,
}

/// `Subscription.spec`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionSpec {
    /// Topic name (`[a-z0-9._-]`, at most 249 characters).
    pub topic: String,
    /// Service whose sidecars deliver to their app.
    pub service: String,
    /// How events are delivered to the app.
    pub deliver: Deliver,
    /// Ordering guarantee. Default `key`.
    pub ordering: Ordering,
    /// Deliveries in flight per subscriber sidecar, at least 1. Default 16.
    pub max_in_flight: u32,
    /// Redelivery policy.
    pub retry: SubscriptionRetry,
    /// Topic receiving events that failed for good; absent = `<topic>.dlq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// Where a new subscription starts reading. Default `latest`.
    pub start: StartPosition,
}

/// The longest topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// What a subscription's topic is suffixed with to name its default
/// dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

impl SubscriptionSpec {
    /// The dead-letter topic, defaulted to `<topic>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}{DLQ_SUFFIX}", self.topic))
    }
}

/// `deliver`: the app endpoint events are POSTed to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deliver {
    /// Path on the app, starting with `/`.
    pub path: String,
}

/// Ordering guarantee of delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Events with the same partition key are delivered one at a time, in order.
    #[default]
    Key,
    /// No ordering.
    None,
}

/// Redelivery policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionRetry {
    /// Deliveries before dead-lettering, at least 1. Default 8.
    pub max_attempts: u32,
    /// Backoff between deliveries. Default `{base: 100ms, max: 30s}`.
    pub backoff: Backoff,
}

impl Default for SubscriptionRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff: Backoff::DELIVERY_DEFAULT,
        }
    }
}

/// Where a new subscription starts: `earliest`, `latest`, `{offset: N}` or `{time: RFC3339}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The oldest retained event.
    Earliest,
    /// Only events published from now on.
    #[default]
    Latest,
    /// This log offset.
    Offset(u64),
    /// The first event at or after this RFC 3339 time (kept as written).
    Time(String),
}

impl serde::Serialize for StartPosition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Earliest => s.serialize_str("earliest"),
            Self::Latest => s.serialize_str("latest"),
            Self::Offset(n) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("offset", n)?;
                m.end()
            }
            Self::Time(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("time", t)?;
                m.end()
            }
        }
    }
}

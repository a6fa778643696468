//! [`EventStore`]: the one API the control plane serves events from, over
//! either backend — the embedded [`Broker`] or, with the `jetstream`
//! feature, a NATS JetStream server. Both keep the same contract (see
//! [`crate::broker`]); where JetStream cannot, `jetstream.rs` says so.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Assignment, Broker, Event, Published};
use crate::error::Result;
use crate::record::Record;

/// Where events are kept.
#[derive(Debug, Clone)]
pub enum EventStore {
    /// The embedded broker: segment files in the control plane's data directory.
    Embedded(Arc<Broker>),
    /// A NATS JetStream server.
    #[cfg(feature = "jetstream")]
    JetStream(Arc<crate::jetstream::JetStream>),
    /// A standalone broker (`sinew broker`) over gRPC.
    #[cfg(feature = "remote")]
    Remote(Arc<crate::remote::RemoteBroker>),
}

/// Calls the same method on whichever backend holds the events.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            EventStore::Embedded($store) => $call,
            #[cfg(feature = "jetstream")]
            EventStore::JetStream($store) => $call,
            #[cfg(feature = "remote")]
            EventStore::Remote($store) => $call,
        }
    };
}

impl EventStore {
    /// The backend's name, for logs and `/v1/topics`: `embedded`,
    /// `jetstream` or `broker`.
    pub fn backend(&self) -> &'static str {
        match self {
            EventStore::Embedded(_) => "embedded",
            #[cfg(feature = "jetstream")]
            EventStore::JetStream(_) => "jetstream",
            #[cfg(feature = "remote")]
            EventStore::Remote(_) => "broker",
        }
    }

    /// See [`Broker::publish`].
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        each!(self, s => s.publish(topic, events).await)
    }

    /// Every topic and its partition count, by name.
    pub async fn topics(&self) -> Result<Vec<(String, u32)>> {
        match self {
            EventStore::Embedded(broker) => Ok(broker.topics()),
            #[cfg(feature = "jetstream")]
            EventStore::JetStream(js) => js.topics().await,
            #[cfg(feature = "remote")]
            EventStore::Remote(remote) => remote.topics().await,
        }
    }

    /// See [`Broker::partitions`].
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        each!(self, s => s.partitions(topic).await)
    }

    /// See [`Broker::partition_of`].
    pub async fn partition_of(&self, topic: &str, key: &[u8]) -> Result<u32> {
        each!(self, s => s.partition_of(topic, key).await)
    }

    /// See [`Broker::fetch`].
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        each!(self, s => s.fetch(topic, partition, from, max_bytes, wait).await)
    }

    /// See [`Broker::offsets`].
    pub async fn offsets(&self, topic: &str, partition: u32) -> Result<Range<u64>> {
        each!(self, s => s.offsets(topic, partition).await)
    }

    /// See [`Broker::offset_for_time`].
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        ts_ms: u64,
    ) -> Result<Option<u64>> {
        each!(self, s => s.offset_for_time(topic, partition, ts_ms).await)
    }

    /// See [`Broker::heartbeat`].
    pub async fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Assignment> {
        each!(self, s => s.heartbeat(group, topic, member).await)
    }

    /// See [`Broker::leave`].
    pub async fn leave(&self, group: &str, topic: &str, member: &str) -> Result<()> {
        each!(self, s => s.leave(group, topic, member).await)
    }

    /// See [`Broker::committed`].
    pub async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        each!(self, s => s.committed(group, topic, partition).await)
    }

    /// See [`Broker::commit`].
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        member: &str,
        generation: u64,
    ) -> Result<()> {
        each!(self, s => s.commit(group, topic, partition, next_offset, member, generation).await)
    }

    /// See [`Broker::reset_cursor`].
    pub async fn reset_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<()> {
        each!(self, s => s.reset_cursor(group, topic, partition, next_offset).await)
    }

    /// See [`Broker::close`].
    pub async fn close(&self) -> Result<()> {
        each!(self, s => s.close().await)
    }
}

//! Consumer groups and cursors on the JetStream store: membership and
//! assignment in this process (as the embedded broker's), cursors in the KV
//! bucket `sinew-cursors`, forward-only by compare-and-set on the entry's
//! revision.

use std::time::Instant;

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::names::{cursor_key, parse_offset};
use super::read::offsets;
use super::{remote, JetStream, Ready};
use crate::broker::group::Assignment;
use crate::broker::layout::{check_name, check_topic};
use crate::broker::lock;
use crate::error::{Error, Result};

impl JetStream {
    /// See [`Broker::heartbeat`](crate::Broker::heartbeat).
    pub async fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Assignment> {
        check_name("group", group)?;
        check_name("member", member)?;
        let partitions = self.partitions(topic).await?;
        let ready = self.ready().await?;
        Ok(lock(&ready.groups).heartbeat(
            (group, topic),
            partitions,
            member,
            Instant::now(),
            self.config.session_timeout,
        ))
    }

    /// See [`Broker::leave`](crate::Broker::leave).
    pub async fn leave(&self, group: &str, topic: &str, member: &str) -> Result<()> {
        check_name("group", group)?;
        check_name("member", member)?;
        check_topic(topic)?;
        let ready = self.ready().await?;
        lock(&ready.groups).leave((group, topic), member);
        Ok(())
    }

    /// See [`Broker::committed`](crate::Broker::committed).
    pub async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        check_name("group", group)?;
        self.topic(topic).await?.partition(partition)?;
        let ready = self.ready().await?;
        let entry = ready
            .cursors
            .entry(cursor_key(group, topic, partition))
            .await
            .map_err(|e| remote("read cursor", &e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok(Some(parse_offset(&entry.value)?))
            }
            _ => Ok(None),
        }
    }

    /// See [`Broker::commit`](crate::Broker::commit): fenced by this
    /// process's groups, forward-only by compare-and-set in the bucket.
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        member: &str,
        generation: u64,
    ) -> Result<()> {
        check_name("group", group)?;
        check_name("member", member)?;
        let part_next = {
            let topic = self.topic(topic).await?;
            offsets(topic.partition(partition)?).await?.end
        };
        let ready = self.ready().await?;
        lock(&ready.groups).fence((group, topic), partition, member, generation)?;
        self.set_cursor(
            ready,
            group,
            topic,
            partition,
            next_offset,
            part_next,
            false,
        )
        .await
    }

    /// See [`Broker::reset_cursor`](crate::Broker::reset_cursor).
    pub async fn reset_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<()> {
        check_name("group", group)?;
        let part_next = {
            let topic = self.topic(topic).await?;
            offsets(topic.partition(partition)?).await?.end
        };
        let ready = self.ready().await?;
        self.set_cursor(ready, group, topic, partition, next_offset, part_next, true)
            .await
    }

    #[expect(clippy::too_many_arguments, reason = "one cursor write, named parts")]
    async fn set_cursor(
        &self,
        ready: &Ready,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        part_next: u64,
        backwards: bool,
    ) -> Result<()> {
        if next_offset > part_next {
            return Err(Error::CursorOutOfRange {
                requested: next_offset,
                next: part_next,
            });
        }
        let key = cursor_key(group, topic, partition);
        let value = Bytes::from(next_offset.to_string());
        if backwards {
            ready
                .cursors
                .put(&key, value)
                .await
                .map_err(|e| remote("write cursor", &e))?;
            return Ok(());
        }
        // Forward only: compare-and-set on the revision read, again on a race.
        loop {
            let entry = ready
                .cursors
                .entry(key.clone())
                .await
                .map_err(|e| remote("read cursor", &e))?;
            let written = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    if parse_offset(&entry.value)? >= next_offset {
                        return Ok(());
                    }
                    ready
                        .cursors
                        .update(&key, value.clone(), entry.revision)
                        .await
                        .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision)
                }
                _ => ready
                    .cursors
                    .create(&key, value.clone())
                    .await
                    .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists),
            };
            match written {
                Ok(_) => return Ok(()),
                Err(true) => continue,
                Err(false) => {
                    return Err(Error::Remote {
                        op: "write cursor",
                        message: format!(
                            "cannot write the cursor of {group} on {topic}/{partition}"
                        ),
                        storage_full: false,
                    })
                }
            }
        }
    }

    /// Expires silent group members (the embedded broker's background
    /// tick; the control plane calls it every quarter second or so).
    pub fn expire_members(&self) {
        if let Some(ready) = self.ready.get() {
            lock(&ready.groups).expire(Instant::now(), self.config.session_timeout);
        }
    }
}

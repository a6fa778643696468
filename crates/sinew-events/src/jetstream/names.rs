//! How Sinew's names and values are spelled in JetStream: a partition's
//! stream and subject, the keys of the KV buckets (hex, as bucket keys are
//! `[-/_=.a-zA-Z0-9]`) and the numbers stored in them.

use crate::error::{Error, Result};

/// `sinew-<topic>-<p>` with `.` as `~` (stream names have no dots).
pub(super) fn stream_name(topic: &str, partition: u32) -> String {
    format!("sinew-{}-{partition}", topic.replace('.', "~"))
}

/// `sinew.<topic>.<p>` with `.` as `~` (one subject token per topic).
pub(super) fn subject(topic: &str, partition: u32) -> String {
    format!("sinew.{}.{partition}", topic.replace('.', "~"))
}

pub(super) fn hex(s: &str) -> String {
    use std::fmt::Write;
    s.bytes()
        .fold(String::with_capacity(s.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

pub(super) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

pub(super) fn parse_count(value: &[u8]) -> Result<u32> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| (1..=crate::MAX_PARTITIONS).contains(n))
        .ok_or_else(|| Error::Remote {
            op: "read topic",
            message: "a topic's partition count in sinew-topics is not a number in 1..=1024"
                .to_owned(),
            storage_full: false,
        })
}

pub(super) fn parse_offset(value: &[u8]) -> Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Remote {
            op: "read cursor",
            message: "a value in the sinew buckets is not a number".to_owned(),
            storage_full: false,
        })
}

/// A cursor's key in the bucket (keys are `[-/_=.a-zA-Z0-9]`).
pub(super) fn cursor_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{}.{}.{partition}", hex(group), hex(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_for_jetstream_and_unambiguous() {
        assert_eq!(stream_name("shop.orders", 3), "sinew-shop~orders-3");
        assert_eq!(subject("shop.orders.dlq", 0), "sinew.shop~orders~dlq.0");
        assert_eq!(unhex(&hex("shop.orders")).as_deref(), Some("shop.orders"));
        assert_eq!(
            cursor_key("shop/inventory-orders", "shop.orders", 2),
            format!("{}.{}.2", hex("shop/inventory-orders"), hex("shop.orders"))
        );
        assert!(unhex("zz").is_none());
        assert!(unhex("abc").is_none());
    }
}

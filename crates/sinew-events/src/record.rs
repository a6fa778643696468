//! The on-disk record format: one length-prefixed, checksummed frame per record.
//!
//! ```text
//! len:          u32 LE   bytes after this field (the whole frame is len + 4)
//! crc32c:       u32 LE   CRC-32C (Castagnoli) of every byte after this field
//! offset:       u64 LE
//! timestamp_ms: u64 LE
//! key_len:      u32 LE, then key_len bytes of key
//! header_count: u16 LE, then per header:
//!               name_len u16 LE, name (UTF-8), value_len u32 LE, value
//! value:        the rest of the frame
//! ```
//!
//! Encoding appends to a caller's reusable buffer. Decoding checks every
//! bound: a length field read from disk never indexes past the frame, and a
//! frame longer than [`MAX_RECORD_LEN`] is corruption, so a damaged length
//! can neither panic nor make the reader allocate absurdly.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

/// Bytes before the checksummed body: `len` and `crc32c`.
pub const PREFIX_LEN: usize = 8;

/// Fixed-size body fields: offset, timestamp, key length, header count.
const FIXED_BODY_LEN: usize = 8 + 8 + 4 + 2;

/// The smallest frame: no key, no headers, an empty value.
pub const MIN_RECORD_LEN: usize = PREFIX_LEN + FIXED_BODY_LEN;

/// The largest frame, prefix included. A longer length on disk is corruption.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// One header of a record: a UTF-8 name and opaque value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name (at most `u16::MAX` bytes).
    pub name: String,
    /// The header's value.
    pub value: Bytes,
}

/// A record to append: the log assigns its offset.
///
/// An empty `key` means "no key"; the format does not distinguish the two.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    /// Milliseconds since the Unix epoch, as the caller (the broker) stamps it.
    pub timestamp_ms: u64,
    /// The partitioning / compaction key; empty for none.
    pub key: Bytes,
    /// Headers, in order (at most `u16::MAX`).
    pub headers: Vec<Header>,
    /// The payload.
    pub value: Bytes,
}

impl NewRecord {
    /// A record with a timestamp and a value, no key and no headers.
    pub fn new(timestamp_ms: u64, value: impl Into<Bytes>) -> Self {
        Self {
            timestamp_ms,
            value: value.into(),
            ..Self::default()
        }
    }

    /// The same record with `key`.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = key.into();
        self
    }

    /// The same record with one more header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// A record read back from the log. Its byte fields share one read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The offset the log assigned.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as appended.
    pub timestamp_ms: u64,
    /// The key; empty for none.
    pub key: Bytes,
    /// Headers, in the order appended.
    pub headers: Vec<Header>,
    /// The payload.
    pub value: Bytes,
}

/// Why a record cannot be encoded. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The encoded frame would exceed [`MAX_RECORD_LEN`].
    TooLarge {
        /// The frame's length in bytes (saturated).
        len: usize,
    },
    /// More than `u16::MAX` headers.
    TooManyHeaders {
        /// How many headers the record has.
        count: usize,
    },
    /// A header name longer than `u16::MAX` bytes.
    HeaderNameTooLong {
        /// Which header (0-based).
        index: usize,
        /// Its name's length in bytes.
        len: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => {
                write!(
                    f,
                    "record is {len} bytes encoded, the limit is {MAX_RECORD_LEN}"
                )
            }
            Self::TooManyHeaders { count } => {
                write!(f, "record has {count} headers, the limit is {}", u16::MAX)
            }
            Self::HeaderNameTooLong { index, len } => write!(
                f,
                "header {index} has a {len}-byte name, the limit is {}",
                u16::MAX
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// What is wrong with bytes that should hold a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The length field is below the minimum frame or above [`MAX_RECORD_LEN`].
    LengthOutOfBounds {
        /// The frame length the field implies (len + 4).
        len: u64,
    },
    /// The frame runs past the end of the data: a torn write.
    Torn {
        /// Bytes the frame needs (at least the length field's 4).
        needed: u64,
        /// Bytes that are there.
        available: u64,
    },
    /// The checksum does not match the body.
    Checksum {
        /// The CRC stored in the frame.
        stored: u32,
        /// The CRC of the body as read.
        computed: u32,
    },
    /// A length inside the body points past its end, or a name is not UTF-8.
    Malformed(&'static str),
    /// The record's offset is not the one its position implies.
    OffsetMismatch {
        /// The offset expected here.
        expected: u64,
        /// The offset the record holds.
        found: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthOutOfBounds { len } => write!(
                f,
                "frame length {len} outside {MIN_RECORD_LEN}..={MAX_RECORD_LEN}"
            ),
            Self::Torn { needed, available } => {
                write!(f, "torn frame: needs {needed} bytes, {available} present")
            }
            Self::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Self::Malformed(what) => write!(f, "malformed body: {what}"),
            Self::OffsetMismatch { expected, found } => {
                write!(f, "offset {found} where {expected} was expected")
            }
        }
    }
}

impl std::error::Error for Corruption {}

/// Offset and timestamp of a verified frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The record's offset.
    pub(crate) offset: u64,
    /// The record's timestamp.
    pub(crate) timestamp_ms: u64,
}

/// The frame length `record` encodes to, or why it cannot be encoded.
pub fn encoded_len(record: &NewRecord) -> Result<usize, RecordError> {
    if record.headers.len() > usize::from(u16::MAX) {
        return Err(RecordError::TooManyHeaders {
            count: record.headers.len(),
        });
    }
    let mut len = MIN_RECORD_LEN
        .saturating_add(record.key.len())
        .saturating_add(record.value.len());
    for (index, header) in record.headers.iter().enumerate() {
        if header.name.len() > usize::from(u16::MAX) {
            return Err(RecordError::HeaderNameTooLong {
                index,
                len: header.name.len(),
            });
        }
        len = len
            .saturating_add(2 + 4)
            .saturating_add(header.name.len())
            .saturating_add(header.value.len());
    }
    if len > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge { len });
    }
    Ok(len)
}

/// Appends `record`'s frame, with `offset`, to `out`; returns the frame length.
///
/// On error `out` is unchanged.
pub fn encode(offset: u64, record: &NewRecord, out: &mut Vec<u8>) -> Result<usize, RecordError> {
    let len = encoded_len(record)?;
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(&[0; PREFIX_LEN]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&record.timestamp_ms.to_le_bytes());
    // Lengths below fit their fields: the frame is at most MAX_RECORD_LEN
    // (16 MiB) and header counts and names were checked above.
    out.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&(record.headers.len() as u16).to_le_bytes());
    for header in &record.headers {
        out.extend_from_slice(&(header.name.len() as u16).to_le_bytes());
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(&(header.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&header.value);
    }
    out.extend_from_slice(&record.value);
    debug_assert_eq!(out.len() - start, len);
    let crc = crc32c::crc32c(&out[start + PREFIX_LEN..]);
    out[start..start + 4].copy_from_slice(&((len - 4) as u32).to_le_bytes());
    out[start + 4..start + PREFIX_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

/// The whole frame length announced by the first four bytes of `buf`, bounds
/// checked; `None` when `buf` is shorter than the length field.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Corruption> {
    let Some(field) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u64::from(u32::from_le_bytes(*field)) + 4;
    if len < MIN_RECORD_LEN as u64 || len > MAX_RECORD_LEN as u64 {
        return Err(Corruption::LengthOutOfBounds { len });
    }
    Ok(Some(len as usize))
}

/// The offset field of a frame, unchecked (0 if the frame is too short to
/// hold one; frames from a segment are at least [`MIN_RECORD_LEN`]).
pub(crate) fn peek_offset(frame: &[u8]) -> u64 {
    frame
        .get(PREFIX_LEN..PREFIX_LEN + 8)
        .and_then(|field| field.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Checks one whole frame (checksum and every inner bound) without copying.
pub(crate) fn verify(frame: &[u8]) -> Result<Meta, Corruption> {
    let layout = parse(frame, |name, _| {
        std::str::from_utf8(&frame[name])
            .map(drop)
            .map_err(|_| Corruption::Malformed("header name is not UTF-8"))
    })?;
    Ok(layout.meta)
}

/// Checks and decodes one whole frame; the record's bytes share `frame`.
pub fn decode(frame: &Bytes) -> Result<Record, Corruption> {
    let mut headers = Vec::new();
    let layout = parse(frame, |name, value| {
        headers.push((name, value));
        Ok(())
    })?;
    let headers = headers
        .into_iter()
        .map(|(name, value)| {
            let name = std::str::from_utf8(&frame[name])
                .map_err(|_| Corruption::Malformed("header name is not UTF-8"))?;
            Ok(Header {
                name: name.to_owned(),
                value: frame.slice(value),
            })
        })
        .collect::<Result<_, Corruption>>()?;
    Ok(Record {
        offset: layout.meta.offset,
        timestamp_ms: layout.meta.timestamp_ms,
        key: frame.slice(layout.key),
        headers,
        value: frame.slice(layout.value),
    })
}

/// Where the parts of a verified frame are.
struct Layout {
    /// Offset and timestamp.
    meta: Meta,
    /// The key's bytes within the frame.
    key: Range<usize>,
    /// The value's bytes within the frame.
    value: Range<usize>,
}

/// Verifies `frame`'s checksum and walks its fields, handing each header's
/// name and value ranges to `on_header` (which checks the name's UTF-8).
fn parse(
    frame: &[u8],
    mut on_header: impl FnMut(Range<usize>, Range<usize>) -> Result<(), Corruption>,
) -> Result<Layout, Corruption> {
    let len = frame_len(frame)?.ok_or(Corruption::Torn {
        needed: 4,
        available: frame.len() as u64,
    })?;
    if len != frame.len() {
        return Err(Corruption::Torn {
            needed: len as u64,
            available: frame.len() as u64,
        });
    }
    let stored = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let computed = crc32c::crc32c(&frame[PREFIX_LEN..]);
    if stored != computed {
        return Err(Corruption::Checksum { stored, computed });
    }
    let mut body = Fields {
        buf: frame,
        pos: PREFIX_LEN,
    };
    let offset = body.u64()?;
    let timestamp_ms = body.u64()?;
    let key_len = body.u32()? as usize;
    let key = body.take(key_len, "key runs past the frame")?;
    let count = body.u16()?;
    for _ in 0..count {
        let name_len = usize::from(body.u16()?);
        let name = body.take(name_len, "header name runs past the frame")?;
        let value_len = body.u32()? as usize;
        let value = body.take(value_len, "header value runs past the frame")?;
        on_header(name, value)?;
    }
    Ok(Layout {
        meta: Meta {
            offset,
            timestamp_ms,
        },
        key,
        value: body.pos..frame.len(),
    })
}

/// A bounds-checked cursor over a frame's body.
struct Fields<'a> {
    /// The whole frame.
    buf: &'a [u8],
    /// The next unread byte.
    pos: usize,
}

impl Fields<'_> {
    /// The next `n` bytes as a range of the frame.
    fn take(&mut self, n: usize, what: &'static str) -> Result<Range<usize>, Corruption> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(Corruption::Malformed(what))?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corruption> {
        let range = self.take(N, "fixed field runs past the frame")?;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }

    /// A little-endian `u16`.
    fn u16(&mut self) -> Result<u16, Corruption> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    fn u32(&mut self) -> Result<u32, Corruption> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    fn u64(&mut self) -> Result<u64, Corruption> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewRecord {
        NewRecord::new(1_700_000_000_000, "value bytes")
            .with_key("key")
            .with_header("content-type", "text/plain")
            .with_header("empty", "")
    }

    fn frame_of(offset: u64, record: &NewRecord) -> Bytes {
        let mut buf = Vec::new();
        encode(offset, record, &mut buf).expect("encodes");
        Bytes::from(buf)
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let record = sample();
        let frame = frame_of(42, &record);
        assert_eq!(frame.len(), encoded_len(&record).expect("len"));
        let back = decode(&frame).expect("decodes");
        assert_eq!(back.offset, 42);
        assert_eq!(back.timestamp_ms, record.timestamp_ms);
        assert_eq!(back.key, record.key);
        assert_eq!(back.headers, record.headers);
        assert_eq!(back.value, record.value);
        assert_eq!(
            verify(&frame),
            Ok(Meta {
                offset: 42,
                timestamp_ms: record.timestamp_ms
            })
        );
    }

    #[test]
    fn smallest_record_is_min_len() {
        let frame = frame_of(0, &NewRecord::default());
        assert_eq!(frame.len(), MIN_RECORD_LEN);
        assert_eq!(decode(&frame).expect("decodes").value, Bytes::new());
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut buf = b"xyz".to_vec();
        let len = encode(7, &sample(), &mut buf).expect("encodes");
        assert_eq!(buf.len(), 3 + len);
        assert_eq!(
            decode(&Bytes::from(buf).slice(3..))
                .expect("decodes")
                .offset,
            7
        );
    }

    #[test]
    fn too_large_records_are_refused_before_writing() {
        let record = NewRecord::new(0, vec![0u8; MAX_RECORD_LEN]);
        let mut buf = Vec::new();
        assert!(matches!(
            encode(0, &record, &mut buf),
            Err(RecordError::TooLarge { .. })
        ));
        assert!(buf.is_empty());
        let many = NewRecord {
            headers: vec![
                Header {
                    name: String::new(),
                    value: Bytes::new()
                };
                usize::from(u16::MAX) + 1
            ],
            ..NewRecord::default()
        };
        assert!(matches!(
            encoded_len(&many),
            Err(RecordError::TooManyHeaders { .. })
        ));
        let long = NewRecord::default().with_header("n".repeat(70_000), "");
        assert!(matches!(
            encoded_len(&long),
            Err(RecordError::HeaderNameTooLong { index: 0, .. })
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let frame = frame_of(9, &sample());
        for at in 0..frame.len() {
            let mut bad = frame.to_vec();
            bad[at] ^= 0x5a;
            // A changed length field is caught as a bound or torn frame (the
            // caller reads exactly `frame_len` bytes) or by the checksum.
            let result = match frame_len(&bad) {
                Ok(Some(len)) if len <= bad.len() => {
                    decode(&Bytes::from(bad).slice(..len)).map(|_| ())
                }
                Ok(Some(len)) => Err(Corruption::Torn {
                    needed: len as u64,
                    available: bad.len() as u64,
                }),
                Ok(None) => unreachable!("frame is longer than 4 bytes"),
                Err(error) => Err(error),
            };
            assert!(result.is_err(), "flip at byte {at} went unnoticed");
        }
    }

    #[test]
    fn absurd_lengths_are_corruption_not_allocation() {
        let mut frame = frame_of(0, &sample()).to_vec();
        frame[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            frame_len(&frame),
            Err(Corruption::LengthOutOfBounds { .. })
        ));
        frame[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            frame_len(&frame),
            Err(Corruption::LengthOutOfBounds { len: 4 })
        ));
        assert_eq!(frame_len(&frame[..3]), Ok(None));
    }

    #[test]
    fn inner_lengths_past_the_frame_are_malformed() {
        // A valid checksum over a body whose key length points past its end:
        // only a writer bug produces this, and it must still not panic.
        let mut body = Vec::new();
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&1_000u32.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        let mut frame = Vec::new();
        frame.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        assert_eq!(
            decode(&Bytes::from(frame)),
            Err(Corruption::Malformed("key runs past the frame"))
        );
    }
}

//! Incremental scanner for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! The proxy passes chunked bodies through verbatim; the scanner only finds
//! where the message ends and rejects malformed framing (bare LF, bad hex,
//! oversized trailers) that request smuggling relies on. It can also decode,
//! for HTTP/1.0 clients that do not understand chunked responses.

/// Largest chunk-size line or trailer section accepted, in bytes.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Largest chunk-extension accepted, in bytes.
const MAX_EXTENSION_BYTES: usize = 4 * 1024;

/// Malformed chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` seen so far.
    Size { digits: u8 },
    /// Whitespace after the size (BWS): more of it, `;` or the CR only.
    SizeSpace { bytes: usize },
    /// After a `;`: chunk extensions until CR.
    Extension { bytes: usize },
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside chunk data; `self.remaining` bytes left.
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting LF ending a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    /// The whole body has been seen.
    Done,
}

/// Tracks a chunked body across reads.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    remaining: u64,
    trailer_bytes: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            trailer_bytes: 0,
        }
    }
}

impl Chunked {
    /// Whether the terminating chunk and trailer section have been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input`, returning how many bytes belong to this body (all of
    /// them unless the body ends inside `input`). With `decoded`, chunk data
    /// is appended to it (framing and trailers are dropped).
    pub(crate) fn scan(
        &mut self,
        input: &[u8],
        mut decoded: Option<&mut Vec<u8>>,
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data => {
                    let take = (input.len() - i).min(self.remaining as usize);
                    if let Some(out) = decoded.as_deref_mut() {
                        out.extend_from_slice(&input[i..i + take]);
                    }
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size { digits } => {
                    if let Some(v) = hex_value(b) {
                        if digits >= 15 {
                            return Err(ChunkError);
                        }
                        self.size = self.size * 16 + u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkError);
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b';' {
                        self.state = State::Extension { bytes: 1 };
                    } else if b == b' ' || b == b'\t' {
                        self.state = State::SizeSpace { bytes: 1 };
                    } else {
                        return Err(ChunkError);
                    }
                }
                State::SizeSpace { bytes } => {
                    // `5 junk` is not a size line: other parsers could read it
                    // differently.
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b';' {
                        self.state = State::Extension { bytes: bytes + 1 };
                    } else if (b == b' ' || b == b'\t') && bytes < MAX_EXTENSION_BYTES {
                        self.state = State::SizeSpace { bytes: bytes + 1 };
                    } else {
                        return Err(ChunkError);
                    }
                }
                State::Extension { bytes } => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' || b == 0 || bytes >= MAX_EXTENSION_BYTES {
                        return Err(ChunkError);
                    } else {
                        self.state = State::Extension { bytes: bytes + 1 };
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.state = match b {
                        b'\r' => State::FinalLf,
                        b'\n' | b' ' | b'\t' => return Err(ChunkError),
                        _ => State::Trailer,
                    };
                    self.count_trailer()?;
                }
                State::Trailer => {
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' | 0 => return Err(ChunkError),
                        _ => {}
                    }
                    self.count_trailer()?;
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<(usize, Vec<u8>, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let n = c.scan(input, Some(&mut out))?;
        Ok((n, out, c.is_done()))
    }

    #[test]
    fn finds_end_and_decodes() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        let (n, out, done) = scan_all(body).unwrap();
        assert!(done);
        assert_eq!(&body[n..], b"NEXT");
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn trailers_are_part_of_the_body() {
        let body = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\n";
        let (n, out, done) = scan_all(body).unwrap();
        assert!(done);
        assert_eq!(n, body.len());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn works_byte_by_byte() {
        let body = b"A\r\n0123456789\r\n0\r\n\r\n";
        let mut c = Chunked::default();
        let mut out = Vec::new();
        for (i, b) in body.iter().enumerate() {
            assert!(!c.is_done(), "done early at {i}");
            assert_eq!(c.scan(std::slice::from_ref(b), Some(&mut out)), Ok(1));
        }
        assert!(c.is_done());
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn rejects_smuggling_shapes() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],   // bare LF after size
            b"5\r\nhello\n0\r\n\r\n",        // bare LF after data
            b"x\r\n",                        // not hex
            b"\r\n",                         // empty size
            b"-1\r\n",                       // sign
            b"1ffffffffffffffff\r\n",        // overflow
            b"5\r\nhelloX\r\n",              // data longer than size
            b"0\r\n\n",                      // bare LF ending trailers
            b"0\r\n x: y\r\n\r\n",           // obs-fold in trailers
            b"5 junk\r\nhello\r\n0\r\n\r\n", // text after the size, no `;`
        ] {
            assert!(
                scan_all(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn incomplete_is_not_done() {
        let (n, _, done) = scan_all(b"5\r\nhel").unwrap();
        assert_eq!(n, 6);
        assert!(!done);
    }
}

//! Raw TCP HTTP exchange: send exact bytes, read back one response (for malformed requests).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.x response read off a raw socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects to `addr`, writes `request` verbatim and reads one response.
///
/// Fails with `UnexpectedEof` when the peer closes before a full response,
/// and `TimedOut` after 10 s.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> io::Result<RawResponse> {
    tokio::time::timeout(RAW_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        read_response(&mut stream).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no raw response in time"))?
}

async fn read_response(stream: &mut TcpStream) -> io::Result<RawResponse> {
    let mut buf = Vec::new();
    let (status, headers, head_len) = loop {
        let mut header_slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut header_slots);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        (h.name.to_ascii_lowercase(), value)
                    })
                    .collect::<Vec<_>>();
                break (parsed.code.unwrap_or(0), headers, len);
            }
            Ok(httparse::Status::Partial) => read_more(stream, &mut buf).await?,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    };
    let mut rest = buf.split_off(head_len);
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if let Some(len) = find("content-length").and_then(|v| v.trim().parse().ok()) {
        while rest.len() < len {
            read_more(stream, &mut rest).await?;
        }
        rest.truncate(len);
        rest
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(stream, rest).await?
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        // Read to end of stream.
        stream.read_to_end(&mut rest).await?;
        rest
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.reserve(16 * 1024);
    let n = stream.read_buf(buf).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a full response",
        ));
    }
    Ok(())
}

async fn dechunk(stream: &mut TcpStream, mut raw: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = loop {
            if let Some(i) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            read_more(stream, &mut raw).await?;
        };
        let size_text = String::from_utf8_lossy(&raw[pos..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let data_start = line_end + 2;
        if size == 0 {
            return Ok(body);
        }
        while raw.len() < data_start + size + 2 {
            read_more(stream, &mut raw).await?;
        }
        body.extend_from_slice(&raw[data_start..data_start + size]);
        pos = data_start + size + 2;
    }
}

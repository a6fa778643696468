//! Active probes: TCP connect, HTTP/1.1 `GET`, gRPC health check — each
//! bounded by the check's timeout, each on a fresh connection closed after.

use super::grpc;
use crate::config::UpstreamTls;
use crate::tls::{Alpn, Conn};
use sinew_model::{HealthCheck, HealthProbe};
use std::{error::Error, fmt, io, net::SocketAddr};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The `user-agent` every probe sends, so upstream logs can tell probes apart.
pub const USER_AGENT: &str = "sinew-health-check";

/// Largest HTTP response head a probe reads before giving up.
const MAX_HEAD: usize = 16 * 1024;
/// Most response headers a probe parses.
const MAX_HEADERS: usize = 64;

/// Why a probe failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProbeError {
    /// The probe did not finish within the check's timeout.
    Timeout,
    /// The TCP connect failed.
    Connect(io::Error),
    /// The mTLS handshake with a meshed endpoint failed.
    Tls(io::Error),
    /// Reading or writing the probe's connection failed.
    Io(io::Error),
    /// The endpoint closed the connection before a complete response.
    Closed,
    /// The response could not be parsed.
    Malformed(&'static str),
    /// The HTTP/2 connection or stream failed.
    Http2(Box<dyn Error + Send + Sync>),
    /// The path or service name cannot be written into a request.
    InvalidRequest,
    /// The HTTP status is not one of the expected ones.
    Status(u16),
    /// The gRPC call ended with a non-zero `grpc-status`.
    GrpcStatus(u32),
    /// The gRPC health service answered a status other than `SERVING`
    /// (0 `UNKNOWN`, 2 `NOT_SERVING`, 3 `SERVICE_UNKNOWN`).
    NotServing(i32),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("probe timed out"),
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Tls(e) => write!(f, "mTLS handshake failed: {e}"),
            Self::Io(e) => write!(f, "probe connection failed: {e}"),
            Self::Closed => f.write_str("connection closed before a complete response"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
            Self::Http2(e) => write!(f, "HTTP/2 failed: {e}"),
            Self::InvalidRequest => f.write_str("path or service name not valid in a request"),
            Self::Status(status) => write!(f, "unexpected status {status}"),
            Self::GrpcStatus(code) => write!(f, "gRPC call failed with grpc-status {code}"),
            Self::NotServing(status) => write!(f, "health service reports status {status}"),
        }
    }
}

impl Error for ProbeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Connect(e) | Self::Tls(e) | Self::Io(e) => Some(e),
            Self::Http2(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Probes the endpoint at `addr` of `service` once, as `check` says, within
/// `check.timeout`. `service` is sent as the HTTP `Host` (and gRPC `:authority`).
/// A meshed endpoint (`tls`) is probed over mTLS, through its sidecar.
pub async fn probe(
    service: &str,
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    check: &HealthCheck,
) -> Result<(), ProbeError> {
    let work = async {
        match &check.probe {
            HealthProbe::Tcp {} => connect(addr, tls, Alpn::Opaque).await.map(drop),
            HealthProbe::Http { path, .. } => {
                let stream = connect(addr, tls, Alpn::Http1).await?;
                http(stream, service, path, &check.probe).await
            }
            HealthProbe::Grpc { service: name } => {
                let stream = connect(addr, tls, Alpn::H2).await?;
                grpc::check(stream, service, name.as_deref().unwrap_or("")).await
            }
        }
    };
    tokio::time::timeout(check.timeout.0, work)
        .await
        .unwrap_or(Err(ProbeError::Timeout))
}

/// Opens the probe's connection: TCP, then mTLS to a meshed endpoint.
async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    alpn: Alpn,
) -> Result<Conn, ProbeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    stream.set_nodelay(true).map_err(ProbeError::Io)?;
    match tls {
        Some(tls) => tls.connect(stream, alpn).await.map_err(ProbeError::Tls),
        None => Ok(Conn::Plain(stream)),
    }
}

/// Whether `s` can go into a request line or header value as is.
pub(super) fn is_request_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

async fn http(
    mut stream: Conn,
    service: &str,
    path: &str,
    expected: &HealthProbe,
) -> Result<(), ProbeError> {
    if !is_request_safe(path) || !is_request_safe(service) {
        return Err(ProbeError::InvalidRequest);
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {service}\r\nuser-agent: {USER_AGENT}\r\n\
         accept: */*\r\nconnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    let status = read_status(&mut stream).await?;
    if expected.expects_status(status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// Reads response heads until a final (non-1xx) one and returns its status.
async fn read_status(stream: &mut Conn) -> Result<u16, ProbeError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some((status, len)) = parse_head(&buf)? {
            if (100..200).contains(&status) && status != 101 {
                // An interim response (e.g. 103 Early Hints): the final one follows.
                buf.drain(..len);
                continue;
            }
            return Ok(status);
        }
        if buf.len() >= MAX_HEAD {
            return Err(ProbeError::Malformed("response head too large"));
        }
        if stream.read_buf(&mut buf).await.map_err(ProbeError::Io)? == 0 {
            return Err(ProbeError::Closed);
        }
    }
}

/// The status and length of the complete response head at the start of
/// `buf`, or `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize)>, ProbeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => match response.code {
            Some(code) => Ok(Some((code, len))),
            None => Err(ProbeError::Malformed("no status code")),
        },
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(ProbeError::Malformed("invalid HTTP/1 response head")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_once_the_head_is_complete() {
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None)));
        let head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\nrest";
        let len = head.len() - b"rest".len();
        assert!(matches!(parse_head(head), Ok(Some((503, l))) if l == len));
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ProbeError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_unsafe_request_text() {
        assert!(is_request_safe("/healthz?full=1"));
        assert!(!is_request_safe("/a\r\nx: y"));
        assert!(!is_request_safe("/a b"));
        assert!(!is_request_safe(""));
    }
}

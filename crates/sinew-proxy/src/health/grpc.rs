//! The gRPC health checking protocol (`grpc.health.v1.Health/Check`) over
//! h2c, with the two one-field protobuf messages encoded by hand.

use super::probe::{is_request_safe, ProbeError, USER_AGENT};
use crate::tls::Conn;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The health service's method path.
const PATH: &str = "/grpc.health.v1.Health/Check";
/// Largest response body a probe reads (a `HealthCheckResponse` is 7 bytes).
const MAX_BODY: usize = 64 * 1024;
/// `HealthCheckResponse.ServingStatus.SERVING`.
pub(super) const SERVING: i32 = 1;

/// Calls `Check` for `service` ("" = the server as a whole) on `stream`, a
/// fresh connection (h2c, or h2 over mTLS), with `authority` as `:authority`.
pub(super) async fn check(stream: Conn, authority: &str, service: &str) -> Result<(), ProbeError> {
    if !is_request_safe(authority) {
        return Err(ProbeError::InvalidRequest);
    }
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(PATH)
        .build()
        .map_err(|_| ProbeError::InvalidRequest)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::new(encode_request(service)))
        .map_err(|_| ProbeError::InvalidRequest)?;

    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| ProbeError::Http2(e.into()))?;
    let call = async {
        tx.ready().await.map_err(|e| ProbeError::Http2(e.into()))?;
        let response = tx
            .send_request(request)
            .await
            .map_err(|e| ProbeError::Http2(e.into()))?;
        let (head, body) = response.into_parts();
        if head.status != StatusCode::OK {
            return Err(ProbeError::Status(head.status.as_u16()));
        }
        // A "trailers-only" response carries grpc-status in its headers.
        if let Some(code) = grpc_status(&head.headers)? {
            return match code {
                0 => Err(ProbeError::Malformed("no response message")),
                code => Err(ProbeError::GrpcStatus(code)),
            };
        }
        let collected = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(ProbeError::Http2)?;
        let code = match collected.trailers().map(grpc_status).transpose()?.flatten() {
            Some(code) => code,
            None => return Err(ProbeError::Malformed("no grpc-status trailer")),
        };
        if code != 0 {
            return Err(ProbeError::GrpcStatus(code));
        }
        match decode_response(&collected.to_bytes())? {
            SERVING => Ok(()),
            status => Err(ProbeError::NotServing(status)),
        }
    };
    // The connection is driven here rather than spawned, so it closes as soon
    // as the probe ends or times out.
    tokio::select! {
        result = call => result,
        result = conn => Err(match result {
            Ok(()) => ProbeError::Closed,
            Err(e) => ProbeError::Http2(e.into()),
        }),
    }
}

fn grpc_status(headers: &HeaderMap) -> Result<Option<u32>, ProbeError> {
    headers
        .get("grpc-status")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ProbeError::Malformed("grpc-status is not a number"))
        })
        .transpose()
}

/// A length-prefixed `HealthCheckRequest { string service = 1; }`.
pub(super) fn encode_request(service: &str) -> Bytes {
    let mut message = BytesMut::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0); // not compressed
                     // A health check request is far below 4 GiB; saturate rather than wrap.
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(&message);
    frame.freeze()
}

fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Reads a varint at `*at`, advancing past it.
fn take_varint(buf: &[u8], at: &mut usize) -> Result<u64, ProbeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(*at)
            .ok_or(ProbeError::Malformed("truncated varint"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProbeError::Malformed("varint too long"))
}

/// The `status` of the one length-prefixed `HealthCheckResponse` in `body`
/// (0 `UNKNOWN` when the field is absent, as proto3 defaults).
pub(super) fn decode_response(body: &[u8]) -> Result<i32, ProbeError> {
    let (prefix, rest) = body
        .split_first_chunk::<5>()
        .ok_or(ProbeError::Malformed("no gRPC message"))?;
    if prefix[0] != 0 {
        return Err(ProbeError::Malformed("compressed gRPC message"));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let message = rest
        .get(..len)
        .ok_or(ProbeError::Malformed("truncated gRPC message"))?;
    let mut status = 0;
    let mut at = 0;
    while at < message.len() {
        let key = take_varint(message, &mut at)?;
        let skip = match key & 7 {
            0 => {
                let value = take_varint(message, &mut at)?;
                if key >> 3 == 1 {
                    // An enum is an int32 sent as a (sign-extended) varint.
                    status = value as i32;
                }
                0
            }
            1 => 8,
            2 => usize::try_from(take_varint(message, &mut at)?)
                .map_err(|_| ProbeError::Malformed("field too long"))?,
            5 => 4,
            _ => return Err(ProbeError::Malformed("unknown protobuf wire type")),
        };
        at = at
            .checked_add(skip)
            .filter(|&end| end <= message.len())
            .ok_or(ProbeError::Malformed("truncated protobuf field"))?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_request() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("foo")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b'f', b'o', b'o']
        );
        let long = "x".repeat(300);
        let frame = encode_request(&long);
        // 300 = 0b10_0101100: varint ac 02.
        assert_eq!(&frame[..8], &[0, 0, 0, 1, 47, 0x0a, 0xac, 0x02]);
        assert_eq!(frame.len(), 5 + 3 + 300);
    }

    #[test]
    fn decodes_the_status() {
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]).ok(), Some(1));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 2]).ok(), Some(2));
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]).ok(), Some(0));
        // Unknown fields of every wire type are skipped.
        let body = [
            0, 0, 0, 0, 17, 0x10, 0x96, 0x01, // field 2 varint
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3 fixed64
            0x22, 1, b'x', // field 4 bytes
            0x08, 1, // status
        ];
        assert_eq!(decode_response(&body).ok(), Some(1));
    }

    #[test]
    fn refuses_malformed_responses() {
        for body in [
            &[0, 0, 0][..],
            &[1, 0, 0, 0, 2, 0x08, 1],
            &[0, 0, 0, 0, 3, 0x08, 1],
            &[0, 0, 0, 0, 1, 0x08],
            &[0, 0, 0, 0, 2, 0x0a, 5],
            &[0, 0, 0, 0, 1, 0x0b],
        ] {
            assert!(
                matches!(decode_response(body), Err(ProbeError::Malformed(_))),
                "{body:?}"
            );
        }
    }
}

//! JSON Web Token (JWT, RFC 7519) validation against a JSON Web Key Set
//! (JWKS, RFC 7517), for the ingress gateway's per-route bearer tokens.
//!
//! What is accepted, and why:
//!
//! - Only the compact JWS serialization (RFC 7515 §7.1): three base64url
//!   segments without padding. Encrypted tokens (JWE, five segments) and the
//!   JSON serialization are refused.
//! - Only asymmetric algorithms (RS256/384/512, PS256/384/512, ES256,
//!   ES384, EdDSA with Ed25519). `none` and every `HS*` are refused outright:
//!   a JWKS holds *public* keys, and accepting an HMAC over one of them is
//!   the classic algorithm-confusion forgery (RFC 8725 §2.1, §3.1).
//! - Keys come only from the configured JWKS. Header parameters that point
//!   at or embed keys (`jku`, `jwk`, `x5u`, `x5c`) are ignored: trusting them
//!   would let the token choose its own verification key.
//! - A key verifies a token only when its type/curve fits the token's `alg`
//!   and, when the JWK declares an `alg`, that equals the token's.
//!
//! Error messages end up in 401 bodies and access logs, so they never
//! contain the token, its claims, its `kid` or any key material: only fixed
//! text and values this module chose (algorithm names from a fixed list,
//! parameter names, bit lengths).
//!
//! The clock is an argument (`now_unix_secs`) so callers and tests decide
//! what "now" is.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes; checked before any other work.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Largest JWKS document accepted, in bytes.
pub(crate) const MAX_JWKS_LEN: usize = 1024 * 1024;

/// Default allowance for clock skew between the issuer and us, in seconds.
pub(crate) const DEFAULT_LEEWAY_SECS: u64 = 60;

/// Registered JWS algorithm names we recognise but refuse; an error may name
/// one of these, never an arbitrary string from a token.
const REFUSED_ALGORITHMS: &[&str] = &[
    "none", "HS256", "HS384", "HS512", "ES512", "ES256K", "Ed25519", "Ed448",
];

pub(crate) use keys::*;

// ---------------------------------------------------------------------------
// Validation rules and results
// ---------------------------------------------------------------------------

/// What a route requires of a token beyond a valid signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Validation {
    /// Accepted issuers; `iss` must equal one. Empty accepts any issuer,
    /// which is only safe when the JWKS is used by a single issuer.
    pub(crate) issuers: Vec<String>,
    /// Accepted audiences; `aud` (a string or an array of strings) must
    /// contain one. Empty accepts any audience, including none.
    pub(crate) audiences: Vec<String>,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds.
    pub(crate) leeway_secs: u64,
    /// Whether a token without `exp` is refused.
    pub(crate) require_exp: bool,
}

impl Default for Validation {
    /// Any issuer and audience, 60 s leeway, `exp` required.
    fn default() -> Validation {
        Validation {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            require_exp: true,
        }
    }
}

/// The claims of a verified, currently valid token.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Claims {
    /// The payload's members.
    map: Map<String, Value>,
}

impl Claims {
    /// The subject (`sub`), if present.
    pub(crate) fn subject(&self) -> Option<&str> {
        self.map.get("sub").and_then(Value::as_str)
    }

    /// The issuer (`iss`), if present.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.map.get("iss").and_then(Value::as_str)
    }

    /// Any claim, by name.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// All claims.
    pub(crate) fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// All claims, by value.
    pub(crate) fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

/// Which segment of a compact JWS an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The protected header (first segment).
    Header,
    /// The payload (second segment).
    Payload,
    /// The signature (third segment).
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// How a token is structurally broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Not three `.`-separated segments.
    SegmentCount,
    /// A segment carries base64 padding (`=`), which compact JWS forbids.
    Padding(Part),
    /// A segment is not valid unpadded base64url.
    Base64(Part),
    /// The header or payload is not a JSON object.
    NotJsonObject(Part),
    /// A header parameter is missing (`alg`) or has the wrong type.
    HeaderParameter(&'static str),
    /// A registered claim has the wrong type.
    Claim(&'static str),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::SegmentCount => f.write_str("token is not three dot-separated segments"),
            Malformed::Padding(part) => {
                write!(f, "token {part} has base64 padding, which is not allowed")
            }
            Malformed::Base64(part) => write!(f, "token {part} is not valid base64url"),
            Malformed::NotJsonObject(part) => write!(f, "token {part} is not a JSON object"),
            Malformed::HeaderParameter(name) => {
                write!(f, "token header parameter \"{name}\" is missing or invalid")
            }
            Malformed::Claim(name) => write!(f, "token claim \"{name}\" has the wrong type"),
        }
    }
}

/// Why a token was refused. `Display` is safe for a 401 body or a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// A JWE (five segments): encrypted tokens are not supported.
    Encrypted,
    /// Structurally broken.
    Malformed(Malformed),
    /// `alg` is not one we verify; names it when it is a registered name.
    UnsupportedAlgorithm(Option<&'static str>),
    /// The header has `crit`: we implement no extensions, so must refuse.
    UnsupportedCritical,
    /// The header's `typ` says this is not an access/ID token.
    UnsupportedType,
    /// The token names a `kid` no key in the JWKS has.
    UnknownKey,
    /// No candidate key fits the token's algorithm.
    NoKeyForAlgorithm(Algorithm),
    /// No eligible key verifies the signature.
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// There is no `exp` and the route requires one.
    MissingExpiry,
    /// `iss` is missing or not an accepted issuer.
    IssuerMismatch,
    /// `aud` is missing or names no accepted audience.
    AudienceMismatch,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::TooLong => write!(f, "token exceeds {MAX_TOKEN_LEN} bytes"),
            JwtError::Encrypted => f.write_str("encrypted tokens (JWE) are not supported"),
            JwtError::Malformed(what) => write!(f, "malformed token: {what}"),
            JwtError::UnsupportedAlgorithm(name) => unsupported_algorithm(f, *name),
            JwtError::UnsupportedCritical => {
                f.write_str("token header lists critical extensions (crit); none are supported")
            }
            JwtError::UnsupportedType => f.write_str("token type (typ) is not JWT or at+jwt"),
            JwtError::UnknownKey => f.write_str("token key ID (kid) is not in the key set"),
            JwtError::NoKeyForAlgorithm(alg) => write!(f, "no key in the key set can verify {alg}"),
            JwtError::BadSignature => f.write_str("token signature is invalid"),
            JwtError::Expired => f.write_str("token has expired"),
            JwtError::NotYetValid => f.write_str("token is not valid yet (nbf)"),
            JwtError::IssuedInFuture => f.write_str("token is issued in the future (iat)"),
            JwtError::MissingExpiry => f.write_str("token has no expiry (exp)"),
            JwtError::IssuerMismatch => f.write_str("token issuer (iss) is not accepted"),
            JwtError::AudienceMismatch => f.write_str("token audience (aud) is not accepted"),
        }
    }
}

/// The message for [`JwtError::UnsupportedAlgorithm`].
fn unsupported_algorithm(f: &mut fmt::Formatter<'_>, name: Option<&str>) -> fmt::Result {
    match name {
        Some("none") => f.write_str("unsigned tokens (alg \"none\") are not accepted"),
        Some(hmac) if hmac.starts_with("HS") => write!(
            f,
            "symmetric algorithm \"{hmac}\" is not accepted; only asymmetric keys are used"
        ),
        Some(other) => write!(f, "algorithm \"{other}\" is not supported"),
        None => f.write_str("token algorithm (alg) is not supported"),
    }
}

impl std::error::Error for JwtError {}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Verifies a compact JWS `token` against `jwks` and checks its claims
/// against `validation` at time `now_unix_secs`; returns the claims.
///
/// Order of work: size cap, structure, header, signature, and only then the
/// payload is parsed, so unauthenticated payload JSON is never read.
pub(crate) fn verify(
    token: &str,
    jwks: &Jwks,
    validation: &Validation,
    now_unix_secs: u64,
) -> Result<Claims, JwtError> {
    let segments = split(token)?;
    let header = parse_header(segments.header)?;
    let signature = decode(segments.signature, Part::Signature)?;
    check_signature(jwks, &header, segments.signing_input.as_bytes(), &signature)?;
    let map = decode_object(segments.payload, Part::Payload)?;
    check_claims(&map, validation, now_unix_secs)?;
    Ok(Claims { map })
}

/// The token from an `Authorization` header value `Bearer <token>`
/// (RFC 6750 §2.1; the scheme is case-insensitive). `None` for any other
/// scheme or an empty token.
pub(crate) fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// The three segments of a compact JWS, still encoded.
#[derive(Debug)]
struct Segments<'a> {
    /// First segment.
    header: &'a str,
    /// Second segment.
    payload: &'a str,
    /// Third segment.
    signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    signing_input: &'a str,
}

/// Splits a token into segments, checking size, count and alphabet.
fn split(token: &str) -> Result<Segments<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    match token.bytes().filter(|&b| b == b'.').count() {
        2 => {}
        4 => return Err(JwtError::Encrypted),
        _ => return Err(JwtError::Malformed(Malformed::SegmentCount)),
    }
    let segments = token
        .rsplit_once('.')
        .and_then(|(signing_input, signature)| {
            let (header, payload) = signing_input.split_once('.')?;
            Some(Segments {
                header,
                payload,
                signature,
                signing_input,
            })
        });
    let segments = segments.ok_or(JwtError::Malformed(Malformed::SegmentCount))?;
    check_alphabet(segments.header, Part::Header)?;
    check_alphabet(segments.payload, Part::Payload)?;
    check_alphabet(segments.signature, Part::Signature)?;
    Ok(segments)
}

/// Refuses padding and any character outside the base64url alphabet, up
/// front, so such tokens are reported as malformed rather than as a bad
/// signature.
fn check_alphabet(segment: &str, part: Part) -> Result<(), JwtError> {
    if segment.contains('=') {
        return Err(JwtError::Malformed(Malformed::Padding(part)));
    }
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !segment.bytes().all(base64url) {
        return Err(JwtError::Malformed(Malformed::Base64(part)));
    }
    Ok(())
}

/// Decodes a segment (strict: no padding, canonical trailing bits).
fn decode(segment: &str, part: Part) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed(Malformed::Base64(part)))
}

/// Decodes a segment that must hold a JSON object. With duplicate member
/// names the last one wins, as RFC 7515 §5.2 allows.
fn decode_object(segment: &str, part: Part) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice(&decode(segment, part)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed(Malformed::NotJsonObject(part))),
    }
}

/// What the protected header decides.
#[derive(Debug)]
struct Header {
    /// The signature algorithm.
    alg: Algorithm,
    /// The key ID, if given.
    kid: Option<String>,
}

/// Parses and checks the protected header.
fn parse_header(segment: &str) -> Result<Header, JwtError> {
    let header = decode_object(segment, Part::Header)?;
    let alg = header_algorithm(&header)?;
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: extensions listed in crit must be understood;
        // we understand none (this also refuses RFC 7797 `b64: false`).
        return Err(JwtError::UnsupportedCritical);
    }
    check_type(&header)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::Malformed(Malformed::HeaderParameter("kid"))),
    };
    Ok(Header { alg, kid })
}

/// The header's `alg`, which must be a supported algorithm.
fn header_algorithm(header: &Map<String, Value>) -> Result<Algorithm, JwtError> {
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed(Malformed::HeaderParameter("alg")))?;
    Algorithm::from_name(name).ok_or_else(|| {
        let known = REFUSED_ALGORITHMS
            .iter()
            .copied()
            .find(|refused| *refused == name);
        JwtError::UnsupportedAlgorithm(known)
    })
}

/// Checks `typ` when present (RFC 8725 §3.11, explicit typing).
///
/// Checked rather than ignored because an issuer signs other JWTs with the
/// same keys: logout tokens (`logout+jwt`), DPoP proofs (`dpop+jwt`),
/// security events (`secevent+jwt`). Those declare their type so they
/// cannot be replayed as bearer tokens; honouring that costs nothing.
/// Common access and ID tokens either omit `typ` or use `JWT` / `at+jwt`
/// (RFC 9068), with or without the `application/` prefix (RFC 7515
/// §4.1.9), so legitimate tokens are not refused.
fn check_type(header: &Map<String, Value>) -> Result<(), JwtError> {
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) if is_accepted_type(typ) => Ok(()),
        Some(Value::String(_)) => Err(JwtError::UnsupportedType),
        Some(_) => Err(JwtError::Malformed(Malformed::HeaderParameter("typ"))),
    }
}

/// Whether a `typ` value names a plain or access-token JWT (ASCII
/// case-insensitive, optional `application/` prefix).
fn is_accepted_type(typ: &str) -> bool {
    const PREFIX: &str = "application/";
    let bare = match typ.get(..PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(PREFIX) => typ.get(PREFIX.len()..),
        _ => Some(typ),
    };
    bare.is_some_and(|t| t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt"))
}

/// Succeeds when some eligible key verifies the signature.
fn check_signature(jwks: &Jwks, header: &Header, msg: &[u8], sig: &[u8]) -> Result<(), JwtError> {
    let candidates = eligible_keys(jwks, header)?;
    if candidates
        .iter()
        .any(|key| key.verify(header.alg, msg, sig))
    {
        Ok(())
    } else {
        Err(JwtError::BadSignature)
    }
}

/// The keys that may verify this token: those with its `kid` (all keys
/// when it has none) that fit its `alg`.
fn eligible_keys<'a>(jwks: &'a Jwks, header: &Header) -> Result<Vec<&'a Jwk>, JwtError> {
    let wanted = header.kid.as_deref();
    let named: Vec<&Jwk> = jwks
        .keys
        .iter()
        .filter(|key| wanted.is_none_or(|kid| key.kid.as_deref() == Some(kid)))
        .collect();
    if named.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    let fitting: Vec<&Jwk> = named
        .into_iter()
        .filter(|key| key.accepts(header.alg))
        .collect();
    if fitting.is_empty() {
        return Err(JwtError::NoKeyForAlgorithm(header.alg));
    }
    Ok(fitting)
}

/// Checks times, issuer and audience, and the types of the registered
/// claims this module reads.
fn check_claims(
    claims: &Map<String, Value>,
    validation: &Validation,
    now_unix_secs: u64,
) -> Result<(), JwtError> {
    check_times(claims, validation, now_unix_secs)?;
    string_claim(claims, "sub")?;
    check_issuer(claims, &validation.issuers)?;
    check_audience(claims, &validation.audiences)
}

/// Checks `exp`, `nbf` and `iat` against `now`, allowing the leeway.
///
/// Compared as `f64`: NumericDate may be fractional (RFC 7519 §2), and
/// seconds since the epoch are exact in an `f64` for the next 285 million
/// years. No integer arithmetic, so no overflow on hostile values.
fn check_times(
    claims: &Map<String, Value>,
    validation: &Validation,
    now: u64,
) -> Result<(), JwtError> {
    let now = now as f64;
    let leeway = validation.leeway_secs as f64;
    match numeric_claim(claims, "exp")? {
        Some(exp) if now >= exp + leeway => return Err(JwtError::Expired),
        None if validation.require_exp => return Err(JwtError::MissingExpiry),
        _ => {}
    }
    if numeric_claim(claims, "nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if numeric_claim(claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

/// A NumericDate claim: absent, or a JSON number (integer or fraction).
fn numeric_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(JwtError::Malformed(Malformed::Claim(name))),
        Some(_) => Err(JwtError::Malformed(Malformed::Claim(name))),
    }
}

/// A string claim: absent, or a JSON string.
fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::Malformed(Malformed::Claim(name))),
    }
}

/// Checks `iss` against the accepted issuers (exact, case-sensitive match).
fn check_issuer(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), JwtError> {
    let issuer = string_claim(claims, "iss")?;
    if accepted.is_empty() || issuer.is_some_and(|iss| accepted.iter().any(|a| a == iss)) {
        Ok(())
    } else {
        Err(JwtError::IssuerMismatch)
    }
}

/// Checks that `aud` names at least one accepted audience.
fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), JwtError> {
    let audiences = audience_claim(claims)?;
    if accepted.is_empty()
        || audiences
            .iter()
            .any(|aud| accepted.iter().any(|a| a == aud))
    {
        Ok(())
    } else {
        Err(JwtError::AudienceMismatch)
    }
}

/// The `aud` claim as a list: absent is empty, a string is one entry, an
/// array must hold only strings.
fn audience_claim(claims: &Map<String, Value>) -> Result<Vec<&str>, JwtError> {
    let malformed = JwtError::Malformed(Malformed::Claim("aud"));
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(malformed.clone()))
            .collect(),
        Some(_) => Err(malformed),
    }
}

mod keys;
#[cfg(test)]
mod tests;

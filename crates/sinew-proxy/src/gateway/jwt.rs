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

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires 2048).
const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted, in bits (ring's verification limit).
const MAX_RSA_BITS: usize = 8192;

/// Largest RSA public exponent ring verifies with (2^33 - 1).
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// Decoder for JWK member values: base64url, padding tolerated (some key
/// servers pad; the JWKS is trusted configuration, so leniency costs nothing).
/// Tokens themselves use the strict `URL_SAFE_NO_PAD`.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Registered JWS algorithm names we recognise but refuse; an error may name
/// one of these, never an arbitrary string from a token.
const REFUSED_ALGORITHMS: &[&str] = &[
    "none", "HS256", "HS384", "HS512", "ES512", "ES256K", "Ed25519", "Ed448",
];

// ---------------------------------------------------------------------------
// Algorithms and keys
// ---------------------------------------------------------------------------

/// A JWS signature algorithm this module verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (salt length 32).
    Ps256,
    /// RSASSA-PSS with SHA-384 (salt length 48).
    Ps384,
    /// RSASSA-PSS with SHA-512 (salt length 64).
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA; only with Ed25519 keys.
    EdDsa,
}

impl Algorithm {
    /// Every supported algorithm, for name lookup.
    const ALL: [Algorithm; 9] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// The registered JWA name, as it appears in `alg`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The supported algorithm with this exact (case-sensitive) name.
    fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Whether a key of this kind can produce this algorithm's signatures.
    fn fits(self, kind: &KeyKind) -> bool {
        use Algorithm::*;
        matches!(
            (self, kind),
            (
                Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512,
                KeyKind::Rsa { .. }
            ) | (
                Es256,
                KeyKind::Ec {
                    curve: Curve::P256,
                    ..
                }
            ) | (
                Es384,
                KeyKind::Ec {
                    curve: Curve::P384,
                    ..
                }
            ) | (EdDsa, KeyKind::Ed25519 { .. })
        )
    }

    /// ring's parameters for the RSA algorithms; `None` for the others.
    fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        match self {
            Algorithm::Rs256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::Rs384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::Rs512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::Ps256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Algorithm::Ps384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Algorithm::Ps512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            Algorithm::Es256 | Algorithm::Es384 | Algorithm::EdDsa => None,
        }
    }

    /// ring's algorithm for the raw-public-key (EC, Ed25519) algorithms.
    fn point_algorithm(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        match self {
            // JWS ECDSA signatures are r||s of fixed width (RFC 7518 §3.4).
            Algorithm::Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED),
            Algorithm::Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED),
            Algorithm::EdDsa => Some(&signature::ED25519),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An elliptic curve usable for ECDSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
}

impl Curve {
    /// The JWK `crv` name.
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// Length in bytes of one affine coordinate.
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// The public key material of one usable JWK.
#[derive(Clone)]
enum KeyKind {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An EC public key as an uncompressed point `0x04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
    /// A 32-byte Ed25519 public key.
    Ed25519 { public: Vec<u8> },
}

impl fmt::Debug for KeyKind {
    /// Names the key type and size only; key bytes are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { n, .. } => write!(f, "RSA-{}", bit_length(n)),
            KeyKind::Ec { curve, .. } => write!(f, "EC {}", curve.name()),
            KeyKind::Ed25519 { .. } => f.write_str("OKP Ed25519"),
        }
    }
}

/// One usable verification key from a JWKS.
#[derive(Clone, Debug)]
struct Jwk {
    /// The key ID (`kid`), if the JWK has one.
    kid: Option<String>,
    /// The algorithm the JWK is restricted to (`alg`), if it declares one.
    alg: Option<Algorithm>,
    /// The key itself.
    kind: KeyKind,
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    fn accepts(&self, alg: Algorithm) -> bool {
        alg.fits(&self.kind) && self.alg.is_none_or(|declared| declared == alg)
    }

    /// Whether `sig` is a valid `alg` signature of `msg` under this key.
    fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match &self.kind {
            KeyKind::Rsa { n, e } => alg.rsa_parameters().is_some_and(|params| {
                let key = RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                };
                key.verify(params, msg, sig).is_ok()
            }),
            KeyKind::Ec { point: public, .. } | KeyKind::Ed25519 { public } => {
                alg.point_algorithm().is_some_and(|algorithm| {
                    UnparsedPublicKey::new(algorithm, public)
                        .verify(msg, sig)
                        .is_ok()
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------

/// A parsed JSON Web Key Set: the usable signature-verification keys of one
/// issuer, plus a note of each entry that was skipped.
///
/// `Debug` shows key IDs, types and sizes, never key bytes.
#[derive(Clone)]
pub(crate) struct Jwks {
    /// The usable keys, in document order.
    keys: Vec<Jwk>,
    /// Entries that were left out, and why.
    skipped: Vec<SkippedKey>,
}

impl Jwks {
    /// Parses a JWKS document (RFC 7517 §5). Members other than the public
    /// key parameters (`d`, `x5c`, ...) are ignored.
    ///
    /// Entries this module cannot use are skipped and listed in
    /// [`Jwks::skipped`]: unknown `kty`/`crv`, symmetric (`oct`) keys, keys
    /// whose `use`/`key_ops` exclude verification, RSA moduli under 2048
    /// bits, malformed members. Fails when the document is not a JWKS at all
    /// or when no usable key remains.
    pub(crate) fn parse(json: &[u8]) -> Result<Jwks, JwksError> {
        if json.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge);
        }
        let document: Value = serde_json::from_slice(json).map_err(|e| JwksError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAKeySet)?;
        let (keys, skipped) = parse_entries(entries);
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys(skipped));
        }
        Ok(Jwks { keys, skipped })
    }

    /// The number of usable keys (never zero).
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The entries that were skipped, for logging when a JWKS is loaded.
    pub(crate) fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The key IDs of the usable keys that have one, for logging.
    pub(crate) fn kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().filter_map(|key| key.kid.as_deref())
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("keys", &self.keys)
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

/// Splits JWKS entries into usable keys and skipped ones.
fn parse_entries(entries: &[Value]) -> (Vec<Jwk>, Vec<SkippedKey>) {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match parse_key(entry) {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push(SkippedKey {
                index,
                kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                reason,
            }),
        }
    }
    (keys, skipped)
}

/// Parses one JWK, or says why it cannot be used.
fn parse_key(entry: &Value) -> Result<Jwk, SkipReason> {
    let member = entry.as_object().ok_or(SkipReason::NotObject)?;
    let kid = optional_member(member, "kid")?.map(str::to_owned);
    check_usage(member)?;
    let kind = key_kind(member)?;
    let alg = declared_algorithm(member)?;
    if alg.is_some_and(|alg| !alg.fits(&kind)) {
        return Err(SkipReason::UnsupportedAlgorithm);
    }
    Ok(Jwk { kid, alg, kind })
}

/// Refuses keys whose `use` or `key_ops` rule out signature verification.
fn check_usage(member: &Map<String, Value>) -> Result<(), SkipReason> {
    if optional_member(member, "use")?.is_some_and(|usage| usage != "sig") {
        return Err(SkipReason::NotForSignatures);
    }
    match member.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => Ok(()),
        Some(Value::Array(_)) => Err(SkipReason::NotForSignatures),
        Some(_) => Err(SkipReason::BadParameter("key_ops")),
    }
}

/// The JWK's declared `alg`, which must be one we support.
fn declared_algorithm(member: &Map<String, Value>) -> Result<Option<Algorithm>, SkipReason> {
    match optional_member(member, "alg")? {
        None => Ok(None),
        Some(name) => Algorithm::from_name(name)
            .map(Some)
            .ok_or(SkipReason::UnsupportedAlgorithm),
    }
}

/// The key material, by `kty`.
fn key_kind(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
    match required_member(member, "kty")? {
        "RSA" => rsa_key(member),
        "EC" => ec_key(member),
        "OKP" => okp_key(member),
        "oct" => Err(SkipReason::Symmetric),
        _ => Err(SkipReason::UnsupportedKeyType),
    }
}

/// An RSA key from `n` and `e`, checked against ring's limits so that a
/// key accepted here is one ring will verify with.
fn rsa_key(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
    let n = strip_leading_zeros(key_bytes(member, "n")?);
    let e = strip_leading_zeros(key_bytes(member, "e")?);
    let bits = bit_length(&n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(SkipReason::RsaModulusSize(bits));
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        // An even modulus is not an RSA modulus.
        return Err(SkipReason::BadParameter("n"));
    }
    check_rsa_exponent(&e)?;
    Ok(KeyKind::Rsa { n, e })
}

/// Accepts odd public exponents from 3 to 2^33 - 1 (what ring verifies).
fn check_rsa_exponent(e: &[u8]) -> Result<(), SkipReason> {
    if e.is_empty() || e.len() > 5 {
        return Err(SkipReason::RsaExponent);
    }
    let value = e
        .iter()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
    if !(3..=MAX_RSA_EXPONENT).contains(&value) || value % 2 == 0 {
        return Err(SkipReason::RsaExponent);
    }
    Ok(())
}

/// An EC key from `crv`, `x` and `y` (full-length coordinates, RFC 7518
/// §6.2.1.2). Whether the point is on the curve is left to ring, at
/// verification time: an invalid point simply never verifies.
fn ec_key(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
    let curve = match required_member(member, "crv")? {
        "P-256" => Curve::P256,
        "P-384" => Curve::P384,
        _ => return Err(SkipReason::UnsupportedCurve),
    };
    let x = key_bytes(member, "x")?;
    let y = key_bytes(member, "y")?;
    let len = curve.coordinate_len();
    if x.len() != len || y.len() != len {
        return Err(SkipReason::CoordinateLength);
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(KeyKind::Ec { curve, point })
}

/// An octet key pair; only Ed25519 (RFC 8037) is supported.
fn okp_key(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
    if required_member(member, "crv")? != "Ed25519" {
        return Err(SkipReason::UnsupportedCurve);
    }
    let public = key_bytes(member, "x")?;
    if public.len() != 32 {
        return Err(SkipReason::CoordinateLength);
    }
    Ok(KeyKind::Ed25519 { public })
}

/// A string member that may be absent; present with another type is an error.
fn optional_member<'a>(
    member: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, SkipReason> {
    match member.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SkipReason::BadParameter(name)),
    }
}

/// A string member that must be present.
fn required_member<'a>(
    member: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, SkipReason> {
    optional_member(member, name)?.ok_or(SkipReason::BadParameter(name))
}

/// A required base64url-encoded member, decoded.
fn key_bytes(member: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, SkipReason> {
    let encoded = required_member(member, name)?;
    JWK_BASE64
        .decode(encoded)
        .map_err(|_| SkipReason::BadParameter(name))
}

/// Drops leading zero bytes (RFC 7518 forbids them in `n`/`e`, some
/// producers add them anyway; ring refuses them).
fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The bit length of a big-endian integer without leading zero bytes.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(&top) => (bytes.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// A JWKS entry that was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SkippedKey {
    /// Position in the document's `keys` array.
    pub(crate) index: usize,
    /// The entry's `kid`, if it had a string one.
    pub(crate) kid: Option<String>,
    /// Why it was left out.
    pub(crate) reason: SkipReason,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key #{}", self.index)?;
        if let Some(kid) = &self.kid {
            // The kid comes from the (trusted) JWKS; bounded and escaped
            // anyway, as it lands in logs.
            let short: String = kid.chars().take(64).collect();
            write!(f, " (kid {short:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why a JWKS entry cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// The entry is not a JSON object.
    NotObject,
    /// A member is missing, has the wrong type or is not valid base64url.
    BadParameter(&'static str),
    /// `use` is not `sig`, or `key_ops` lacks `verify`.
    NotForSignatures,
    /// A symmetric (`oct`) key: never used, see the module docs.
    Symmetric,
    /// `kty` is not RSA, EC or OKP.
    UnsupportedKeyType,
    /// `crv` is not P-256, P-384 or Ed25519.
    UnsupportedCurve,
    /// The declared `alg` is not supported or does not fit the key type.
    UnsupportedAlgorithm,
    /// The RSA modulus has this many bits, outside 2048..=8192.
    RsaModulusSize(usize),
    /// The RSA public exponent is even, below 3 or too large.
    RsaExponent,
    /// A coordinate or public key has the wrong length for the curve.
    CoordinateLength,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotObject => f.write_str("entry is not a JSON object"),
            SkipReason::BadParameter(name) => {
                write!(f, "member \"{name}\" is missing or invalid")
            }
            SkipReason::NotForSignatures => {
                f.write_str("key is not for signature verification (use/key_ops)")
            }
            SkipReason::Symmetric => f.write_str("symmetric (oct) keys are never used"),
            SkipReason::UnsupportedKeyType => f.write_str("key type (kty) is not supported"),
            SkipReason::UnsupportedCurve => f.write_str("curve (crv) is not supported"),
            SkipReason::UnsupportedAlgorithm => {
                f.write_str("declared algorithm (alg) is not supported for this key")
            }
            SkipReason::RsaModulusSize(bits) => write!(
                f,
                "RSA modulus has {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"
            ),
            SkipReason::RsaExponent => f.write_str("RSA public exponent is not supported"),
            SkipReason::CoordinateLength => {
                f.write_str("public key length does not match the curve")
            }
        }
    }
}

/// Why a JWKS document was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JwksError {
    /// Larger than [`MAX_JWKS_LEN`].
    TooLarge,
    /// Not JSON; the position of the syntax error.
    NotJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// JSON, but not an object with a `keys` array.
    NotAKeySet,
    /// A key set with no usable key; why each entry was skipped.
    NoUsableKeys(Vec<SkippedKey>),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge => write!(f, "JWKS exceeds {MAX_JWKS_LEN} bytes"),
            JwksError::NotJson { line, column } => {
                write!(f, "JWKS is not valid JSON (line {line}, column {column})")
            }
            JwksError::NotAKeySet => f.write_str("JWKS is not an object with a \"keys\" array"),
            JwksError::NoUsableKeys(skipped) if skipped.is_empty() => {
                f.write_str("JWKS has no keys")
            }
            JwksError::NoUsableKeys(skipped) => {
                f.write_str("JWKS has no usable signature key")?;
                for (i, key) in skipped.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{key}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for JwksError {}

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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaEncoding, RsaKeyPair,
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    use serde_json::json;

    /// The test clock.
    const NOW: u64 = 1_700_000_000;
    /// The issuer tokens name.
    const ISSUER: &str = "https://issuer.test";
    /// The audience tokens name.
    const AUDIENCE: &str = "api";

    /// A fixed 2048-bit RSA test key (PKCS#8), made with
    /// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`.
    const RSA_2048_PKCS8_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCtFutPU3mPMjOH
HPWlRsvp/9tbdBaqf0g4+KMl52punvg0RfubqXWVgJqwvcflLsOtOt8GgkdGMEEY
njqowiuWTQCFBYLS4pNfhYB8Q+assV9fHoXGF7KkZudAELV+UZaw5lw3UbHxEWzq
ZxI6qPyG0FlUbetq+2TroF2FK+G+P0J7opFbdqTwlnkVluXBqKlvBMEzgsBFf5pU
y3CsFJ6JGPS8UZUTwfBxhMc3wGvfNeEjMaYyWHECv9DhC92FEliU5nlp6tD7hwx3
aK1tjkuvOo/vyOMckUBb5TfgkL5okCoMm/736k94WhRsS0+UgAVqa7TCRq0jJwmj
Oju1rjgbAgMBAAECggEAQMpA95cL/AVzE0LMUnr/Lk6W+hMovtZZHvY2/6Oxi8nW
p56AkaJrgLQ8cyb+0bNhDJFqVUHj0wqR+1iTJYNVFHQrWx+WekDUoF9VGm7CRGc6
h1zh/yX0uSRJsInwneGFch8waoaagF2g8tb1FF8X85C+t2NTyV5jxu1mxEgKPo9J
CFTWMzAaX4hGHFlTQTqoxLQyfghEinrCgKHZILXEv+kjx+giQxav9TVw0Iiztt/s
z2ZkBXMUXzas9SgzUybFhaLNHy7APjHSIa2cJYyY+UOy8/Q0xd/kpTM8yyGXx92Y
YDohb79HolYIJpbIEYUNfM0t8j6pLXoA1CgUeE8PnQKBgQD0Ud+xqcO8YSlFWUy4
S3kGjdiJAE/lxY6DFv1Z968cXDz6s/WZVr4yRPEhjdwlSBsZBL8pHxTKydgMefa1
dzAh8BRIHe0g1xbSenBifeaPU8773pEvfqGYiStgGEsKVpKBMJBX5x/CRIYO4TWT
W+ogJmj+ZHKMRfO7B5oaZKnTpwKBgQC1XUnGJHSg3H8zspyHW7ZCn5Xoqw23wdgr
vO1p3XTRYRh8PJcWr5RREPHGkTYf3ki87boJHfBUE2Dpb1ySik5MSG6BEQKv/djV
m8aYXcoi6KiWbz2HC7oa8oI4rt+Q9dOaDaf3FjXR6LNrzNRkLaMqEEpK4uAuqI/B
+1i+jjNWbQKBgAVJSDfF3pBS4du4ROqv51x28Tp1oUTtc1nuw2iQ7V8Ft+QMxMGe
mNrplvYM5biAyOVPrvsqyv5gQ6ZxdR8UBxyU3zt4Oks9nCbNs2TOKJDtVUsp06Zd
bQ2p2iBoJieBHAZjkJv2Sj+fz+6+fLRFhtlPO3JVpgzW7qEbVwA/MVV9AoGABDyg
q5NQci2UfyWuCG95C4dk3iGY2XEa1rK8LRvyTa3h/4z+zpXddiNaMpRT2ly8AEXh
cbMUWTJ2sh1a4UV/3MJYaoV2NZxNg3f3JLoULcqXnaQNoOkCOPzvU9mp+V30yoWF
Jf2L1lKEVoFbeNekFyh4Q9WW/SAM87Ame5Ug1+UCgYATMDUfjqMVL2WI5xf8MC8K
/epi0HMPVD7PGuJq9ggTVBO3FMtiZsDyTKzqUPeBK9e734jeZ2W+W6hqTSBgTN1l
0O55wpCr0H1VqDRqUWA2BwlelQJ01bvfUrm2K+RQzVni/Vt0RQ/AaDtVNPO3cPjt
/f1dM9Csb6rJMhL/1R/erg==
-----END PRIVATE KEY-----
";

    /// Its modulus as `openssl rsa -modulus` prints it, base64url.
    const RSA_2048_N: &str = "rRbrT1N5jzIzhxz1pUbL6f_bW3QWqn9IOPijJedqbp74NEX7m6l1lYCasL3H5S7DrTrfBoJHRjBBGJ46qMIrlk0AhQWC0uKTX4WAfEPmrLFfXx6FxheypGbnQBC1flGWsOZcN1Gx8RFs6mcSOqj8htBZVG3ravtk66BdhSvhvj9Ce6KRW3ak8JZ5FZblwaipbwTBM4LARX-aVMtwrBSeiRj0vFGVE8HwcYTHN8Br3zXhIzGmMlhxAr_Q4QvdhRJYlOZ5aerQ-4cMd2itbY5LrzqP78jjHJFAW-U34JC-aJAqDJv-9-pPeFoUbEtPlIAFamu0wkatIycJozo7ta44Gw";

    /// Tokens signed by `openssl dgst` with that key (kid `rsa-1`, sub
    /// `openssl`, iss ISSUER, aud `api`, exp 2100-01-01): RS256, and PS256
    /// with `rsa_pss_saltlen:digest`.
    const OPENSSL_RS256: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJvcGVuc3NsIiwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIudGVzdCIsImF1ZCI6ImFwaSIsImV4cCI6NDEwMjQ0NDgwMH0.LXJvnbDfIY4BEWWa8dvujd-QAQzo21PPpuTABAVAiyY5mbAr3styKydTv2rjva8-bqEhNMhR026Z9bm1XIj0ZJwJ-fM0eVcuGzgP9xQz030O1CS4NWDIvULLXfzbjZdzZY-9C4ZQ5X6ht-DhAyEvO477aXgWxnuBypgMqMAlFIiLGUG9RDr_0XX8uj98AbHADDuF_1GcYoQyp9PSEbLaxO8S468EED6DXkDjdFBiQSvuTOTL3aVKWh9kEGx6BnbXMh3UndkDThylM7MEXuaI9PqvT7Wgjkii5YMbSeefCipOSpmtfd3s1rMuDx_X7-vP8w8UzRtLVvdMOuEr7T9Oww";
    /// See [`OPENSSL_RS256`].
    const OPENSSL_PS256: &str = "eyJhbGciOiJQUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJvcGVuc3NsIiwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIudGVzdCIsImF1ZCI6ImFwaSIsImV4cCI6NDEwMjQ0NDgwMH0.BXWGgw99b-wGIvdP2aRHs-5QrWBndbMrC_QXkxH4xJbr3cYgULeQKisUsRvlnNQRf1Y7lzgtfpX5IrTuSzP2TPehCH7n0Ok3NXtIWDkMbRWA8-jcH-T_wKi60my9uo2qjEmQeC-drSUIDxYhbksoCwoMlBFjcFMeGoYy-gCQRC33DYX01zbwVgoogTcjnQNDTHpdiG7Qnnk-_BBthTsTOUiGVLogXDYI1JGkGTRbGV0Jz-W1dZZDZlQMAQnqrTo8PCAxsQDQq9XBXiaEzomYBRvITUUrcbUnm20oGsFJV1Fdgs__DX2vrjV2KKQ2l_GhNCOVx3jd27GtP5h4HOjchQ";

    /// The modulus of a 1024-bit RSA key (openssl; ring cannot sign with it).
    const RSA_1024_N: &str = "mUJHxl-71YjnTYnZtx-dKnnpUF1C0jHeHHC7deJbGFqYS3w3sT5slJ7KagIx3AT6txAalwuvEe3XdYTAQhUC8eredESmgJ_z6nKPm9VH84TZCJyybzKZJaO9UjBqPpbh-88b0pCXLH8ZHZ5Dxg_XJYwZLgdClaObhOhm6Rbu6UM";
    /// An RS256 token (kid `weak`, same claims as above but sub `weak`)
    /// validly signed by that 1024-bit key with `openssl dgst`.
    const RSA_1024_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IndlYWsifQ.eyJzdWIiOiJ3ZWFrIiwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIudGVzdCIsImF1ZCI6ImFwaSIsImV4cCI6NDEwMjQ0NDgwMH0.BVtfgloRB6I0Ojmav2gp_w2G3PykzdV9TCTkwqFBfaDmnwxnqBluJ3Q5VMnlMBbG8qxTG29PxL2kdVozQ1iyo5BF45KEcbnX-bPkjXYZZXctHGqpEGx8geeCTfqZjJmsTNI823FH_iz_KvJFDLROwIz15sIe8Dsq3srilh2HE1o";

    /// A signing key with a matching public JWK.
    enum TestKey {
        /// The fixed RSA key.
        Rsa(RsaKeyPair),
        /// A fresh ECDSA key and its JWK curve name.
        Ec(EcdsaKeyPair, &'static str),
        /// A fresh Ed25519 key.
        Ed(Ed25519KeyPair),
    }

    impl TestKey {
        /// The fixed 2048-bit RSA key.
        fn rsa() -> TestKey {
            TestKey::Rsa(RsaKeyPair::from_pkcs8(&pem_der(RSA_2048_PKCS8_PEM)).unwrap())
        }

        /// A fresh ECDSA key for `alg`, named `crv` in its JWK.
        fn ec(alg: &'static EcdsaSigningAlgorithm, crv: &'static str) -> TestKey {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            TestKey::Ec(
                EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap(),
                crv,
            )
        }

        /// A fresh P-256 key.
        fn p256() -> TestKey {
            TestKey::ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
        }

        /// A fresh P-384 key.
        fn p384() -> TestKey {
            TestKey::ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
        }

        /// A fresh Ed25519 key.
        fn ed25519() -> TestKey {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            TestKey::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }

        /// The public JWK (no `alg`).
        fn jwk(&self, kid: &str) -> Value {
            match self {
                TestKey::Rsa(pair) => {
                    let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
                    json!({"kty": "RSA", "kid": kid, "n": b64(&public.n), "e": b64(&public.e)})
                }
                TestKey::Ec(pair, crv) => {
                    let point = pair.public_key().as_ref();
                    let len = (point.len() - 1) / 2;
                    assert_eq!(point[0], 0x04);
                    json!({
                        "kty": "EC", "crv": crv, "kid": kid,
                        "x": b64(&point[1..=len]), "y": b64(&point[1 + len..]),
                    })
                }
                TestKey::Ed(pair) => json!({
                    "kty": "OKP", "crv": "Ed25519", "kid": kid,
                    "x": b64(pair.public_key().as_ref()),
                }),
            }
        }

        /// The public JWK restricted to `alg`.
        fn jwk_with_alg(&self, kid: &str, alg: &str) -> Value {
            let mut jwk = self.jwk(kid);
            jwk["alg"] = json!(alg);
            jwk
        }

        /// Signs `msg` with `alg` (which must suit the key).
        fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                TestKey::Rsa(pair) => {
                    let mut sig = vec![0; pair.public().modulus_len()];
                    pair.sign(rsa_encoding(alg), &rng, msg, &mut sig).unwrap();
                    sig
                }
                TestKey::Ec(pair, _) => pair.sign(&rng, msg).unwrap().as_ref().to_vec(),
                TestKey::Ed(pair) => pair.sign(msg).as_ref().to_vec(),
            }
        }

        /// A compact token with this header and payload, signed with the
        /// header's `alg`.
        fn token(&self, header: &Value, payload: &Value) -> String {
            let input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
            let alg = header["alg"].as_str().unwrap();
            format!("{input}.{}", b64(self.sign(alg, input.as_bytes())))
        }
    }

    /// ring's signing encoding for an RSA JWS algorithm.
    fn rsa_encoding(alg: &str) -> &'static dyn RsaEncoding {
        match alg {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            "PS512" => &signature::RSA_PSS_SHA512,
            other => panic!("not an RSA algorithm: {other}"),
        }
    }

    /// Unpadded base64url.
    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The DER inside a PEM block.
    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body.trim()).unwrap()
    }

    /// A key set of these JWKs.
    fn jwks(keys: &[Value]) -> Jwks {
        Jwks::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    /// A header with `alg` and `kid`.
    fn header(alg: &str, kid: &str) -> Value {
        json!({"alg": alg, "typ": "JWT", "kid": kid})
    }

    /// Claims valid at [`NOW`] for [`strict`].
    fn claims() -> Value {
        json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 3600, "iat": NOW - 10})
    }

    /// [`claims`] with one claim replaced (or removed, with `Value::Null`).
    fn claims_with(name: &str, value: Value) -> Value {
        let mut claims = claims();
        let map = claims.as_object_mut().unwrap();
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_owned(), value);
        }
        claims
    }

    /// Requires ISSUER and AUDIENCE, default leeway, exp required.
    fn strict() -> Validation {
        Validation {
            issuers: vec![ISSUER.to_owned()],
            audiences: vec![AUDIENCE.to_owned()],
            ..Validation::default()
        }
    }

    /// A token with an explicit signature (for unsigned / HMAC tokens).
    fn token_with_signature(header: &Value, payload: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string()),
            b64(payload.to_string()),
            b64(sig)
        )
    }

    /// The error verifying `token` under `validation` at [`NOW`].
    fn error(token: &str, jwks: &Jwks, validation: &Validation) -> JwtError {
        verify(token, jwks, validation, NOW).unwrap_err()
    }

    /// An RSA key and a key set holding it as `rsa-1`.
    fn rsa_setup() -> (TestKey, Jwks) {
        let key = TestKey::rsa();
        let set = jwks(&[key.jwk("rsa-1")]);
        (key, set)
    }

    // --- valid tokens -----------------------------------------------------

    #[test]
    fn rs256_verifies_and_exposes_claims() {
        let (key, set) = rsa_setup();
        let token = key.token(&header("RS256", "rsa-1"), &claims());
        let claims = verify(&token, &set, &strict(), NOW).unwrap();
        assert_eq!(claims.subject(), Some("alice"));
        assert_eq!(claims.issuer(), Some(ISSUER));
        assert_eq!(claims.get("aud"), Some(&json!(AUDIENCE)));
        assert_eq!(claims.as_map().len(), 5);
        assert_eq!(claims.into_map()["exp"], json!(NOW + 3600));
    }

    #[test]
    fn ps256_verifies() {
        let (key, set) = rsa_setup();
        let token = key.token(&header("PS256", "rsa-1"), &claims());
        assert_eq!(
            verify(&token, &set, &strict(), NOW).unwrap().subject(),
            Some("alice")
        );
    }

    #[test]
    fn every_rsa_algorithm_verifies() {
        let (key, set) = rsa_setup();
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            let token = key.token(&header(alg, "rsa-1"), &claims());
            assert!(verify(&token, &set, &strict(), NOW).is_ok(), "{alg}");
        }
    }

    #[test]
    fn es256_verifies() {
        let key = TestKey::p256();
        let set = jwks(&[key.jwk("ec")]);
        let token = key.token(&header("ES256", "ec"), &claims());
        assert_eq!(
            verify(&token, &set, &strict(), NOW).unwrap().subject(),
            Some("alice")
        );
    }

    #[test]
    fn es384_verifies() {
        let key = TestKey::p384();
        let set = jwks(&[key.jwk_with_alg("ec", "ES384")]);
        let token = key.token(&header("ES384", "ec"), &claims());
        assert_eq!(
            verify(&token, &set, &strict(), NOW).unwrap().subject(),
            Some("alice")
        );
    }

    #[test]
    fn eddsa_verifies() {
        let key = TestKey::ed25519();
        let set = jwks(&[key.jwk("ed")]);
        let token = key.token(&header("EdDSA", "ed"), &claims());
        assert_eq!(
            verify(&token, &set, &strict(), NOW).unwrap().subject(),
            Some("alice")
        );
    }

    #[test]
    fn openssl_signed_tokens_verify() {
        // Interop: signatures not made by ring, key from openssl's modulus.
        let TestKey::Rsa(pair) = TestKey::rsa() else {
            unreachable!()
        };
        let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        assert_eq!(b64(&public.n), RSA_2048_N);
        let set = jwks(&[json!({"kty": "RSA", "kid": "rsa-1", "n": RSA_2048_N, "e": "AQAB"})]);
        for token in [OPENSSL_RS256, OPENSSL_PS256] {
            let claims = verify(token, &set, &strict(), NOW).unwrap();
            assert_eq!(claims.subject(), Some("openssl"));
        }
    }

    #[test]
    fn rsa_modulus_with_leading_zero_is_accepted() {
        let key = TestKey::rsa();
        let mut jwk = key.jwk("rsa-1");
        let mut n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        n.insert(0, 0);
        jwk["n"] = json!(b64(&n));
        let set = jwks(&[jwk]);
        let token = key.token(&header("RS256", "rsa-1"), &claims());
        assert!(verify(&token, &set, &strict(), NOW).is_ok());
    }

    #[test]
    fn padded_jwk_members_are_tolerated() {
        let key = TestKey::p256();
        let mut jwk = key.jwk("ec");
        for member in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(jwk[member].as_str().unwrap())
                .unwrap();
            jwk[member] = json!(URL_SAFE.encode(bytes));
            assert!(jwk[member].as_str().unwrap().ends_with('='));
        }
        let set = jwks(&[jwk]);
        let token = key.token(&header("ES256", "ec"), &claims());
        assert!(verify(&token, &set, &strict(), NOW).is_ok());
    }

    // --- time -------------------------------------------------------------

    #[test]
    fn expired_token_is_refused() {
        let (key, set) = rsa_setup();
        let token = key.token(
            &header("RS256", "rsa-1"),
            &claims_with("exp", json!(NOW - 61)),
        );
        assert_eq!(error(&token, &set, &strict()), JwtError::Expired);
    }

    #[test]
    fn expired_within_leeway_is_accepted_up_to_the_boundary() {
        let key = TestKey::ed25519();
        let set = jwks(&[key.jwk("ed")]);
        let at = |exp: Value, leeway_secs: u64| {
            let token = key.token(&header("EdDSA", "ed"), &claims_with("exp", exp));
            verify(
                &token,
                &set,
                &Validation {
                    leeway_secs,
                    ..strict()
                },
                NOW,
            )
        };
        assert!(at(json!(NOW - 59), 60).is_ok());
        assert_eq!(at(json!(NOW - 60), 60).unwrap_err(), JwtError::Expired);
        assert_eq!(at(json!(NOW), 0).unwrap_err(), JwtError::Expired);
        assert!(at(json!(NOW + 1), 0).is_ok());
        // Fractional NumericDate.
        assert!(at(json!(NOW as f64 + 0.5), 0).is_ok());
        assert_eq!(
            at(json!(NOW as f64 - 0.5), 0).unwrap_err(),
            JwtError::Expired
        );
        // Extremes neither panic nor pass wrongly.
        assert!(at(json!(1e300), 0).is_ok());
        assert_eq!(at(json!(-1), 0).unwrap_err(), JwtError::Expired);
        assert_eq!(at(json!(i64::MIN), 0).unwrap_err(), JwtError::Expired);
        assert!(at(json!(u64::MAX), 0).is_ok());
        assert!(at(json!(NOW - 100), u64::MAX).is_ok());
    }

    #[test]
    fn not_yet_valid_token_is_refused() {
        let key = TestKey::ed25519();
        let set = jwks(&[key.jwk("ed")]);
        let with_nbf =
            |nbf: u64| key.token(&header("EdDSA", "ed"), &claims_with("nbf", json!(nbf)));
        assert_eq!(
            error(&with_nbf(NOW + 61), &set, &strict()),
            JwtError::NotYetValid
        );
        assert!(verify(&with_nbf(NOW + 60), &set, &strict(), NOW).is_ok());
        assert!(verify(&with_nbf(NOW - 5), &set, &strict(), NOW).is_ok());
    }

    #[test]
    fn issued_in_the_future_is_refused() {
        let key = TestKey::ed25519();
        let set = jwks(&[key.jwk("ed")]);
        let with_iat =
            |iat: u64| key.token(&header("EdDSA", "ed"), &claims_with("iat", json!(iat)));
        assert_eq!(
            error(&with_iat(NOW + 61), &set, &strict()),
            JwtError::IssuedInFuture
        );
        assert!(verify(&with_iat(NOW + 60), &set, &strict(), NOW).is_ok());
    }

    #[test]
    fn missing_exp_is_refused_when_required() {
        let (key, set) = rsa_setup();
        let token = key.token(&header("RS256", "rsa-1"), &claims_with("exp", Value::Null));
        assert_eq!(error(&token, &set, &strict()), JwtError::MissingExpiry);
        let lenient = Validation {
            require_exp: false,
            ..strict()
        };
        assert!(verify(&token, &set, &lenient, NOW).is_ok());
    }

    #[test]
    fn time_claims_must_be_numbers() {
        let key = TestKey::ed25519();
        let set = jwks(&[key.jwk("ed")]);
        for name in ["exp", "nbf", "iat"] {
            for bad in [json!("1700000000"), json!(null), json!([1]), json!(true)] {
                let mut payload = claims();
                payload[name] = bad;
                let token = key.token(&header("EdDSA", "ed"), &payload);
                assert_eq!(
                    error(&token, &set, &strict()),
                    JwtError::Malformed(Malformed::Claim(name))
                );
            }
        }
    }

    // --- issuer and audience ----------------------------------------------

    #[test]
    fn issuer_must_match() {
        let key = TestKey::p256();
        let set = jwks(&[key.jwk("ec")]);
        let with_iss = |iss: Value| key.token(&header("ES256", "ec"), &claims_with("iss", iss));
        let wrong = with_iss(json!("https://evil.test"));
        assert_eq!(error(&wrong, &set, &strict()), JwtError::IssuerMismatch);
        let missing = with_iss(Value::Null);
        assert_eq!(error(&missing, &set, &strict()), JwtError::IssuerMismatch);
        let case = with_iss(json!("https://ISSUER.test"));
        assert_eq!(error(&case, &set, &strict()), JwtError::IssuerMismatch);
        let numeric = with_iss(json!(7));
        assert_eq!(
            error(&numeric, &set, &strict()),
            JwtError::Malformed(Malformed::Claim("iss"))
        );
        // Empty list: any issuer; several: any of them.
        let any = Validation {
            issuers: vec![],
            ..strict()
        };
        assert!(verify(&wrong, &set, &any, NOW).is_ok());
        assert!(verify(&missing, &set, &any, NOW).is_ok());
        let two = Validation {
            issuers: vec!["https://other.test".into(), "https://evil.test".into()],
            ..strict()
        };
        assert!(verify(&wrong, &set, &two, NOW).is_ok());
    }

    #[test]
    fn audience_string_must_match() {
        let key = TestKey::p256();
        let set = jwks(&[key.jwk("ec")]);
        let wrong = key.token(
            &header("ES256", "ec"),
            &claims_with("aud", json!("other-api")),
        );
        assert_eq!(error(&wrong, &set, &strict()), JwtError::AudienceMismatch);
        let missing = key.token(&header("ES256", "ec"), &claims_with("aud", Value::Null));
        assert_eq!(error(&missing, &set, &strict()), JwtError::AudienceMismatch);
        let any = Validation {
            audiences: vec![],
            ..strict()
        };
        assert!(verify(&wrong, &set, &any, NOW).is_ok());
        assert!(verify(&missing, &set, &any, NOW).is_ok());
    }

    #[test]
    fn audience_array_must_contain_an_accepted_one() {
        let key = TestKey::p256();
        let set = jwks(&[key.jwk("ec")]);
        let with_aud = |aud: Value| key.token(&header("ES256", "ec"), &claims_with("aud", aud));
        let wrong = with_aud(json!(["a", "b"]));
        assert_eq!(error(&wrong, &set, &strict()), JwtError::AudienceMismatch);
        let empty = with_aud(json!([]));
        assert_eq!(error(&empty, &set, &strict()), JwtError::AudienceMismatch);
        let right = with_aud(json!(["a", AUDIENCE]));
        assert!(verify(&right, &set, &strict(), NOW).is_ok());
        let two = Validation {
            audiences: vec!["x".into(), "b".into()],
            ..strict()
        };
        assert!(verify(&wrong, &set, &two, NOW).is_ok());
        for bad in [json!([AUDIENCE, 1]), json!(5), json!({"aud": AUDIENCE})] {
            let token = with_aud(bad);
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::Malformed(Malformed::Claim("aud"))
            );
        }
    }

    #[test]
    fn subject_must_be_a_string() {
        let key = TestKey::p256();
        let set = jwks(&[key.jwk("ec")]);
        let token = key.token(&header("ES256", "ec"), &claims_with("sub", json!(42)));
        assert_eq!(
            error(&token, &set, &strict()),
            JwtError::Malformed(Malformed::Claim("sub"))
        );
    }

    // --- signatures and keys ----------------------------------------------

    #[test]
    fn signature_from_another_key_is_refused() {
        let trusted = TestKey::p256();
        let attacker = TestKey::p256();
        let set = jwks(&[trusted.jwk("ec")]);
        let token = attacker.token(&header("ES256", "ec"), &claims());
        assert_eq!(error(&token, &set, &strict()), JwtError::BadSignature);
    }

    #[test]
    fn tampered_payload_is_refused() {
        let (key, set) = rsa_setup();
        let token = key.token(&header("RS256", "rsa-1"), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(claims_with("sub", json!("mallory")).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(error(&tampered, &set, &strict()), JwtError::BadSignature);
        // A flipped signature bit.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(error(&flipped, &set, &strict()), JwtError::BadSignature);
        // A truncated signature, and none at all.
        let short = format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..200]));
        assert_eq!(error(&short, &set, &strict()), JwtError::BadSignature);
        let empty = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(error(&empty, &set, &strict()), JwtError::BadSignature);
    }

    #[test]
    fn alg_none_is_refused() {
        let (_, set) = rsa_setup();
        let none = JwtError::UnsupportedAlgorithm(Some("none"));
        let unsigned = token_with_signature(&json!({"alg": "none"}), &claims(), b"");
        assert_eq!(error(&unsigned, &set, &strict()), none);
        let with_kid = token_with_signature(&header("none", "rsa-1"), &claims(), b"x");
        assert_eq!(error(&with_kid, &set, &strict()), none);
        for variant in ["None", "NONE", "nOnE", ""] {
            let token = token_with_signature(&json!({"alg": variant}), &claims(), b"");
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::UnsupportedAlgorithm(None)
            );
        }
        assert!(none.to_string().contains("unsigned"), "{none}");
    }

    #[test]
    fn hs256_with_the_rsa_public_key_as_secret_is_refused() {
        // The algorithm-confusion forgery: an HMAC keyed with public key bytes.
        let (key, set) = rsa_setup();
        let jwk = key.jwk("rsa-1");
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        for secret in [n, jwk.to_string().into_bytes()] {
            let head = header("HS256", "rsa-1");
            let input = format!("{}.{}", b64(head.to_string()), b64(claims().to_string()));
            let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            let tag = ring::hmac::sign(&mac_key, input.as_bytes());
            let token = format!("{input}.{}", b64(tag.as_ref()));
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::UnsupportedAlgorithm(Some("HS256"))
            );
        }
        for alg in ["HS384", "HS512"] {
            let token = token_with_signature(&header(alg, "rsa-1"), &claims(), &[0; 48]);
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::UnsupportedAlgorithm(Some(alg))
            );
        }
        let message = JwtError::UnsupportedAlgorithm(Some("HS256")).to_string();
        assert!(message.contains("symmetric"), "{message}");
    }

    #[test]
    fn other_algorithms_are_refused() {
        let (_, set) = rsa_setup();
        for (alg, named) in [
            ("ES512", Some("ES512")),
            ("RSA-OAEP", None),
            ("rs256", None),
        ] {
            let token = token_with_signature(&header(alg, "rsa-1"), &claims(), &[1; 64]);
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::UnsupportedAlgorithm(named)
            );
        }
        let missing = JwtError::Malformed(Malformed::HeaderParameter("alg"));
        let no_alg = token_with_signature(&json!({"typ": "JWT"}), &claims(), &[1; 64]);
        assert_eq!(error(&no_alg, &set, &strict()), missing);
        let numeric = token_with_signature(&json!({"alg": 256}), &claims(), &[1; 64]);
        assert_eq!(error(&numeric, &set, &strict()), missing);
    }

    #[test]
    fn header_alg_must_equal_the_jwk_alg() {
        let key = TestKey::rsa();
        let restricted = jwks(&[key.jwk_with_alg("rsa-1", "RS256")]);
        let ps256 = key.token(&header("PS256", "rsa-1"), &claims());
        assert_eq!(
            error(&ps256, &restricted, &strict()),
            JwtError::NoKeyForAlgorithm(Algorithm::Ps256)
        );
        let rs256 = key.token(&header("RS256", "rsa-1"), &claims());
        assert!(verify(&rs256, &restricted, &strict(), NOW).is_ok());
        // Without a declared alg the same key serves PS256 too.
        let open = jwks(&[key.jwk("rsa-1")]);
        assert!(verify(&ps256, &open, &strict(), NOW).is_ok());
    }

    #[test]
    fn header_alg_must_fit_the_key_type() {
        let rsa = TestKey::rsa();
        let p256 = TestKey::p256();
        let ed = TestKey::ed25519();
        let set = jwks(&[rsa.jwk("rsa-1"), p256.jwk("ec"), ed.jwk("ed")]);
        let cases = [
            (&p256, "ES256", "ES256", "rsa-1", Algorithm::Es256),
            (&ed, "EdDSA", "EdDSA", "ec", Algorithm::EdDsa),
            (&p256, "ES384", "ES256", "ec", Algorithm::Es384),
            (&rsa, "RS256", "RS256", "ed", Algorithm::Rs256),
        ];
        for (signer, alg, signing_alg, kid, expected) in cases {
            let head = b64(header(alg, kid).to_string());
            let input = format!("{head}.{}", b64(claims().to_string()));
            let token = format!(
                "{input}.{}",
                b64(signer.sign(signing_alg, input.as_bytes()))
            );
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::NoKeyForAlgorithm(expected)
            );
        }
    }

    #[test]
    fn unknown_kid_is_refused() {
        let (key, set) = rsa_setup();
        let token = key.token(&header("RS256", "rsa-2"), &claims());
        assert_eq!(error(&token, &set, &strict()), JwtError::UnknownKey);
        let numeric = key.token(&json!({"alg": "RS256", "kid": 1}), &claims());
        assert_eq!(
            error(&numeric, &set, &strict()),
            JwtError::Malformed(Malformed::HeaderParameter("kid"))
        );
    }

    #[test]
    fn without_kid_every_fitting_key_is_tried() {
        let first = TestKey::p256();
        let second = TestKey::p256();
        let rsa = TestKey::rsa();
        let set = jwks(&[rsa.jwk("rsa-1"), first.jwk("a"), second.jwk("b")]);
        let token = second.token(&json!({"alg": "ES256"}), &claims());
        assert!(verify(&token, &set, &strict(), NOW).is_ok());
        let rsa_token = rsa.token(&json!({"alg": "RS256"}), &claims());
        assert!(verify(&rsa_token, &set, &strict(), NOW).is_ok());
        let stranger = TestKey::p256().token(&json!({"alg": "ES256"}), &claims());
        assert_eq!(error(&stranger, &set, &strict()), JwtError::BadSignature);
        let no_ed_key = TestKey::ed25519().token(&json!({"alg": "EdDSA"}), &claims());
        assert_eq!(
            error(&no_ed_key, &set, &strict()),
            JwtError::NoKeyForAlgorithm(Algorithm::EdDsa)
        );
    }

    #[test]
    fn keys_sharing_a_kid_are_all_tried() {
        let old = TestKey::p256();
        let new = TestKey::p256();
        let set = jwks(&[old.jwk("k"), new.jwk("k")]);
        for key in [&old, &new] {
            let token = key.token(&header("ES256", "k"), &claims());
            assert!(verify(&token, &set, &strict(), NOW).is_ok());
        }
    }

    // --- header parameters --------------------------------------------------

    #[test]
    fn crit_is_refused() {
        let (key, set) = rsa_setup();
        for crit in [json!(["exp"]), json!([]), json!(["b64"])] {
            let head = json!({"alg": "RS256", "kid": "rsa-1", "crit": crit, "b64": true});
            let token = key.token(&head, &claims());
            assert_eq!(
                error(&token, &set, &strict()),
                JwtError::UnsupportedCritical
            );
        }
    }

    #[test]
    fn typ_is_checked() {
        let (key, set) = rsa_setup();
        let with_typ = |typ: Value| key.token(&json!({"alg": "RS256", "typ": typ}), &claims());
        for good in [
            "JWT",
            "jwt",
            "at+jwt",
            "AT+JWT",
            "application/jwt",
            "Application/at+JWT",
        ] {
            assert!(
                verify(&with_typ(json!(good)), &set, &strict(), NOW).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "dpop+jwt",
            "logout+jwt",
            "JOSE",
            "application/",
            "",
            "application/dpop+jwt",
        ] {
            assert_eq!(
                error(&with_typ(json!(bad)), &set, &strict()),
                JwtError::UnsupportedType
            );
        }
        assert_eq!(
            error(&with_typ(json!(1)), &set, &strict()),
            JwtError::Malformed(Malformed::HeaderParameter("typ"))
        );
        let untyped = key.token(&json!({"alg": "RS256"}), &claims());
        assert!(verify(&untyped, &set, &strict(), NOW).is_ok());
    }

    #[test]
    fn embedded_keys_in_the_header_are_ignored() {
        // A token carrying its own key (jwk/jku/x5c) is still checked
        // against the JWKS only.
        let attacker = TestKey::p256();
        let set = jwks(&[TestKey::p256().jwk("ec")]);
        let head = json!({
            "alg": "ES256", "kid": "ec", "jwk": attacker.jwk("ec"),
            "jku": "https://evil.test/jwks", "x5c": ["AAAA"],
        });
        let token = attacker.token(&head, &claims());
        assert_eq!(error(&token, &set, &strict()), JwtError::BadSignature);
    }

    // --- structure ----------------------------------------------------------

    #[test]
    fn padded_base64_is_refused_even_when_signed() {
        let (key, set) = rsa_setup();
        let head = json!({"alg": "RS256", "kid": "rsa-1"});
        let padded_header = URL_SAFE.encode(head.to_string());
        assert!(padded_header.ends_with('='));
        let input = format!("{padded_header}.{}", b64(claims().to_string()));
        let token = format!("{input}.{}", b64(key.sign("RS256", input.as_bytes())));
        assert_eq!(
            error(&token, &set, &strict()),
            JwtError::Malformed(Malformed::Padding(Part::Header))
        );
        // A 256-byte RSA signature pads with "==".
        let good = key.token(&head, &claims());
        let padded_sig = format!("{good}==");
        assert_eq!(
            error(&padded_sig, &set, &strict()),
            JwtError::Malformed(Malformed::Padding(Part::Signature))
        );
    }

    #[test]
    fn non_base64url_characters_and_trailing_bits_are_refused() {
        let (key, set) = rsa_setup();
        let good = key.token(&header("RS256", "rsa-1"), &claims());
        let (input, sig) = good.rsplit_once('.').unwrap();
        let (head, payload) = input.split_once('.').unwrap();
        let std_alphabet = format!("{head}.{payload}+.{sig}");
        assert_eq!(
            error(&std_alphabet, &set, &strict()),
            JwtError::Malformed(Malformed::Base64(Part::Payload))
        );
        let spaced = format!("{head} .{payload}.{sig}");
        assert_eq!(
            error(&spaced, &set, &strict()),
            JwtError::Malformed(Malformed::Base64(Part::Header))
        );
        // 256 bytes encode to 342 chars; the last carries 2 bits + 4 zero bits.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = sig.as_bytes()[sig.len() - 1];
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        assert_eq!(index % 16, 0);
        let noncanonical = format!(
            "{input}.{}{}",
            &sig[..sig.len() - 1],
            alphabet[index + 1] as char
        );
        assert_eq!(
            error(&noncanonical, &set, &strict()),
            JwtError::Malformed(Malformed::Base64(Part::Signature))
        );
        // A segment of impossible length (4n + 1).
        let odd = format!("{input}.{sig}AAA");
        assert_eq!(sig.len() % 4, 2);
        assert_eq!(
            error(&odd, &set, &strict()),
            JwtError::Malformed(Malformed::Base64(Part::Signature))
        );
    }

    #[test]
    fn segment_count_is_checked() {
        let (_, set) = rsa_setup();
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn";
        assert_eq!(error(jwe, &set, &strict()), JwtError::Encrypted);
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e.f",
            "{\"payload\":\"x\"}",
        ] {
            assert_eq!(
                error(bad, &set, &strict()),
                JwtError::Malformed(Malformed::SegmentCount),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oversized_token_is_refused_before_any_work() {
        let (key, set) = rsa_setup();
        assert_eq!(
            error(&"a".repeat(MAX_TOKEN_LEN + 1), &set, &strict()),
            JwtError::TooLong
        );
        let padded = |len: usize| claims_with("pad", json!("x".repeat(len)));
        let big = key.token(&header("RS256", "rsa-1"), &padded(MAX_TOKEN_LEN));
        assert!(big.len() > MAX_TOKEN_LEN);
        assert_eq!(error(&big, &set, &strict()), JwtError::TooLong);
        // A large but allowed token still verifies.
        let large = key.token(&header("RS256", "rsa-1"), &padded(10_000));
        assert!(large.len() > 12_000 && large.len() <= MAX_TOKEN_LEN);
        assert!(verify(&large, &set, &strict(), NOW).is_ok());
    }

    #[test]
    fn header_and_payload_must_be_json_objects() {
        let (key, set) = rsa_setup();
        let sign_raw = |head: &str, payload: &str| {
            let input = format!("{}.{}", b64(head), b64(payload));
            format!("{input}.{}", b64(key.sign("RS256", input.as_bytes())))
        };
        let head = r#"{"alg":"RS256","kid":"rsa-1"}"#;
        for payload in ["[1,2]", "\"sub\"", "not json", "", "{\"exp\":1"] {
            assert_eq!(
                error(&sign_raw(head, payload), &set, &strict()),
                JwtError::Malformed(Malformed::NotJsonObject(Part::Payload)),
                "{payload:?}"
            );
        }
        for bad_head in ["[\"RS256\"]", "not json", ""] {
            assert_eq!(
                error(&sign_raw(bad_head, "{}"), &set, &strict()),
                JwtError::Malformed(Malformed::NotJsonObject(Part::Header))
            );
        }
    }

    // --- JWKS ---------------------------------------------------------------

    #[test]
    fn jwks_skips_unusable_keys() {
        let good = TestKey::p256();
        let rsa = TestKey::rsa();
        let rsa_with = |member: &str, value: Value| {
            let mut jwk = rsa.jwk("r");
            jwk[member] = value;
            jwk
        };
        let mut short_x = good.jwk("short");
        short_x["x"] = json!(b64([1u8; 31]));
        let document = json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
            rsa_with("use", json!("enc")),
            rsa_with("key_ops", json!(["encrypt"])),
            rsa_with("alg", json!("RSA-OAEP")),
            rsa_with("alg", json!("ES256")),
            rsa_with("n", json!("not base64!")),
            rsa_with("e", json!(b64([1u8, 0, 0]))),
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "X25519", "x": b64([9u8; 32])},
            {"kty": "foo"},
            {"n": "AQAB"},
            short_x,
            "not an object",
            good.jwk_with_alg("good", "ES256"),
            rsa_with("key_ops", json!(["verify"])),
        ]});
        let set = Jwks::parse(document.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.kids().collect::<Vec<_>>(), ["good", "r"]);
        let reasons: Vec<SkipReason> = set.skipped().iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::Symmetric,
                SkipReason::NotForSignatures,
                SkipReason::NotForSignatures,
                SkipReason::UnsupportedAlgorithm,
                SkipReason::UnsupportedAlgorithm,
                SkipReason::BadParameter("n"),
                SkipReason::RsaExponent,
                SkipReason::UnsupportedCurve,
                SkipReason::UnsupportedCurve,
                SkipReason::UnsupportedKeyType,
                SkipReason::BadParameter("kty"),
                SkipReason::CoordinateLength,
                SkipReason::NotObject,
            ]
        );
        assert_eq!(set.skipped()[0].kid.as_deref(), Some("hmac"));
        assert_eq!(set.skipped()[12].index, 12);
        assert_eq!(
            set.skipped()[0].to_string(),
            "key #0 (kid \"hmac\"): symmetric (oct) keys are never used"
        );
        let token = good.token(&header("ES256", "good"), &claims());
        assert!(verify(&token, &set, &strict(), NOW).is_ok());
        // The skipped symmetric key is no way in either.
        let hs = token_with_signature(&header("HS256", "hmac"), &claims(), &[0; 32]);
        assert_eq!(
            error(&hs, &set, &strict()),
            JwtError::UnsupportedAlgorithm(Some("HS256"))
        );
    }

    #[test]
    fn jwks_that_is_not_a_key_set_is_an_error() {
        assert!(matches!(
            Jwks::parse(b"not json"),
            Err(JwksError::NotJson { line: 1, .. })
        ));
        assert!(matches!(Jwks::parse(b""), Err(JwksError::NotJson { .. })));
        assert!(matches!(
            Jwks::parse(b"{\"keys\": [}"),
            Err(JwksError::NotJson { .. })
        ));
        for not_a_set in [
            &b"[]"[..],
            b"{}",
            b"{\"keys\": {}}",
            b"{\"keys\": null}",
            b"42",
        ] {
            assert_eq!(Jwks::parse(not_a_set).unwrap_err(), JwksError::NotAKeySet);
        }
        let empty = Jwks::parse(b"{\"keys\": []}").unwrap_err();
        assert_eq!(empty, JwksError::NoUsableKeys(vec![]));
        assert_eq!(empty.to_string(), "JWKS has no keys");
        let only_oct = br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#;
        let err = Jwks::parse(only_oct).unwrap_err();
        let skipped = SkippedKey {
            index: 0,
            kid: None,
            reason: SkipReason::Symmetric,
        };
        assert_eq!(err, JwksError::NoUsableKeys(vec![skipped]));
        assert_eq!(
            err.to_string(),
            "JWKS has no usable signature key: key #0: symmetric (oct) keys are never used"
        );
        let huge = vec![b' '; MAX_JWKS_LEN + 1];
        assert_eq!(Jwks::parse(&huge).unwrap_err(), JwksError::TooLarge);
    }

    #[test]
    fn rsa_1024_bit_key_is_refused() {
        let weak =
            json!({"kty": "RSA", "kid": "weak", "n": RSA_1024_N, "e": "AQAB", "alg": "RS256"});
        let err = Jwks::parse(json!({ "keys": [weak] }).to_string().as_bytes()).unwrap_err();
        let JwksError::NoUsableKeys(skipped) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(skipped[0].reason, SkipReason::RsaModulusSize(1024));
        assert!(err.to_string().contains("1024 bits"), "{err}");
        // Next to a strong key the weak one is gone: its (validly signed)
        // token names an unknown kid, and cannot borrow the strong key's.
        let strong = TestKey::rsa();
        let set = jwks(&[weak.clone(), strong.jwk("rsa-1")]);
        assert_eq!(set.len(), 1);
        assert_eq!(error(RSA_1024_TOKEN, &set, &strict()), JwtError::UnknownKey);
        let same_kid = jwks(&[weak, strong.jwk("weak")]);
        assert_eq!(
            error(RSA_1024_TOKEN, &same_kid, &strict()),
            JwtError::BadSignature
        );
    }

    #[test]
    fn rsa_exponent_and_size_limits() {
        let rsa = TestKey::rsa();
        let with_e = |e: &[u8]| {
            let mut jwk = rsa.jwk("r");
            jwk["e"] = json!(b64(e));
            Jwks::parse(json!({ "keys": [jwk] }).to_string().as_bytes())
        };
        let reason = |result: Result<Jwks, JwksError>| match result {
            Err(JwksError::NoUsableKeys(skipped)) => skipped[0].reason,
            other => panic!("{other:?}"),
        };
        for bad in [&[][..], &[1], &[2], &[1, 0, 0, 0, 0, 0], &[2, 0, 0, 0, 1]] {
            assert_eq!(reason(with_e(bad)), SkipReason::RsaExponent, "{bad:?}");
        }
        assert_eq!(with_e(&[0, 1, 0, 1]).unwrap().len(), 1);
        assert_eq!(with_e(&[3]).unwrap().len(), 1);
        let huge = json!({"kty": "RSA", "n": b64(vec![0xffu8; 1025]), "e": "AQAB"});
        let result = Jwks::parse(json!({ "keys": [huge] }).to_string().as_bytes());
        assert_eq!(reason(result), SkipReason::RsaModulusSize(8200));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let rsa = TestKey::rsa();
        let ec = TestKey::p384();
        let ed = TestKey::ed25519();
        let (rsa_jwk, ec_jwk, ed_jwk) = (rsa.jwk("rsa-1"), ec.jwk("ec"), ed.jwk("ed"));
        let set = jwks(&[
            rsa_jwk.clone(),
            ec_jwk.clone(),
            ed_jwk.clone(),
            json!({"kty": "oct"}),
        ]);
        let debug = format!("{set:?}");
        for member in [&rsa_jwk["n"], &ec_jwk["x"], &ec_jwk["y"], &ed_jwk["x"]] {
            let encoded = member.as_str().unwrap();
            assert!(!debug.contains(&encoded[..12]), "{debug}");
        }
        for expected in ["RSA-2048", "EC P-384", "OKP Ed25519", "rsa-1", "skipped: 1"] {
            assert!(debug.contains(expected), "{debug}");
        }
        assert!(debug.len() < 400, "{debug}");
    }

    #[test]
    fn error_messages_do_not_echo_the_token() {
        let key = TestKey::p256();
        let set = jwks(&[key.jwk("ec")]);
        let marker = "SECRET-MARKER";
        let head = |alg: &str, kid: &str| json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let payload = claims_with("sub", json!(marker));
        let tokens = [
            key.token(&head("ES256", marker), &payload),
            key.token(&head("ES384", "ec"), &payload),
            key.token(&head("ES256", "ec"), &claims_with("iss", json!(marker))),
            key.token(&head("ES256", "ec"), &claims_with("aud", json!(marker))),
            key.token(&head("ES256", "ec"), &claims_with("exp", json!(1))),
            key.token(&json!({"alg": "ES256", "typ": marker}), &payload),
            TestKey::p256().token(&head("ES256", "ec"), &payload),
            token_with_signature(&head(marker, "ec"), &payload, b"sig"),
            format!("{}.{marker}.e30", b64("{}")),
        ];
        let mut seen = std::collections::HashSet::new();
        for token in &tokens {
            let message = error(token, &set, &strict()).to_string();
            assert!(!message.contains(marker), "{message}");
            for segment in token.split('.').filter(|s| s.len() > 3) {
                assert!(!message.contains(segment), "{message}");
            }
            seen.insert(message);
        }
        assert_eq!(
            seen.len(),
            tokens.len(),
            "distinct failures, distinct messages"
        );
    }

    #[test]
    fn bearer_token_is_extracted() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER x"), Some("x"));
        for none in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearerabc",
            "",
        ] {
            assert_eq!(bearer_token(none), None, "{none:?}");
        }
    }

    #[test]
    fn validation_defaults() {
        let default = Validation::default();
        assert!(default.issuers.is_empty() && default.audiences.is_empty());
        assert_eq!(default.leeway_secs, 60);
        assert!(default.require_exp);
    }
}

//! JSON Web Keys: the algorithms this module verifies and the key set
//! (JWKS) they come from, parsed strictly — an entry that cannot be used is
//! skipped with its reason, never half-used.

use super::*;

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires 2048).
pub(super) const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted, in bits (ring's verification limit).
pub(super) const MAX_RSA_BITS: usize = 8192;

/// Largest RSA public exponent ring verifies with (2^33 - 1).
pub(super) const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// Decoder for JWK member values: base64url, padding tolerated (some key
/// servers pad; the JWKS is trusted configuration, so leniency costs nothing).
/// Tokens themselves use the strict `URL_SAFE_NO_PAD`.
pub(super) const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
    pub(super) fn from_name(name: &str) -> Option<Algorithm> {
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
pub(super) enum Curve {
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
pub(super) enum KeyKind {
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
pub(super) struct Jwk {
    /// The key ID (`kid`), if the JWK has one.
    pub(super) kid: Option<String>,
    /// The algorithm the JWK is restricted to (`alg`), if it declares one.
    pub(super) alg: Option<Algorithm>,
    /// The key itself.
    pub(super) kind: KeyKind,
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    pub(super) fn accepts(&self, alg: Algorithm) -> bool {
        alg.fits(&self.kind) && self.alg.is_none_or(|declared| declared == alg)
    }

    /// Whether `sig` is a valid `alg` signature of `msg` under this key.
    pub(super) fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
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
    pub(super) keys: Vec<Jwk>,
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
pub(super) fn parse_entries(entries: &[Value]) -> (Vec<Jwk>, Vec<SkippedKey>) {
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
pub(super) fn parse_key(entry: &Value) -> Result<Jwk, SkipReason> {
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
pub(super) fn check_usage(member: &Map<String, Value>) -> Result<(), SkipReason> {
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
pub(super) fn declared_algorithm(
    member: &Map<String, Value>,
) -> Result<Option<Algorithm>, SkipReason> {
    match optional_member(member, "alg")? {
        None => Ok(None),
        Some(name) => Algorithm::from_name(name)
            .map(Some)
            .ok_or(SkipReason::UnsupportedAlgorithm),
    }
}

/// The key material, by `kty`.
pub(super) fn key_kind(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
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
pub(super) fn rsa_key(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
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
pub(super) fn check_rsa_exponent(e: &[u8]) -> Result<(), SkipReason> {
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
pub(super) fn ec_key(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
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
pub(super) fn okp_key(member: &Map<String, Value>) -> Result<KeyKind, SkipReason> {
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
pub(super) fn optional_member<'a>(
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
pub(super) fn required_member<'a>(
    member: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, SkipReason> {
    optional_member(member, name)?.ok_or(SkipReason::BadParameter(name))
}

/// A required base64url-encoded member, decoded.
pub(super) fn key_bytes(
    member: &Map<String, Value>,
    name: &'static str,
) -> Result<Vec<u8>, SkipReason> {
    let encoded = required_member(member, name)?;
    JWK_BASE64
        .decode(encoded)
        .map_err(|_| SkipReason::BadParameter(name))
}

/// Drops leading zero bytes (RFC 7518 forbids them in `n`/`e`, some
/// producers add them anyway; ring refuses them).
pub(super) fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The bit length of a big-endian integer without leading zero bytes.
pub(super) fn bit_length(bytes: &[u8]) -> usize {
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

//! Tests of JWT verification: tokens really signed (RSA from a fixed test
//! key, EC and Ed25519 keys made per run), against every refusal rule.
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
    let with_nbf = |nbf: u64| key.token(&header("EdDSA", "ed"), &claims_with("nbf", json!(nbf)));
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
    let with_iat = |iat: u64| key.token(&header("EdDSA", "ed"), &claims_with("iat", json!(iat)));
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
    let weak = json!({"kty": "RSA", "kid": "weak", "n": RSA_1024_N, "e": "AQAB", "alg": "RS256"});
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

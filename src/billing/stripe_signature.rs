//! Verifying `Stripe-Signature` exactly as Stripe's own libraries do.
//!
//! The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`. Each `v1` is
//! HMAC-SHA256 over `"{t}.{raw body}"` keyed with the whole endpoint secret (`whsec_…`, prefix
//! included). A rolled secret makes Stripe send several `v1` values: any match passes. Other
//! schemes (`v0`, unknown keys) are ignored. Comparison is constant-time, and the timestamp must
//! be within the tolerance of now (replay protection).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a webhook was refused; the message is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    MissingHeader,
    Malformed(&'static str),
    NoSignatures,
    OutsideTolerance { age_secs: i64 },
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::MissingHeader => write!(f, "missing Stripe-Signature header"),
            SignatureError::Malformed(why) => write!(f, "malformed Stripe-Signature header: {why}"),
            SignatureError::NoSignatures => write!(f, "Stripe-Signature has no v1 signature"),
            SignatureError::OutsideTolerance { age_secs } => write!(
                f,
                "Stripe-Signature timestamp is {age_secs}s away from now, outside the tolerance"
            ),
            SignatureError::Mismatch => write!(f, "no v1 signature matches the payload"),
        }
    }
}

/// Verifies `header` for `payload` at `now_secs`; returns the signed timestamp.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secret: &str,
    tolerance_secs: u64,
    now_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::MissingHeader)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match key {
            "t" => {
                let t = value
                    .parse()
                    .map_err(|_| SignatureError::Malformed("t is not a unix timestamp"))?;
                timestamp = Some(t);
            }
            "v1" => {
                let mut bytes = [0u8; 32];
                // A v1 that is not 64 hex characters can never match; skip it like Stripe does.
                if hex::decode_to_slice(value, &mut bytes).is_ok() {
                    signatures.push(bytes);
                }
            }
            _ => {} // v0 and future schemes are ignored
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignatures);
    }
    let expected = sign(timestamp, payload, secret);
    let matched = signatures.iter().fold(false, |any, candidate| {
        any | bool::from(candidate.ct_eq(&expected))
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let age_secs = now_secs - timestamp;
    if age_secs.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::OutsideTolerance { age_secs });
    }
    Ok(timestamp)
}

/// The v1 signature of `payload` at `timestamp` (also what tests use to sign their events).
pub fn sign(timestamp: i64, payload: &[u8], secret: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
    const VECTOR: &str = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";

    #[test]
    fn the_known_vector_verifies() {
        assert_eq!(hex::encode(sign(1_700_000_000, BODY, SECRET)), VECTOR);
        let header = format!("t=1700000000,v1={VECTOR}");
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 300, 1_700_000_100),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn any_of_several_v1_passes_and_other_schemes_are_ignored() {
        let other = "0".repeat(64);
        let header = format!("t=1700000000,v0=abc,v1={other},v1={VECTOR},x=1");
        assert!(verify(Some(&header), BODY, SECRET, 300, 1_700_000_000).is_ok());
        let header = format!("t=1700000000,v0={VECTOR}");
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 300, 1_700_000_000),
            Err(SignatureError::NoSignatures)
        );
    }

    #[test]
    fn forged_expired_and_malformed_headers_fail() {
        let header = format!("t=1700000000,v1={VECTOR}");
        let tampered = br#"{"id":"evt_test_webhook","object":"evenT"}"#;
        assert_eq!(
            verify(Some(&header), tampered, SECRET, 300, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, "whsec_other", 300, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(Some(&header), BODY, SECRET, 300, 1_700_000_301),
            Err(SignatureError::OutsideTolerance { age_secs: 301 })
        ));
        assert_eq!(
            verify(None, BODY, SECRET, 300, 0),
            Err(SignatureError::MissingHeader)
        );
        assert!(matches!(
            verify(Some("garbage"), BODY, SECRET, 300, 0),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(Some(&format!("t=soon,v1={VECTOR}")), BODY, SECRET, 300, 0),
            Err(SignatureError::Malformed(_))
        ));
    }
}

//! TLS for Ocelli's server and agent, on rustls with the `ring` provider only (no aws-lc-rs, no
//! OpenSSL, nothing installed process-wide: every config is built with its own
//! `builder_with_provider`). It owns:
//! - certificate fingerprints (`fingerprint`, `parse_pin`): `sha256:<64 hex>`, how an agent pins
//!   an Ocelli-made CA;
//! - the server side (`server`: `ServerFiles`, `ServerTls`, which re-reads its files when they
//!   change; `listener`: `TlsListener`, axum's `Listener` doing handshakes off the accept loop);
//! - the client side (`client`: `Trust`, `Identity`, `client_config`, `connect`);
//! - an Ocelli-made CA (`auto`: `auto` for `[tls] auto = true`, `sign_client` for client
//!   certificates).
//!
//! Protocol versions are rustls' defaults, TLS 1.3 and TLS 1.2; nothing older can be negotiated
//! (rustls implements neither TLS 1.1 nor 1.0).
//!
//! It hands off what to serve and whom to call: it knows no Ocelli config file, no route and no
//! other Ocelli crate. Errors are `String`s naming the file or host at fault, not a `thiserror`
//! enum as in the other library crates: every caller only reports them, there is nothing to match
//! on.

mod auto;
mod client;
mod listener;
mod pem;
mod server;
mod stream;

pub use auto::{AutoTls, auto, sign_client};
pub use client::{Identity, Trust, client_config, connect};
pub use listener::{Peer, TlsListener};
pub use server::{ServerFiles, ServerTls};
pub use stream::{ClientStream, connect_stream};
pub use tokio_rustls::rustls;

use std::sync::Arc;

/// The `ring` crypto provider every config of this crate is built with.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The prefix of a written fingerprint.
const PIN_PREFIX: &str = "sha256:";

/// The SHA-256 fingerprint of a DER certificate, as `sha256:<64 lowercase hex>`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = sha256(cert_der);
    let mut out = String::with_capacity(PIN_PREFIX.len() + 64);
    out.push_str(PIN_PREFIX);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// SHA-256 of `data`.
fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Parses a fingerprint as `fingerprint` writes it: `sha256:` then 64 hex digits, upper or lower
/// case, either run together or as 32 pairs separated by `:` (as `openssl x509 -fingerprint`
/// prints them).
pub fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let Some(hex) = s.strip_prefix(PIN_PREFIX) else {
        return Err(format!("pin {s:?} does not start with {PIN_PREFIX:?}"));
    };
    let digits: Vec<u8> = if hex.contains(':') {
        let pairs: Vec<&str> = hex.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return Err(format!(
                "pin {s:?}: expected 32 pairs of hex digits separated by ':' after \
                 {PIN_PREFIX:?}, found {} groups",
                pairs.len()
            ));
        }
        pairs.concat().into_bytes()
    } else {
        hex.as_bytes().to_vec()
    };
    if let Some((i, c)) = hex.char_indices().find(|&(_, c)| c != ':' && !c.is_ascii_hexdigit()) {
        return Err(format!(
            "pin {s:?}: {c:?} at position {} is not a hex digit",
            PIN_PREFIX.len() + i
        ));
    }
    if digits.len() != 64 {
        return Err(format!(
            "pin {s:?}: expected 64 hex digits after {PIN_PREFIX:?}, found {}",
            digits.len()
        ));
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
    }
    Ok(out)
}

/// The value of an ASCII hex digit (checked by the caller).
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.wrapping_sub(b'A').wrapping_add(10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trip() {
        let fp = fingerprint(b"not really a certificate");
        assert!(fp.starts_with("sha256:"));
        assert_eq!(fp.len(), 7 + 64);
        assert_eq!(fp, fp.to_lowercase());
        let pin = parse_pin(&fp).unwrap();
        assert_eq!(pin, sha256(b"not really a certificate"));
        // uppercase and ':'-separated pairs
        assert_eq!(parse_pin(&format!("sha256:{}", fp[7..].to_uppercase())).unwrap(), pin);
        let pairs: Vec<String> = fp.as_bytes()[7..]
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
            .collect();
        assert_eq!(parse_pin(&format!("sha256:{}", pairs.join(":"))).unwrap(), pin);
    }

    #[test]
    fn known_fingerprint() {
        // sha256("abc"), FIPS 180-2 appendix B.1
        assert_eq!(
            fingerprint(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_pins() {
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            parse_pin(&format!("sha1:{good}")).unwrap_err(),
            format!("pin \"sha1:{good}\" does not start with \"sha256:\"")
        );
        assert_eq!(
            parse_pin(good).unwrap_err(),
            format!("pin \"{good}\" does not start with \"sha256:\"")
        );
        assert_eq!(
            parse_pin("sha256:ba78").unwrap_err(),
            "pin \"sha256:ba78\": expected 64 hex digits after \"sha256:\", found 4"
        );
        assert_eq!(
            parse_pin(&format!("sha256:{good}00")).unwrap_err(),
            format!("pin \"sha256:{good}00\": expected 64 hex digits after \"sha256:\", found 66")
        );
        let bad = format!("sha256:{}x", &good[..63]);
        assert_eq!(
            parse_pin(&bad).unwrap_err(),
            format!("pin \"{bad}\": 'x' at position 70 is not a hex digit")
        );
        assert_eq!(
            parse_pin("sha256:ab:cd").unwrap_err(),
            "pin \"sha256:ab:cd\": expected 32 pairs of hex digits separated by ':' after \
             \"sha256:\", found 2 groups"
        );
        assert_eq!(
            parse_pin("sha256:").unwrap_err(),
            "pin \"sha256:\": expected 64 hex digits after \"sha256:\", found 0"
        );
    }
}

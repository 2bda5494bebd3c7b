//! Request bodies: read whole under a size limit ([`read_body`], 413 past it) and
//! decompressed under another ([`request_body`], plain or gzip). Every handler that takes a
//! body reads it through these, so a limit is enforced with the same precise message everywhere.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use crate::{Error, Result};

/// Reads a request body, refusing (413) one larger than `max` bytes without reading on.
pub async fn read_body(body: Body, max: usize) -> Result<Bytes> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // to_bytes fails for an oversized body or a broken connection; say which
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            Error::TooLarge(format!("request body is over the limit of {max} bytes"))
        } else {
            Error::BadData(format!("cannot read the request body: {e}"))
        }
    })
}

/// The body as sent, or gunzipped when `Content-Encoding: gzip`, never more than `max` bytes.
pub fn request_body(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes> {
    use std::io::Read;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(body),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Error::BadData(format!("gzip body does not decompress: {e}")))?;
            if out.len() > max {
                return Err(Error::BadData(format!(
                    "body decompresses to more than the limit of {max} bytes"
                )));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(Error::BadData(format!(
            "unsupported Content-Encoding {other:?}: send the body plain or gzip"
        ))),
    }
}

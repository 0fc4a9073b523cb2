//! Helpers shared by the vendor modules' unit tests.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use hmac::Mac;

use crate::shell::sources::common::{Draft, HmacSha1, HmacSha256, Request, Source};
use crate::workflow::sources::{SourceSpec, parse};

pub fn spec(yaml_entry: &str) -> SourceSpec {
    let src = format!("sources:\n  t: {yaml_entry}\n");
    let mut d = Vec::new();
    let s = parse(std::path::Path::new("sources.yaml"), &src, &[], &mut d);
    assert!(d.is_empty(), "{d:?}");
    s.get("t").cloned().expect("source t")
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    h
}

pub fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

pub fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = HmacSha1::new_from_slice(key).expect("key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

pub fn fixture(vendor: &str, file: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sources")
        .join(vendor)
        .join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Map a vendor's fixture file through `source`, as if posted with no headers.
pub fn map_fixture(
    source: &impl Source,
    spec_entry: &str,
    vendor: &str,
    file: &str,
    now: DateTime<Utc>,
) -> Vec<Draft> {
    let spec = spec(spec_entry);
    let h = HeaderMap::new();
    let body = fixture(vendor, file);
    let req = Request {
        headers: &h,
        query: None,
        body: &body,
    };
    source.map(&spec, &req, now).expect(file)
}

pub fn kinds(d: &[Draft]) -> Vec<&'static str> {
    d.iter().map(|x| x.kind.as_str()).collect()
}

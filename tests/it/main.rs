//! Every integration test, in one binary: each file here was a test binary of its own that
//! compiled `common` again (and linked the whole crate again); as modules they share one
//! build and one harness. A test's name is `FILE::…` (`conformance::sqlite::…`,
//! `image::image_…`), so `cargo nextest run -E 'test(/^e2e::/)'` runs one former binary.
//!
//! Fixtures are read from `tests/fixtures/` and `tests/golden/`, found from
//! `CARGO_MANIFEST_DIR`.

mod common;

mod access;
mod ack_links;
mod at_risk;
mod bench;
mod calendars;
mod cli;
mod conformance;
mod differential;
mod e2e;
mod erasure;
mod faults;
mod golden;
mod image;
mod lifecycle;
mod oncall;
mod prometheus;
mod report;
mod retention;
mod secret_logs;
mod shipping;
mod sources;
mod tls;
mod traffic;
mod upgrades;
mod validate;

//! Loading a workflow directory: `*.yaml` workflows, `calendars.yaml`, `routes.yaml` and
//! `templates/`. Parse, don't validate: YAML becomes the raw shapes of [`raw`], which
//! [`load`] reads and parses, and [`compile`] turns into the typed model of
//! `crate::core::model`. Every problem found is a [`Diag`] with file, line and column, and all
//! of them are reported at once.
//!
//! Layers, bottom up (no file imports one above it, and none imports this one, which only
//! declares and re-exports): the leaves [`raw`], [`diag`], [`env`], [`routes`]; then
//! [`files`] (the directory as text, YAML → raw) and [`ctx`] (what the compilers share);
//! [`templates`], [`version`], [`sources`], [`oncall`]; [`config`] (the loaded result);
//! [`coverage`]; [`compile`]; and [`load`] on top.

pub mod compile;
pub mod config;
pub mod coverage;
mod ctx;
pub mod diag;
pub mod env;
pub mod files;
pub mod load;
pub mod oncall;
pub mod raw;
pub mod routes;
pub mod sources;
pub mod templates;
pub mod version;

pub use config::Config;
pub use diag::{Diag, render_diags};
pub use load::{check_dir, load_dir, load_dir_at, load_version};
pub use routes::{ChannelEntry, Route, Routes};
pub use templates::Templates;

/// Fuzzing of the event decoder and this loader (generated and mutated input).
#[cfg(test)]
mod fuzz_tests;

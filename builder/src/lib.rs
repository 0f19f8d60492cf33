//! strata-builder: the build executor. It runs the [`strata_dockerfile::plan::BuildGraph`] the
//! front end plans ([`exec`]): steps, snapshots, the build cache, progress and outputs.
//!
//! See docs/ARCHITECTURE.md for this crate's room.

pub mod exec;

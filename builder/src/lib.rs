//! strata-builder: the Dockerfile front end ([`dockerfile`]) and the build planner ([`plan`]).
//!
//! See ../shared/design/ARCHITECTURE.md for this crate's room. The planner's output,
//! [`plan::BuildGraph`], is the contract with the executor.

pub mod dockerfile;
pub mod exec;
pub mod plan;

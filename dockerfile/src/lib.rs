//! strata-dockerfile: the Dockerfile front end and the build planner. Pure: no I/O, no syscalls,
//! no other strata crate; it turns Dockerfile text into a [`plan::BuildGraph`], which the
//! executor (`strata-builder`) runs, as BuildKit's `dockerfile2llb` turns one into LLB.
//!
//! The front end, in three layers as BuildKit has them:
//!
//! 1. [`lines`] — the line parser: directives, comments, continuations, heredocs, JSON vs shell
//!    form; produces an [`Ast`] of nodes that keep their source lines;
//! 2. [`instructions`] — typed instructions with their flags validated ([`flags`], [`mounts`]),
//!    grouped into build stages;
//! 3. [`lexer`] — shell-word expansion (`$var`, `${var:-word}`, quotes, escapes), used by the
//!    planner ([`plan`]) when it expands instruction arguments.
//!
//! [`source`] reads the text within BuildKit's limits (64 KiB lines, a 16 MiB file).
//! [`dump`] renders the AST in BuildKit's test-dump format; [`errors`] renders BuildKit-style
//! `Dockerfile:7` snippets.

pub mod chmod;
pub mod directives;
pub mod dump;
pub mod errors;
pub mod flags;
pub mod heredoc;
pub mod instructions;
pub mod lexer;
pub mod lines;
pub mod mounts;
pub mod plan;
pub mod source;

pub use errors::{render_snippet, Span};
pub use instructions::{parse_dockerfile, parse_prefix, Dockerfile, ParseError};
pub use lines::{Ast, Node};

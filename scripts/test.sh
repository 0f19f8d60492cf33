#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every crate's unit, integration and
# end-to-end tests (real skopeo/umoci/buildah/registry/overlayfs/FUSE/namespaces; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TERM_COLOR=never
# Habits first: formatting, lints and docs are part of the suite, not a separate chore.
cargo fmt --all --check
# No module cycle in any crate (docs/ARCHITECTURE.md's module graphs come from the same script).
python3 scripts/module-cycles.py
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads="${STRATA_TEST_THREADS:-2}"

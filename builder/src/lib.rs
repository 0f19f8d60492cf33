//! strata-builder: see ../shared/design/ARCHITECTURE.md for this crate's room.

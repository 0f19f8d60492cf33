//! The layer codec: tar writer, safe applier, compression.

pub mod apply;
pub mod compress;
pub mod write;

pub use apply::{apply_layer, ApplyMode, ApplyStats};
pub use compress::{decompress, Compression, Encoder, ParallelGzip, UnknownCompression};
pub use write::{
    append_entry, source_date_epoch_from_env, write_layer_blob, write_layer_stream, write_tree_tar,
    LayerInfo, TarOptions, TreeFormat,
};

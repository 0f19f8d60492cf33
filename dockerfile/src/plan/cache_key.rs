//! Build-cache keys.
//!
//! A [`CacheKey`] is a sha256 over a step's inputs, chained to its parent's key: the planner
//! knows the instruction and the build args it uses ([`CacheKeyInputs`]), the executor adds the
//! stage base and the content digests of what the step reads (`strata-builder`'s `exec::cache`).
//! What a stage base or a step passes down the chain is a [`ChainKey`]: a key, or
//! [`Uncacheable`] when an input cannot be known before the step runs — then no step chained to
//! it has a key either, and none is looked up or recorded.
//!
//! The bytes hashed never change: the store keeps entries under a key's text (`sha256:<hex>`,
//! [`CacheKey`]'s `Display`), and a different hash would turn every existing on-disk build
//! cache into misses (`cache_keys_are_pinned` in the crate's tests holds them).

use std::fmt;

use sha2::{Digest, Sha256};

/// What a step's cache key is chained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The stage's base (image digest, empty for scratch, or the base stage's last key).
    Base,
    /// The step at this position in the same stage.
    Step(usize),
}

/// The inputs of a step's cache key, known at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKeyInputs {
    /// The canonical text of the expanded instruction.
    pub instruction: String,
    /// The key this one is chained to.
    pub parent: Parent,
    /// Build args the step uses, with their values, in declaration order (RUN: every ARG in
    /// scope, a valueless one as `K=`).
    pub build_args: Vec<(String, String)>,
}

impl CacheKeyInputs {
    /// The key of a step with these inputs: sha256 over the parent's key, the expanded
    /// instruction, the build args it uses and the content digests of what it reads (COPY/ADD
    /// file contents, `--mount` sources, in order).
    pub fn key(&self, parent: &CacheKey, content_digests: &[&str]) -> CacheKey {
        let mut h = Sha256::new();
        h.update(b"strata-cache-v1\0");
        update_part(&mut h, &parent.to_string());
        update_part(&mut h, &self.instruction);
        for (k, v) in &self.build_args {
            update_part(&mut h, k);
            update_part(&mut h, v);
        }
        h.update(b"\0content\0");
        for d in content_digests {
            update_part(&mut h, d);
        }
        CacheKey(h.finalize().into())
    }
}

/// Feeds one length-prefixed part (u64 little-endian length, then the bytes): parts cannot run
/// into each other, `["ab", "c"]` and `["a", "bc"]` hash differently.
fn update_part(h: &mut Sha256, part: &str) {
    h.update((part.len() as u64).to_le_bytes());
    h.update(part.as_bytes());
}

/// A build-cache key: 32 bytes of sha256, written `sha256:<hex>` (what the store files entries
/// under).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key with these digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    /// sha256 over `parts`, each length-prefixed (a stage base's key: the executor hashes the
    /// base's identity with what changes every layer's bytes).
    pub fn of_parts(parts: &[&str]) -> CacheKey {
        let mut h = Sha256::new();
        for p in parts {
            update_part(&mut h, p);
        }
        CacheKey(h.finalize().into())
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// Why a step (and every step chained to it) has no cache key: an input it reads cannot be
/// known before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncacheable {
    /// ADD of a URL or a git repository: the content is only known by fetching it.
    RemoteSource,
    /// `--from` / `from=` a stage (by Dockerfile index) that has no key.
    Stage(usize),
    /// `--from` / `from=` an image that could not be resolved before the step (by reference).
    Image(String),
}

impl fmt::Display for Uncacheable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uncacheable::RemoteSource => write!(f, "reads a URL or git source"),
            Uncacheable::Stage(i) => write!(f, "reads stage {i}, which has no cache key"),
            Uncacheable::Image(r) => write!(f, "reads image {r}, which could not be resolved"),
        }
    }
}

/// What a stage base or a step passes to the next step's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainKey {
    /// A key: looked up before the step runs, recorded after.
    Key(CacheKey),
    /// No key, for this step and every one chained to it.
    Uncacheable(Uncacheable),
}

impl ChainKey {
    /// The key, unless uncacheable.
    pub fn key(&self) -> Option<&CacheKey> {
        match self {
            ChainKey::Key(k) => Some(k),
            ChainKey::Uncacheable(_) => None,
        }
    }

    /// The key chained to this one by `next` (which is not called when this is uncacheable).
    pub fn then(&self, next: impl FnOnce(&CacheKey) -> ChainKey) -> ChainKey {
        match self {
            ChainKey::Key(k) => next(k),
            ChainKey::Uncacheable(why) => ChainKey::Uncacheable(why.clone()),
        }
    }
}

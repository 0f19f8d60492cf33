//! Loading nftables scripts: in process through libnftables (libnftables(3), Debian's
//! `libnftables1`, opened with dlopen(3) so strata neither links against it nor needs its
//! headers), or, when that library is missing, with `nft -f -` (the same parser, one process
//! start more). Neither there is a clear error naming the packages.
//!
//! Why libnftables rather than a crate that speaks nftables' netlink API (`rustables`,
//! `nftables`): the rules are written in nft's own language, parsed by the same code as the
//! `nft` binary (so they read as in netavark's and our README), and the `nftables` crate runs
//! the binary anyway. A context is created per script: libnftables contexts are not
//! thread-safe, and creating one costs microseconds next to the kernel's transaction.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use super::tools::batch;
use super::NetworkError;

/// The library's soname (Debian 12: libnftables1 1.0.6).
const SONAME: &CStr = c"libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxStr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The functions of libnftables strata calls.
struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxInt,
    buffer_error: CtxInt,
    error_buffer: CtxStr,
    run_cmd_from_buffer: RunCmd,
}

/// Looks up `name` in the library `handle`.
fn symbol(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `handle` is a live dlopen handle (never closed) and `name` NUL-terminated.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

impl Lib {
    /// dlopens libnftables once per process; `None` when it is not installed.
    fn get() -> Option<&'static Lib> {
        static LIB: OnceLock<Option<Lib>> = OnceLock::new();
        LIB.get_or_init(Lib::load).as_ref()
    }

    fn load() -> Option<Lib> {
        // SAFETY: dlopen with a NUL-terminated soname; the handle is kept for the process's
        // lifetime (never dlclose'd), so the symbols below stay valid.
        let handle = unsafe { libc::dlopen(SONAME.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: each symbol has the C signature libnftables(3) documents for it, the types
        // above spell out: nft_ctx_new(uint32_t), nft_ctx_free(ctx), nft_ctx_buffer_output(ctx),
        // nft_ctx_buffer_error(ctx), nft_ctx_get_error_buffer(ctx),
        // nft_run_cmd_from_buffer(ctx, const char *).
        unsafe {
            Some(Lib {
                ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(symbol(
                    handle,
                    c"nft_ctx_new",
                )?),
                ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(symbol(
                    handle,
                    c"nft_ctx_free",
                )?),
                buffer_output: std::mem::transmute::<*mut c_void, CtxInt>(symbol(
                    handle,
                    c"nft_ctx_buffer_output",
                )?),
                buffer_error: std::mem::transmute::<*mut c_void, CtxInt>(symbol(
                    handle,
                    c"nft_ctx_buffer_error",
                )?),
                error_buffer: std::mem::transmute::<*mut c_void, CtxStr>(symbol(
                    handle,
                    c"nft_ctx_get_error_buffer",
                )?),
                run_cmd_from_buffer: std::mem::transmute::<*mut c_void, RunCmd>(symbol(
                    handle,
                    c"nft_run_cmd_from_buffer",
                )?),
            })
        }
    }

    /// Runs `script` in a fresh context; `Err` carries nft's error text.
    fn run(&self, script: &CStr) -> Result<(), NftRejected> {
        // SAFETY: NFT_CTX_DEFAULT (0); a null return is checked.
        let ctx = unsafe { (self.ctx_new)(0) };
        if ctx.is_null() {
            return Err(NftRejected("nft_ctx_new failed (out of memory?)".into()));
        }
        // SAFETY: `ctx` is the live context created above, used by this thread only and freed
        // once at the end; the error buffer is read before the free, copied out.
        unsafe {
            (self.buffer_output)(ctx);
            (self.buffer_error)(ctx);
            let rc = (self.run_cmd_from_buffer)(ctx, script.as_ptr());
            let out = if rc == 0 {
                Ok(())
            } else {
                let e = (self.error_buffer)(ctx);
                Err(NftRejected(if e.is_null() {
                    format!("error {rc}")
                } else {
                    CStr::from_ptr(e).to_string_lossy().trim().to_string()
                }))
            };
            (self.ctx_free)(ctx);
            out
        }
    }
}

/// libnftables refused a script (or could not start): its own error text, which the caller
/// turns into a [`NetworkError::Tool`] naming what the rules were for.
#[derive(Debug)]
struct NftRejected(String);

/// Loads `script` (nft syntax) as one transaction; `what` says what it does, for the error.
/// Neither libnftables nor `nft` installed is [`NetworkError::ToolMissing`].
pub(super) fn run(script: &str, what: impl Into<String>) -> Result<(), NetworkError> {
    let Some(lib) = Lib::get() else {
        return batch("nft", &["-f", "-"], script, what);
    };
    let c = CString::new(script).map_err(|_| NetworkError::Invalid {
        what: "nftables script",
        value: script.to_string(),
        why: "contains a NUL byte",
    })?;
    lib.run(&c)
        .map_err(|NftRejected(stderr)| NetworkError::Tool {
            tool: "libnftables",
            what: what.into(),
            stderr,
        })
}

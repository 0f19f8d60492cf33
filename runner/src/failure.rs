//! Errors inside the container's setup process: a message and Docker's exit code, sent back to
//! the parent over the setup pipe (the child can't return a Rust error across `fork`).

/// Exit code Docker uses for the runtime's own failures.
pub const EXIT_RUNTIME_ERROR: i32 = 125;
/// Exit code for a command that exists but can't be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit code for a command that isn't found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// A setup failure in the child.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_RUNTIME_ERROR,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn not_executable(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_NOT_EXECUTABLE,
            message: message.into(),
        }
    }
}

/// Adds "what we were doing" to an errno.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, nix::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(format!("{}: {}", what(), e.desc())))
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(format!("{}: {e}", what())))
    }
}

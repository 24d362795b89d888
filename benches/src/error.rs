//! The error every part of the benchmark returns. A benchmark run either
//! completes or stops at its first failure with a message to read, so one
//! boxed error carries them all; `main` prints it as one line.

/// Any error, with its message; `Send + Sync` so it crosses tasks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

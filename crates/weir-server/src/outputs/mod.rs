//! Outputs that live inside the server crate because they need no buffer: `stdout` and `null`.

mod null;
mod stdout;

pub use null::NullOutput;
pub use stdout::StdoutOutput;

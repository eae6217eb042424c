//! The output plugins as the pipeline sees them: `stdout` and `null`, which need no buffer; the
//! routing outputs `copy`, `relabel` and `rewrite_tag_filter`, which hand events on through the
//! pipeline's router; and [`BufferedOutput`], which puts a `<buffer>` in front of a chunk writer
//! (the file, S3 and webhook outputs), with its `<secondary>` ([`secondary`]).

mod buffered;
mod copy;
pub(crate) mod null;
mod relabel;
mod rewrite_tag;
pub mod secondary;
mod stdout;

pub use buffered::{BufferedOutput, RetryView, SinkStarter, Sinks, WriteStats};
pub use copy::{CopyOutput, CopyStore};
pub use null::NullOutput;
pub use relabel::RelabelOutput;
pub use rewrite_tag::RewriteTagOutput;
pub use stdout::StdoutOutput;

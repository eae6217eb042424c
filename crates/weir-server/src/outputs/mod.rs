//! Outputs that live inside the server crate because they need no buffer: `stdout` and `null`,
//! and the routing outputs `copy`, `relabel` and `rewrite_tag_filter`, which hand events on
//! through the pipeline's router.

mod copy;
mod null;
mod relabel;
mod rewrite_tag;
mod stdout;

pub use copy::{CopyOutput, CopyStore};
pub use null::NullOutput;
pub use relabel::RelabelOutput;
pub use rewrite_tag::RewriteTagOutput;
pub use stdout::StdoutOutput;

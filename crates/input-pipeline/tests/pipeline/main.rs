//! Integration tests of `shardfeed-input-pipeline`: each guarantee of the crate docs.

mod behaviour;
mod tfrecord;

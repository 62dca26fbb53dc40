//! Integration tests of `shardfeed-input-pipeline`: each guarantee of the crate docs.

mod autotune;
mod behaviour;
mod tfrecord;

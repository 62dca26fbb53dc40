//! Integration tests of `shardfeed-record-format`, in one binary (faster to build).

mod damage;
mod index;
mod round_trip;
mod support;
mod tensorflow;
mod tf_written;

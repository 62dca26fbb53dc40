//! Path arguments: a URL is refused when the flags are parsed (exit 2), never taken for a
//! local folder named `s3:`; `file:///PATH` is `PATH`.

use std::path::PathBuf;

use clap::builder::{OsStringValueParser, TypedValueParser};

/// A local path (see [`shardfeed_dataset::layout::local_path`]).
pub fn local() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().try_map(|text| {
        shardfeed_dataset::layout::local_path(&text).map_err(|error| error.to_string())
    })
}

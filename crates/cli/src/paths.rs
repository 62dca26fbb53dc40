//! Path arguments: where object storage is supported (shard folders, source images) a URL
//! is kept; elsewhere it is refused when the flags are parsed (exit 2), never taken for a
//! local folder named `s3:`; `file:///PATH` is `PATH`.

use std::path::PathBuf;

use clap::builder::{OsStringValueParser, TypedValueParser};
use shardfeed_dataset::folder::Location;

/// A local path or an object-storage URL, parsed once here ([`Location::parse`]).
pub fn location() -> impl TypedValueParser<Value = Location> {
    OsStringValueParser::new()
        .try_map(|text| Location::parse(&text).map_err(|error| error.to_string()))
}

/// A local path (see [`shardfeed_dataset::folder::local_path`]).
pub fn local() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().try_map(|text| {
        shardfeed_dataset::folder::local_path(&text).map_err(|error| error.to_string())
    })
}

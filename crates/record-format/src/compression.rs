//! Whole-file compression of TFRecord files (TensorFlow's `compression_type`).

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::str::FromStr;

use flate2::bufread::{MultiGzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

/// How a TFRecord file is compressed as a whole.
///
/// The choice is always explicit: nothing is guessed from a file name or its first bytes,
/// as in TensorFlow, where `compression_type` is an argument of `TFRecordDataset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Plain records (TensorFlow's `compression_type=""`).
    #[default]
    None,
    /// One gzip stream over the whole file (`"GZIP"`); concatenated gzip members are accepted on read.
    Gzip,
    /// One zlib stream over the whole file (`"ZLIB"`).
    Zlib,
}

impl Compression {
    /// Every variant, in display order.
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zlib];

    /// The name TensorFlow uses for `compression_type` (`""`, `"GZIP"`, `"ZLIB"`).
    pub fn tensorflow_name(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "GZIP",
            Compression::Zlib => "ZLIB",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zlib => "zlib",
        })
    }
}

/// The error of parsing a [`Compression`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: expected none, gzip or zlib")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zlib" => Ok(Compression::Zlib),
            _ => Err(UnknownCompression(name.to_owned())),
        }
    }
}

/// A reader that undoes a file's [`Compression`].
pub(crate) enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(Box<MultiGzDecoder<R>>),
    Zlib(Box<ZlibDecoder<R>>),
}

impl<R: BufRead> Decoder<R> {
    pub(crate) fn new(inner: R, compression: Compression) -> Self {
        match compression {
            Compression::None => Decoder::Plain(inner),
            Compression::Gzip => Decoder::Gzip(Box::new(MultiGzDecoder::new(inner))),
            Compression::Zlib => Decoder::Zlib(Box::new(ZlibDecoder::new(inner))),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zlib(r) => r.read(buf),
        }
    }
}

/// A writer that applies a file's [`Compression`].
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
    Zlib(ZlibEncoder<W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(inner: W, compression: Compression) -> Self {
        let level = flate2::Compression::default();
        match compression {
            Compression::None => Encoder::Plain(inner),
            Compression::Gzip => Encoder::Gzip(GzEncoder::new(inner, level)),
            Compression::Zlib => Encoder::Zlib(ZlibEncoder::new(inner, level)),
        }
    }

    /// Writes the compressed stream's trailer and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zlib(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zlib(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(buf),
            Encoder::Gzip(w) => w.write_all(buf),
            Encoder::Zlib(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zlib(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_round_trip() {
        for c in Compression::ALL {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
            assert_eq!(c.tensorflow_name().parse::<Compression>(), Ok(c));
        }
        assert!("lz4".parse::<Compression>().is_err());
    }
}

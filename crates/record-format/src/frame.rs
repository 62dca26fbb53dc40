//! The TFRecord frame, shared by every reader and writer.
//!
//! ```text
//! offset 0        8              12            12+n             16+n
//!        | u64 LE n | u32 LE masked | data (n bytes) | u32 LE masked |
//!        | length   | crc32c(length)|                | crc32c(data)  |
//! ```

use crate::crc::masked_crc32c;
use crate::{Compression, Corruption, Error, Location, Result};

/// Bytes of framing before the payload: the length and its CRC.
pub const HEADER_LEN: usize = 12;
/// Bytes of framing after the payload: the data CRC.
pub const FOOTER_LEN: usize = 4;
/// All framing bytes of one record.
pub const FRAMING_LEN: u64 = (HEADER_LEN + FOOTER_LEN) as u64;

/// How readers treat the bytes they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// The file's compression; never guessed.
    pub compression: Compression,
    /// Check both CRCs of every record (the default, and what TensorFlow always does).
    ///
    /// `false` skips the two CRC computations for speed. A damaged payload is then handed
    /// to the caller as if it were good; truncation and absurd lengths are still detected.
    pub verify: bool,
    /// The longest payload accepted, in bytes. A header that announces more is reported as
    /// [`Corruption::AbsurdLength`] before anything is allocated. Default: 1 GiB (protobuf
    /// messages cannot exceed 2 GiB anyway).
    pub max_record_len: u64,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            compression: Compression::None,
            verify: true,
            max_record_len: 1 << 30,
        }
    }
}

impl ReaderOptions {
    /// Options for a file with the given compression, other fields at their defaults.
    pub fn compression(compression: Compression) -> Self {
        ReaderOptions {
            compression,
            ..Self::default()
        }
    }
}

/// The 12 header bytes announcing a payload of `len` bytes.
#[inline]
pub fn encode_header(len: u64) -> [u8; HEADER_LEN] {
    let len_bytes = len.to_le_bytes();
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&len_bytes);
    header[8..].copy_from_slice(&masked_crc32c(&len_bytes).to_le_bytes());
    header
}

/// The 4 footer bytes of a payload.
#[inline]
pub fn encode_footer(data: &[u8]) -> [u8; FOOTER_LEN] {
    masked_crc32c(data).to_le_bytes()
}

/// Checks a header and returns the payload length it announces.
#[inline]
pub(crate) fn decode_header(
    header: &[u8; HEADER_LEN],
    options: &ReaderOptions,
    at: impl FnOnce() -> Location,
) -> Result<u64> {
    let len_bytes: [u8; 8] = header[..8].try_into().expect("header has 8 length bytes");
    if options.verify {
        let stored = u32::from_le_bytes(header[8..].try_into().expect("header has 4 crc bytes"));
        let computed = masked_crc32c(&len_bytes);
        if stored != computed {
            return Err(corrupt(
                at(),
                Corruption::LengthCrcMismatch { stored, computed },
            ));
        }
    }
    let length = u64::from_le_bytes(len_bytes);
    if length > options.max_record_len {
        return Err(corrupt(
            at(),
            Corruption::AbsurdLength {
                length,
                limit: options.max_record_len,
            },
        ));
    }
    Ok(length)
}

/// Checks a payload against its footer.
#[inline]
pub(crate) fn check_footer(
    data: &[u8],
    footer: &[u8; FOOTER_LEN],
    options: &ReaderOptions,
    at: impl FnOnce() -> Location,
) -> Result<()> {
    if options.verify {
        let stored = u32::from_le_bytes(*footer);
        let computed = masked_crc32c(data);
        if stored != computed {
            let at = at();
            let payload_offset = at.offset + HEADER_LEN as u64;
            return Err(corrupt(
                at,
                Corruption::DataCrcMismatch {
                    payload_offset,
                    stored,
                    computed,
                },
            ));
        }
    }
    Ok(())
}

pub(crate) fn corrupt(at: Location, problem: Corruption) -> Error {
    Error::Corrupt { at, problem }
}

/// The error for a frame cut short: `available` bytes from the record's offset to the end.
pub(crate) fn truncated(at: Location, length: u64, available: u64) -> Error {
    corrupt(
        at,
        Corruption::TruncatedPayload {
            length,
            needed: length.saturating_add(FRAMING_LEN),
            available,
        },
    )
}

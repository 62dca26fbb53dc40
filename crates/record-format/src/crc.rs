//! Masked CRC-32C, as TensorFlow stores it in every TFRecord frame.
//!
//! The checksum itself comes from the `crc32c` crate, which uses the SSE4.2 `crc32`
//! instruction on x86-64 and the ARMv8 CRC extension on aarch64 (with a software fallback
//! picked at run time), not a byte-at-a-time table loop.

/// The constant TensorFlow adds when masking a CRC (`kMaskDelta` in `tensorflow/core/lib/hash/crc32c.h`).
const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC-32C the way TFRecord does: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
#[inline]
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverts [`mask`].
#[inline]
pub fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// The masked CRC-32C of `bytes`, as stored in a TFRecord frame.
#[inline]
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    mask(crc32c::crc32c(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C check value from RFC 3720 (iSCSI), appendix B.4.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn mask_round_trips() {
        for crc in [0, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
            assert_eq!(unmask(mask(crc)), crc);
        }
    }

    #[test]
    fn mask_matches_tensorflow_for_a_known_length_field() {
        // Record 0 of the TensorFlow-written fixture has length 2711; TF stored 3149765427.
        assert_eq!(masked_crc32c(&2711u64.to_le_bytes()), 3_149_765_427);
    }
}

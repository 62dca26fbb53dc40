//! Exact resume: the fingerprint a saved state is checked against, the state at a position,
//! and the position a saved state continues from.

use super::*;

impl Loader {
    /// A fingerprint of the files (names and counts) and the order's settings.
    pub fn fingerprint(&self) -> String {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut mix = |bytes: &[u8]| {
            for &byte in bytes {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (file, count) in self.files.iter().zip(self.counts.iter()) {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            mix(name.unwrap_or_default().as_bytes());
            mix(&count.to_le_bytes());
        }
        mix(&self.order.fingerprint().to_le_bytes());
        mix(&(self.config.batch_size as u64).to_le_bytes());
        mix(&[u8::from(self.config.drop_remainder)]);
        format!("{hash:016x}")
    }

    /// The state to save at `position`.
    pub fn state(&self, position: Position) -> LoaderState {
        LoaderState {
            format: STATE_FORMAT.to_owned(),
            epoch: position.epoch,
            offset: position.offset,
            records: self.records(),
            fingerprint: self.fingerprint(),
            batch_size: self.config.batch_size,
            world_size: self.config.world_size,
            size: None,
        }
    }

    /// The position a saved state continues from, after checking it belongs to these files
    /// and settings.
    pub fn position_of(&self, state: &LoaderState) -> Result<Position> {
        let bad = |reason: String| Err(Error::BadLoaderState(reason));
        if state.format != STATE_FORMAT {
            return bad(format!(
                "format {:?}, expected {STATE_FORMAT:?}",
                state.format
            ));
        }
        if state.epoch > MAX_EPOCH {
            return bad(format!("epoch {} is past {MAX_EPOCH}", state.epoch));
        }
        if state.world_size == 0 {
            return bad("world_size 0: a state is saved by at least one rank".into());
        }
        if let Err(error) = crate::limits::check_batch(state.batch_size, state.world_size) {
            return bad(format!("saved with {error}"));
        }
        if state.records != self.records() {
            return bad(format!(
                "saved over {} records, these files hold {}",
                state.records,
                self.records()
            ));
        }
        if state.batch_size != self.config.batch_size {
            return bad(format!(
                "saved with batch_size {}, this loader has {}",
                state.batch_size, self.config.batch_size
            ));
        }
        if state.fingerprint != self.fingerprint() {
            return bad(
                "saved over other files or another order (seed, shuffle, split, drop_remainder)"
                    .into(),
            );
        }
        if state.offset > self.records() {
            return bad(format!(
                "offset {} is past the epoch's {} records",
                state.offset,
                self.records()
            ));
        }
        if !self.config.deterministic {
            return bad("exact resume needs deterministic=True".into());
        }
        Ok(Position {
            epoch: state.epoch,
            offset: state.offset,
        })
    }
}

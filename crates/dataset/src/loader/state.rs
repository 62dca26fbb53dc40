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

impl Loader {
    /// Where this rank stands after `batches` more of its batches from `position`, handed out
    /// in turn by `workers` `DataLoader` workers (0: iterated in this process): for a
    /// training process whose workers iterate copies of the loader and which counts the
    /// batches it received. Inside the epoch's whole steps that is `batches × world_size ×
    /// batch_size` records on; all of the epoch's batches is the next epoch's start. A count
    /// that cannot be continued exactly is refused: one inside a step of the workers' batches
    /// (not a multiple of `workers`: resumed there, the rest would be cut into other steps),
    /// one inside the last, uneven batches of an epoch that does not fill its steps
    /// (`drop_remainder = false`), one past the epoch's end.
    pub fn position_after(
        &self,
        position: Position,
        batches: u64,
        workers: usize,
    ) -> Result<Position> {
        let config = if workers > 0 {
            self.config.in_worker(0, workers)?
        } else {
            self.config.clone()
        };
        let per_turn = workers.max(1) as u64;
        let records = self.records();
        let start = position.offset.min(records);
        let step = (config.batch_size * config.world_size) as u64;
        let steps = (records - start) / step;
        let tail = (records - start) % step;
        let whole = steps * per_turn;
        let all = whole
            + if tail > 0 && !config.drop_remainder {
                per_turn
            } else {
                0
            };
        let record_per_batch = (self.config.batch_size * self.config.world_size) as u64;
        if batches == all {
            return Ok(Position {
                epoch: position.epoch + 1,
                offset: 0,
            });
        }
        if batches > all {
            return Err(Error::Invalid(format!(
                "{batches} batches on from epoch {} record {start}: this rank has {all} to \
                 the epoch's end",
                position.epoch
            )));
        }
        if !batches.is_multiple_of(per_turn) {
            // Resumed mid-step, the rest would be cut into steps from there, and its last
            // batches would differ from the uninterrupted run's.
            return Err(Error::Invalid(format!(
                "{batches} batches is inside a step of {workers} workers' batches, which \
                 cannot be continued exactly: save after a multiple of {workers}"
            )));
        }
        if batches > whole {
            return Err(Error::Invalid(format!(
                "{batches} batches on from epoch {} record {start} lies inside the epoch's last, \
                 uneven batches ({whole} whole, {all} in all), which cannot be continued \
                 exactly: save before them or at the epoch's end",
                position.epoch
            )));
        }
        Ok(Position {
            epoch: position.epoch,
            offset: start + batches * record_per_batch,
        })
    }
}

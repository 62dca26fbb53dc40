//! The one training order (SPEC §3), used by `shardfeed train`, `stream` and the Python
//! `Loader` alike: the files shuffled (seeded, per epoch), read 16 at a time one record from
//! each in turn, through a shuffle buffer, repeated. Validation reads the same interleave
//! without shuffling.

use shardfeed_input_pipeline::{Plan, Repeat};

/// Files read at once (`interleave(cycle_length=16, block_length=1)`).
pub const INTERLEAVE_CYCLE: usize = 16;

/// The shuffle buffer of training (`shuffle(2048)`).
pub const SHUFFLE_BUFFER: usize = 2048;

/// The training order over `plan`'s files: seeded file shuffle (none where `buffer` ≤ 1, an
/// unshuffled read), interleave, a shuffle buffer of `buffer` records, `repeat`.
pub fn training_order(plan: Plan, seed: u64, buffer: usize, repeat: Repeat) -> Plan {
    plan.seed(seed)
        .shuffle_sources(buffer > 1)
        .interleave(INTERLEAVE_CYCLE, 1)
        .shuffle(buffer)
        .repeat(repeat)
}

/// The validation order: the files in order, interleaved, one pass.
pub fn validation_order(plan: Plan) -> Plan {
    plan.interleave(INTERLEAVE_CYCLE, 1)
}

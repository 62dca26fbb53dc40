//! The Loader's worker pipelines: the cached decode of the seed's squares, and one epoch's
//! transforms with draws keyed by (seed, epoch, record); damaged records as slots.

use super::slabs::Slabs;
use super::*;

pub(super) fn decode_pipeline(
    source: Arc<TfRecordSource>,
    rules: RecordRules,
    counts: Arc<[u64]>,
) -> Pipeline<Slot> {
    // One epoch of nothing: every epoch's plan replaces it (`map_plan`).
    let plan = Plan::with_order(counts, Vec::new());
    Pipeline::new_init(
        plan,
        RecordDecoder::new,
        move |decoder: &mut RecordDecoder, address: Address| -> Result<Slot, BoxError> {
            match decode_at(&source, decoder, &rules, address) {
                Ok(Ok(decoded)) => Ok(Slot::Image(address, decoded)),
                Ok(Err(damaged)) => Ok(Slot::Damaged(Arc::new(damaged))),
                Err(error) => damaged_slot(&source, address, error),
            }
        },
    )
}

/// A record the record layer refused, as a damaged slot where the damage is the record's
/// (a bad frame or CRC), else the error (I/O).
fn damaged_slot(
    source: &TfRecordSource,
    address: Address,
    error: shardfeed_record_format::Error,
) -> Result<Slot, BoxError> {
    let path = &source.files()[address.source as usize].path;
    match Damaged::from_record_error(path, &error) {
        Some(damaged) => Ok(Slot::Damaged(Arc::new(damaged))),
        None => Err(error.into()),
    }
}

/// One epoch's pipeline of transformed records: the draws keyed by (seed, epoch, record).
/// With `slabs` (deterministic mode) each worker writes its image into its batch's buffer
/// through `writer`; otherwise the image goes to the consumer's fill.
pub(super) fn transform_pipeline(
    source: Arc<TfRecordSource>,
    rules: RecordRules,
    transform: Transform,
    (seed, epoch): (u64, u64),
    plan: Plan,
    slabs: Option<(Arc<Slabs>, Arc<PixelWriter>)>,
) -> Pipeline<Slot> {
    Pipeline::new_init_at(
        plan,
        TransformWorker::new,
        move |worker: &mut TransformWorker,
              address: Address,
              position: u64|
              -> Result<Slot, BoxError> {
            match transform_at(&source, worker, &rules, &transform, seed, epoch, address) {
                Ok(Ok(done)) => Ok(match &slabs {
                    Some((slabs, writer)) => {
                        slabs.write(position, &done.image, done.applied.flip, writer);
                        Slot::Written {
                            address,
                            position,
                            class: done.class,
                            applied: done.applied,
                        }
                    }
                    None => Slot::Transformed(address, Box::new(done)),
                }),
                Ok(Err(damaged)) => Ok(Slot::Damaged(Arc::new(damaged))),
                Err(error) => damaged_slot(&source, address, error),
            }
        },
    )
}

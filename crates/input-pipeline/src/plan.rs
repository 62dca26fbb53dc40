//! The order of items: which item of which source comes next, computed from item counts
//! and seeds alone, before any data is read.
//!
//! Per epoch: the sources are shuffled (seeded), interleaved `cycle_length` at a time
//! (TensorFlow's `interleave`: `block_length` items from each open source in turn, the next
//! source taking a slot when one runs dry), then passed through a shuffle buffer (seeded).
//! Epochs follow each other (`repeat`), and `take` cuts the whole stream.
//!
//! Because the order is a pure function of the counts and the configuration, any position
//! can be reached again by replaying integers, without reading data: this is what makes a
//! pipeline resumable from a few bytes ([`crate::ResumeState`]).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::rng::Rng;

/// One item: its source (e.g. a file, by position in the source list) and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// The source's position in the list given to [`Plan::new`].
    pub source: u32,
    /// The item's index in its source, from 0.
    pub index: u64,
}

/// How many times the items are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// This many epochs.
    Epochs(u64),
    /// Epochs without end (TensorFlow's `repeat()`).
    Forever,
}

/// The configuration of the order (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    counts: Arc<[u64]>,
    shuffle_sources: bool,
    cycle_length: usize,
    block_length: usize,
    shuffle_buffer: usize,
    seed: u64,
    repeat: Repeat,
    take: Option<u64>,
    /// An epoch's order given item by item ([`Plan::with_order`]), instead of the computed one.
    order: Option<Arc<[Address]>>,
}

/// Random streams of one epoch.
const SOURCES_STREAM: u64 = 1;
const SHUFFLE_STREAM: u64 = 2;

impl Plan {
    /// Sources with these item counts, read in list order, one epoch, no shuffling, one
    /// source at a time.
    pub fn new(counts: impl Into<Arc<[u64]>>) -> Self {
        Plan {
            counts: counts.into(),
            shuffle_sources: false,
            cycle_length: 1,
            block_length: 1,
            shuffle_buffer: 0,
            seed: 0,
            repeat: Repeat::Epochs(1),
            take: None,
            order: None,
        }
    }

    /// Sources with these item counts, each epoch yielding exactly `order` (which need not
    /// hold every item, and may hold one twice): for an order computed elsewhere, such as one
    /// rank's share of a distributed epoch. Source shuffling, interleave and the shuffle
    /// buffer do not apply; `repeat` and `take` do.
    ///
    /// # Panics
    /// If an address is outside the counts.
    pub fn with_order(counts: impl Into<Arc<[u64]>>, order: impl Into<Arc<[Address]>>) -> Self {
        let mut plan = Plan::new(counts);
        let order = order.into();
        for address in order.iter() {
            assert!(
                plan.counts
                    .get(address.source as usize)
                    .is_some_and(|&count| address.index < count),
                "address {address:?} is outside the counts"
            );
        }
        plan.order = Some(order);
        plan
    }

    /// The seed of every random choice (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Shuffle the source list at the start of each epoch (TF's `list_files(shuffle=True)`).
    pub fn shuffle_sources(mut self, shuffle: bool) -> Self {
        self.shuffle_sources = shuffle;
        self
    }

    /// Read `cycle_length` sources at once, `block_length` items from each in turn.
    pub fn interleave(mut self, cycle_length: usize, block_length: usize) -> Self {
        self.cycle_length = cycle_length.max(1);
        self.block_length = block_length.max(1);
        self
    }

    /// Pass the items through a shuffle buffer of `buffer` items (0 or 1: no shuffle).
    ///
    /// Each epoch's buffer drains at the epoch's end, so every epoch holds every item
    /// exactly once (TensorFlow's shuffle after `repeat` lets items cross epochs).
    pub fn shuffle(mut self, buffer: usize) -> Self {
        self.shuffle_buffer = buffer;
        self
    }

    /// How many epochs.
    pub fn repeat(mut self, repeat: Repeat) -> Self {
        self.repeat = repeat;
        self
    }

    /// At most `n` items in all.
    pub fn take(mut self, n: u64) -> Self {
        self.take = Some(n);
        self
    }

    /// The item counts of the sources.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Items in one epoch.
    pub fn epoch_len(&self) -> u64 {
        match &self.order {
            Some(order) => order.len() as u64,
            None => self.counts.iter().sum(),
        }
    }

    /// Items in all, or `None` for a stream without end.
    pub fn len(&self) -> Option<u64> {
        let all = match self.repeat {
            Repeat::Epochs(n) => Some(self.epoch_len().saturating_mul(n)),
            Repeat::Forever if self.epoch_len() == 0 => Some(0),
            Repeat::Forever => None,
        };
        match (all, self.take) {
            (Some(all), Some(take)) => Some(all.min(take)),
            (None, take) => take,
            (all, None) => all,
        }
    }

    /// Whether the plan yields no item at all.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// A fingerprint of everything that decides the order, to check that a resume state
    /// belongs to this plan.
    pub fn fingerprint(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64; // FNV-1a over the fields
        let mut mix = |value: u64| {
            for byte in value.to_le_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        mix(self.counts.len() as u64);
        self.counts.iter().for_each(|&c| mix(c));
        mix(u64::from(self.shuffle_sources));
        mix(self.cycle_length as u64);
        mix(self.block_length as u64);
        mix(self.shuffle_buffer as u64);
        mix(self.seed);
        if let Some(order) = &self.order {
            mix(order.len() as u64);
            for address in order.iter() {
                mix(u64::from(address.source));
                mix(address.index);
            }
        }
        hash
    }

    /// The items in order, from the start.
    pub fn iter(&self) -> PlanIter {
        self.iter_from(0)
    }

    /// The items in order, from the `position`-th (counting from 0 across epochs). Costs
    /// O(position within its epoch) integer steps; no data is read.
    pub fn iter_from(&self, position: u64) -> PlanIter {
        let epoch_len = self.epoch_len();
        let epoch = position.checked_div(epoch_len).unwrap_or(0);
        let within = position.checked_rem(epoch_len).unwrap_or(0);
        let mut iter = PlanIter {
            plan: self.clone(),
            epoch,
            order: None,
            position: position - within,
        };
        for _ in 0..within {
            if iter.next().is_none() {
                break;
            }
        }
        iter
    }

    fn epochs(&self) -> Option<u64> {
        match self.repeat {
            Repeat::Epochs(n) => Some(n),
            Repeat::Forever => None,
        }
    }
}

/// One planned item: where it is in the stream and where its data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Its position in the whole stream, from 0.
    pub position: u64,
    /// Its epoch, from 0.
    pub epoch: u64,
    /// Its source and index.
    pub address: Address,
}

/// The iterator of [`Plan::iter`].
#[derive(Debug, Clone)]
pub struct PlanIter {
    plan: Plan,
    epoch: u64,
    order: Option<EpochOrder>,
    position: u64,
}

impl PlanIter {
    /// The position of the next item.
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl Iterator for PlanIter {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        if self.plan.take.is_some_and(|take| self.position >= take) {
            return None;
        }
        loop {
            if self.plan.epochs().is_some_and(|n| self.epoch >= n) || self.plan.epoch_len() == 0 {
                return None;
            }
            let order = self
                .order
                .get_or_insert_with(|| EpochOrder::new(&self.plan, self.epoch));
            if let Some(address) = order.next() {
                let planned = Planned {
                    position: self.position,
                    epoch: self.epoch,
                    address,
                };
                self.position += 1;
                return Some(planned);
            }
            self.order = None;
            self.epoch += 1;
        }
    }
}

/// One epoch's order: interleave, then the shuffle buffer.
#[derive(Debug, Clone)]
struct EpochOrder {
    /// The given order and the next position in it, for [`Plan::with_order`].
    given: Option<(Arc<[Address]>, usize)>,
    interleave: Interleave,
    buffer: Vec<Address>,
    buffer_size: usize,
    rng: Rng,
}

impl EpochOrder {
    fn new(plan: &Plan, epoch: u64) -> Self {
        let mut sources: Vec<u32> = (0..plan.counts.len() as u32).collect();
        if plan.shuffle_sources {
            Rng::for_epoch(plan.seed, epoch, SOURCES_STREAM).shuffle(&mut sources);
        }
        EpochOrder {
            given: plan.order.clone().map(|order| (order, 0)),
            interleave: Interleave::new(plan, sources),
            buffer: Vec::with_capacity(plan.shuffle_buffer.min(1 << 20)),
            buffer_size: plan.shuffle_buffer,
            rng: Rng::for_epoch(plan.seed, epoch, SHUFFLE_STREAM),
        }
    }

    fn next(&mut self) -> Option<Address> {
        if let Some((order, next)) = &mut self.given {
            let address = order.get(*next).copied();
            *next += 1;
            return address;
        }
        if self.buffer_size <= 1 {
            return self.interleave.next();
        }
        while self.buffer.len() < self.buffer_size {
            match self.interleave.next() {
                Some(address) => self.buffer.push(address),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let chosen = self.rng.below(self.buffer.len() as u64) as usize;
        Some(self.buffer.swap_remove(chosen))
    }
}

/// TensorFlow's deterministic `interleave`, step for step: a slot opens the next source when
/// it is visited empty, and notices that its source ran dry only on the visit after the
/// last item (a visit that yields nothing and moves on), as `InterleaveDatasetOp` does.
#[derive(Debug, Clone)]
struct Interleave {
    counts: Arc<[u64]>,
    pending: VecDeque<u32>,
    /// Open sources: (source, next index); `next index == count` once read out.
    slots: Vec<Option<(u32, u64)>>,
    current: usize,
    taken_in_block: usize,
    block_length: usize,
}

impl Interleave {
    fn new(plan: &Plan, order: Vec<u32>) -> Self {
        Interleave {
            counts: plan.counts.clone(),
            pending: order.into(),
            slots: vec![None; plan.cycle_length],
            current: 0,
            taken_in_block: 0,
            block_length: plan.block_length,
        }
    }

    fn advance_slot(&mut self) {
        self.current = (self.current + 1) % self.slots.len();
        self.taken_in_block = 0;
    }

    fn next(&mut self) -> Option<Address> {
        loop {
            match self.slots[self.current] {
                Some((source, index)) if index < self.counts[source as usize] => {
                    self.slots[self.current] = Some((source, index + 1));
                    self.taken_in_block += 1;
                    if self.taken_in_block >= self.block_length {
                        self.advance_slot();
                    }
                    return Some(Address { source, index });
                }
                Some(_) => {
                    self.slots[self.current] = None;
                    self.advance_slot();
                }
                None => match self.pending.pop_front() {
                    Some(source) => self.slots[self.current] = Some((source, 0)),
                    None if self.slots.iter().all(Option::is_none) => return None,
                    None => self.advance_slot(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(plan: &Plan) -> Vec<(u32, u64)> {
        plan.iter()
            .map(|p| (p.address.source, p.address.index))
            .collect()
    }

    #[test]
    fn interleave_takes_blocks_in_turn_like_tensorflow() {
        // tf.data.Dataset.range(3).interleave(lambda s: range(counts[s]), cycle_length=2, block_length=2)
        let plan = Plan::new(vec![3, 1, 2]).interleave(2, 2);
        assert_eq!(
            addresses(&plan),
            [(0, 0), (0, 1), (1, 0), (0, 2), (2, 0), (2, 1)]
        );
        // Source 0 runs dry at the end of its block; TF finds out on its next visit, which
        // yields nothing, so source 1 gets another turn before source 2 opens.
        let plan = Plan::new(vec![2, 3, 1]).interleave(2, 2);
        assert_eq!(
            addresses(&plan),
            [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0)]
        );
        let plan = Plan::new(vec![0, 2, 0]).interleave(1, 1);
        assert_eq!(addresses(&plan), [(1, 0), (1, 1)]);
        // Printed by TensorFlow 2.21 for these counts, cycle_length=3, block_length=2.
        let plan = Plan::new(vec![5, 0, 7, 3, 1, 4]).interleave(3, 2);
        let tensorflow = [
            (0, 0),
            (0, 1),
            (2, 0),
            (2, 1),
            (0, 2),
            (0, 3),
            (3, 0),
            (3, 1),
            (2, 2),
            (2, 3),
            (0, 4),
            (3, 2),
            (2, 4),
            (2, 5),
            (4, 0),
            (5, 0),
            (5, 1),
            (2, 6),
            (5, 2),
            (5, 3),
        ];
        assert_eq!(addresses(&plan), tensorflow);
        let plan = Plan::new(vec![2, 2]).interleave(16, 1);
        assert_eq!(addresses(&plan), [(0, 0), (1, 0), (0, 1), (1, 1)]);
    }

    #[test]
    fn every_epoch_holds_every_item_once() {
        let plan = Plan::new(vec![5, 0, 7, 3])
            .seed(9)
            .shuffle_sources(true)
            .interleave(2, 1)
            .shuffle(4)
            .repeat(Repeat::Epochs(3));
        let planned: Vec<Planned> = plan.iter().collect();
        assert_eq!(planned.len(), 45);
        for epoch in 0..3 {
            let mut items: Vec<Address> = planned
                .iter()
                .filter(|p| p.epoch == epoch)
                .map(|p| p.address)
                .collect();
            items.sort();
            let mut all: Vec<Address> = plan
                .counts()
                .iter()
                .enumerate()
                .flat_map(|(s, &n)| {
                    (0..n).map(move |index| Address {
                        source: s as u32,
                        index,
                    })
                })
                .collect();
            all.sort();
            assert_eq!(items, all);
        }
        let epoch = |e| {
            planned
                .iter()
                .filter(|p| p.epoch == e)
                .map(|p| p.address)
                .collect::<Vec<_>>()
        };
        assert_ne!(epoch(0), epoch(1), "each epoch is shuffled anew");
    }

    #[test]
    fn starting_anywhere_continues_the_same_order() {
        let plan = Plan::new(vec![4, 9, 2])
            .seed(3)
            .shuffle_sources(true)
            .interleave(2, 1)
            .shuffle(5)
            .repeat(Repeat::Forever)
            .take(60);
        let all: Vec<Planned> = plan.iter().collect();
        assert_eq!(all.len(), 60);
        for start in 0..60 {
            assert_eq!(
                plan.iter_from(start).collect::<Vec<_>>(),
                all[start as usize..]
            );
        }
    }

    #[test]
    fn a_given_order_is_replayed_each_epoch_and_resumable() {
        let order = vec![
            Address {
                source: 1,
                index: 2,
            },
            Address {
                source: 0,
                index: 0,
            },
            Address {
                source: 1,
                index: 2,
            },
        ];
        let plan = Plan::with_order(vec![1, 3], order.clone()).repeat(Repeat::Epochs(2));
        assert_eq!(plan.epoch_len(), 3);
        assert_eq!(plan.len(), Some(6));
        let all: Vec<Address> = plan.iter().map(|p| p.address).collect();
        assert_eq!(all, [order.clone(), order.clone()].concat());
        let from_4: Vec<Address> = plan.iter_from(4).map(|p| p.address).collect();
        assert_eq!(from_4, all[4..]);
        let other = Plan::with_order(vec![1, 3], order[..2].to_vec());
        assert_ne!(plan.fingerprint(), other.fingerprint());
    }

    #[test]
    #[should_panic(expected = "outside the counts")]
    fn a_given_order_must_stay_within_the_counts() {
        Plan::with_order(
            vec![1, 3],
            vec![Address {
                source: 0,
                index: 1,
            }],
        );
    }

    #[test]
    fn fingerprints_change_with_the_configuration() {
        let plan = Plan::new(vec![4, 9]).seed(3);
        assert_eq!(plan.fingerprint(), plan.clone().fingerprint());
        assert_ne!(plan.fingerprint(), plan.clone().seed(4).fingerprint());
        assert_ne!(
            plan.fingerprint(),
            Plan::new(vec![4, 8]).seed(3).fingerprint()
        );
        assert_ne!(plan.fingerprint(), plan.clone().shuffle(2).fingerprint());
    }
}

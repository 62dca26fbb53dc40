//! The worker graph's guarantees: errors, panics, shutdown, bounded memory, determinism,
//! exactly-once delivery, resume, statistics and the cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shardfeed_input_pipeline::{
    Address, BoxError, CacheBudget, CacheOverflow, Error, Parallelism, Pipeline, Plan, Repeat,
    ResumeState,
};

/// A small, varied plan: 7 sources of uneven sizes.
fn plan(seed: u64, shuffle: bool) -> Plan {
    Plan::new(vec![13, 0, 5, 21, 1, 8, 30])
        .seed(seed)
        .shuffle_sources(shuffle)
        .interleave(3, 1)
        .shuffle(if shuffle { 16 } else { 0 })
}

/// Items are their addresses; a few microseconds of jitter perturb the workers' timing.
fn address_pipeline(plan: Plan) -> Pipeline<Address> {
    Pipeline::new(plan, |address: Address| {
        let jitter = (address.index * 7 + u64::from(address.source) * 13) % 5;
        std::thread::sleep(Duration::from_micros(jitter * 20));
        Ok::<_, BoxError>(address)
    })
}

fn collect(pipeline: &Pipeline<Address>) -> Vec<Address> {
    pipeline.iter().items().map(|item| item.unwrap()).collect()
}

#[test]
fn every_item_comes_exactly_once_per_epoch() {
    for seed in 0..6 {
        for threads in 1..=8 {
            for (shuffle, cache, deterministic) in [
                (false, false, true),
                (true, false, false),
                (true, true, false),
                (false, true, true),
            ] {
                let plan = plan(seed, shuffle).repeat(Repeat::Epochs(3));
                let epoch_len = plan.epoch_len() as usize;
                let mut pipeline = address_pipeline(plan)
                    .parallelism(Parallelism::Fixed(threads))
                    .deterministic(deterministic)
                    .batch(5, false);
                if cache {
                    pipeline = pipeline.cache(CacheBudget::new(1 << 20, |_| 16));
                }
                let items = collect(&pipeline);
                assert_eq!(items.len(), epoch_len * 3);
                for epoch in 0..3 {
                    // Deterministic: epoch e is exactly items [e·len, (e+1)·len). Otherwise an
                    // epoch's items may swap places with a neighbour's near the boundary, so
                    // check the whole run: every item three times.
                    if deterministic {
                        let mut counts = HashMap::new();
                        for item in &items[epoch * epoch_len..(epoch + 1) * epoch_len] {
                            *counts.entry(*item).or_insert(0) += 1;
                        }
                        assert_eq!(counts.len(), epoch_len, "seed {seed}, {threads} threads");
                        assert!(counts.values().all(|&n| n == 1));
                    }
                }
                let mut counts = HashMap::new();
                for item in &items {
                    *counts.entry(*item).or_insert(0) += 1;
                }
                assert_eq!(counts.len(), epoch_len);
                assert!(
                    counts.values().all(|&n| n == 3),
                    "seed {seed}, {threads} threads, {shuffle} {cache}"
                );
            }
        }
    }
}

#[test]
fn deterministic_runs_are_identical_whatever_the_parallelism() {
    let plan = plan(5, true).repeat(Repeat::Epochs(2));
    let reference = collect(
        &address_pipeline(plan.clone())
            .parallelism(Parallelism::Fixed(1))
            .deterministic(true),
    );
    assert_eq!(
        reference,
        plan.iter().map(|p| p.address).collect::<Vec<_>>(),
        "the plan's order"
    );
    for threads in 1..=8 {
        for _ in 0..2 {
            let pipeline = address_pipeline(plan.clone())
                .parallelism(Parallelism::Fixed(threads))
                .deterministic(true)
                .batch(4, false);
            assert_eq!(collect(&pipeline), reference, "{threads} threads");
        }
    }
    let other_seed = collect(
        &address_pipeline(self::plan(6, true).repeat(Repeat::Epochs(2))).deterministic(true),
    );
    assert_ne!(other_seed, reference);
}

#[test]
fn errors_reach_the_consumer_in_their_place() {
    let pipeline = Pipeline::new(Plan::new(vec![10]), |a: Address| {
        if a.index == 4 {
            Err(format!("item {} is bad", a.index))
        } else {
            Ok(a.index)
        }
    })
    .parallelism(Parallelism::Fixed(3))
    .deterministic(true);
    let items: Vec<Result<u64, Error>> = pipeline.iter().items().collect();
    assert_eq!(items.len(), 10);
    let error = items[4].as_ref().unwrap_err();
    assert_eq!(error.to_string(), "item 4 is bad");
    assert!(matches!(
        error,
        Error::Item {
            position: 4,
            address: Address {
                source: 0,
                index: 4
            },
            ..
        }
    ));
    assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 9);
}

#[test]
fn a_panicking_map_function_becomes_an_error_not_a_hang() {
    let pipeline = Pipeline::new(
        Plan::new(vec![50]).repeat(Repeat::Epochs(2)),
        |a: Address| Ok::<_, BoxError>(a.index),
    )
    .map(|x| {
        assert!(x != 17, "cannot handle {x}");
        Ok::<_, BoxError>(x)
    })
    .parallelism(Parallelism::Fixed(4))
    .batch(8, false);
    let results: Vec<_> = pipeline.iter().collect();
    let panics: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .collect();
    assert_eq!(panics.len(), 2, "one per epoch: {panics:?}");
    assert!(
        panics[0].starts_with("internal error in the map stage at item "),
        "{}",
        panics[0]
    );
    assert!(panics[0].ends_with("cannot handle 17"), "{}", panics[0]);
    let items: usize = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|b| b.len())
        .sum();
    assert_eq!(items, 98);
}

#[test]
fn dropping_mid_epoch_of_an_endless_stream_joins_every_thread_within_a_second() {
    let pipeline = Pipeline::new(
        Plan::new(vec![1000]).repeat(Repeat::Forever).shuffle(64),
        |a: Address| {
            std::thread::sleep(Duration::from_millis(2));
            Ok::<_, BoxError>(a)
        },
    )
    .parallelism(Parallelism::Fixed(8))
    .batch(16, true)
    .prefetch(4);
    let mut iter = pipeline.iter();
    for _ in 0..5 {
        iter.next().unwrap().unwrap();
    }
    let started = Instant::now();
    drop(iter); // joins every thread
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// Counts the items alive at once.
struct Tracked(Arc<Live>);

#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Tracked {
    fn new(live: &Arc<Live>) -> Self {
        let now = live.now.fetch_add(1, Ordering::SeqCst) + 1;
        live.peak.fetch_max(now, Ordering::SeqCst);
        Tracked(live.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn memory_stays_within_the_documented_peak() {
    for deterministic in [false, true] {
        let live = Arc::new(Live::default());
        let counter = live.clone();
        let pipeline = Pipeline::new(Plan::new(vec![2000]).shuffle(100), move |a: Address| {
            // Item 3 is slow, so the others pile up behind it in deterministic mode.
            if a.index == 3 {
                std::thread::sleep(Duration::from_millis(30));
            }
            Ok::<_, BoxError>(Tracked::new(&counter))
        })
        .parallelism(Parallelism::Fixed(4))
        .deterministic(deterministic)
        .batch(8, false)
        .prefetch(3);
        let peak_allowed = pipeline.peak_items();
        let mut seen = 0;
        for batch in pipeline.iter() {
            seen += batch.unwrap().len();
            std::thread::sleep(Duration::from_micros(200)); // a slow consumer
        }
        assert_eq!(seen, 2000);
        let peak = live.peak.load(Ordering::SeqCst);
        assert!(
            peak <= peak_allowed,
            "deterministic {deterministic}: {peak} alive, allowed {peak_allowed}"
        );
        assert_eq!(live.now.load(Ordering::SeqCst), 0, "nothing leaks");
    }
}

#[test]
fn a_resumed_pipeline_continues_exactly_where_the_old_one_stopped() {
    let plan = plan(11, true).repeat(Repeat::Epochs(3));
    let pipeline = address_pipeline(plan)
        .parallelism(Parallelism::Fixed(4))
        .deterministic(true)
        .batch(7, true);
    let whole: Vec<Vec<Address>> = pipeline.iter().map(|b| b.unwrap().items).collect();
    for stop_after in [0, 1, 5, 11, 12, 25, whole.len() - 1] {
        let mut first = pipeline.iter();
        let mut seen: Vec<Vec<Address>> = (0..stop_after)
            .map(|_| first.next().unwrap().unwrap().items)
            .collect();
        let state = ResumeState::from_bytes(&first.state().to_bytes()).unwrap();
        drop(first);
        // A new pipeline, built from scratch with the same settings, as after a restart.
        let again = address_pipeline(self::plan(11, true).repeat(Repeat::Epochs(3)))
            .parallelism(Parallelism::Fixed(2))
            .deterministic(true)
            .batch(7, true);
        seen.extend(again.iter_from(&state).unwrap().map(|b| b.unwrap().items));
        assert_eq!(seen, whole, "stopped after {stop_after} batches");
    }
    let state = pipeline.iter().state();
    let other = address_pipeline(self::plan(12, true));
    assert!(matches!(
        other.iter_from(&state),
        Err(Error::StateMismatch { .. })
    ));
    assert!(ResumeState::from_bytes(&[0; 23]).is_err());
}

#[test]
fn statistics_count_every_stage() {
    let pipeline = address_pipeline(plan(1, true))
        .parallelism(Parallelism::Fixed(2))
        .batch(4, false);
    let mut iter = pipeline.iter();
    let batches = iter.by_ref().count() as u64;
    let stats = iter.stats();
    assert_eq!(stats.stage("plan").unwrap().items, 78);
    assert_eq!(stats.stage("map").unwrap().items, 78);
    assert_eq!(stats.stage("map").unwrap().threads, 2);
    assert!(stats.stage("map").unwrap().busy > Duration::ZERO);
    assert_eq!(stats.stage("batch").unwrap().items, batches);
    assert_eq!(stats.stage("consumer").unwrap().items, batches);
    assert!(stats.to_string().contains("map       x2 "), "{stats}");
}

#[test]
fn the_cache_serves_later_epochs_and_respects_its_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let fetch = move |a: Address| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok::<_, BoxError>(vec![a.index as u8; 10])
    };
    let plan = Plan::new(vec![20, 30]).shuffle(8).repeat(Repeat::Epochs(3));
    let pipeline = Pipeline::new(plan.clone(), fetch.clone())
        .cache(CacheBudget::new(1000, |v: &Vec<u8>| v.len() as u64))
        // One worker: with several, an item planned again in the next epoch while its
        // first computation is still in flight is computed twice (the cache keeps one).
        .parallelism(Parallelism::Fixed(1));
    let mut iter = pipeline.iter();
    assert_eq!(iter.by_ref().count(), 150);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        50,
        "epochs 2 and 3 come from the cache"
    );
    assert_eq!(iter.stats().cache_hits, 100);

    // 50 items × 10 bytes do not fit in 300 bytes: an error names the budget…
    let small = Pipeline::new(plan.clone(), fetch.clone())
        .cache(CacheBudget::new(300, |v: &Vec<u8>| v.len() as u64));
    let errors: Vec<String> = small
        .iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    assert!(
        !errors.is_empty() && errors[0].starts_with("cache budget of 300 bytes exceeded"),
        "{errors:?}"
    );
    // …or, by choice, the overflow is recomputed and counted.
    let recompute = Pipeline::new(plan, fetch)
        .cache(
            CacheBudget::new(300, |v: &Vec<u8>| v.len() as u64)
                .on_overflow(CacheOverflow::Recompute),
        )
        .parallelism(Parallelism::Fixed(1));
    let mut iter = recompute.iter();
    assert_eq!(iter.by_ref().filter(Result::is_ok).count(), 150);
    assert_eq!(
        iter.stats().cache_overflow,
        20 * 3,
        "20 items did not fit, in each of 3 epochs"
    );
}

//! The tuner (`Parallelism::Auto`/`AutoUpTo`): more workers when the map stage holds the
//! consumer up, fewer when the consumer is the slow side, a deeper prefetch when the supply
//! is bursty; every change recorded with its reason; nothing lost or repeated meanwhile.
//! The work is `sleep`, so the figures do not depend on how many cores the machine has.

use std::time::Duration;

use shardfeed_input_pipeline::{Address, BoxError, Parallelism, Pipeline, Plan};

fn sleepy(items: u64, per_item: Duration, parallelism: Parallelism) -> Pipeline<u64> {
    Pipeline::new(Plan::new(vec![items]), move |a: Address| {
        std::thread::sleep(per_item);
        Ok::<_, BoxError>(a.index)
    })
    .parallelism(parallelism)
    .batch(8, false)
}

#[test]
fn workers_park_for_a_slow_consumer_wake_for_a_fast_one_and_every_item_arrives_once() {
    let pipeline = sleepy(4000, Duration::from_millis(2), Parallelism::AutoUpTo(8));
    let mut iter = pipeline.iter();
    let mut seen = Vec::new();
    // A slow consumer first (a batch every 40 ms needs under one worker), then a fast one.
    for _ in 0..60 {
        seen.extend(iter.next().unwrap().unwrap().items);
        std::thread::sleep(Duration::from_millis(40));
    }
    let parked = iter.tuning().expect("AutoUpTo is tuned");
    assert!(
        parked.workers < 8,
        "started at the cap and parked some: {parked:#?}"
    );
    for batch in iter.by_ref() {
        seen.extend(batch.unwrap().items);
    }
    let tuning = iter.tuning().unwrap();
    assert_eq!(tuning.max_workers, 8);
    assert_eq!(tuning.workers, 8, "{tuning:#?}");
    let woken = tuning.changes.last().unwrap();
    assert!(woken.why.contains("consumer waited"), "{}", woken.why);
    assert!(
        tuning.summary().contains("8 of at most 8 map workers"),
        "{}",
        tuning.summary()
    );
    seen.sort_unstable();
    assert!(
        seen == (0..4000).collect::<Vec<_>>(),
        "{} items, not 0..4000 once each",
        seen.len()
    );
    let stats = iter.stats();
    assert_eq!(stats.stage("map").unwrap().threads, 8);
    assert!(
        stats.to_string().contains("autotune: 8 of at most 8"),
        "{stats}"
    );
}

#[test]
fn a_slow_consumer_lets_spare_workers_go() {
    let pipeline = sleepy(100_000, Duration::from_micros(20), Parallelism::AutoUpTo(8));
    let mut iter = pipeline.iter();
    for _ in 0..200 {
        iter.next().unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let tuning = iter.tuning().unwrap();
    assert!(tuning.workers <= 2, "{tuning:#?}");
    assert!(
        tuning
            .changes
            .iter()
            .any(|c| c.why.contains("workers") && c.workers < 4),
        "{tuning:#?}"
    );
}

#[test]
fn a_bursty_consumer_gets_a_deeper_prefetch_buffer() {
    // One worker (nothing to add): the consumer sleeps, then takes 8 batches at once.
    // The worker is busy about 10% of the time (8 batches of 8 × 0.1 ms every 60 ms), so
    // even a loaded machine's slower sleeps leave it well under the bottleneck threshold.
    // One batch per chunk and one chunk in flight: the prefetch channel is the only buffer.
    let pipeline = sleepy(
        1_000_000,
        Duration::from_micros(100),
        Parallelism::AutoUpTo(1),
    )
    .chunk(8)
    .in_flight(8);
    let mut iter = pipeline.iter();
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(60));
        for _ in 0..8 {
            iter.next().unwrap().unwrap();
        }
    }
    let tuning = iter.tuning().unwrap();
    assert_eq!(tuning.workers, 1);
    assert!(tuning.prefetch >= 4, "{tuning:#?}");
    assert!(
        tuning.changes.iter().any(|c| c.why.contains("prefetch")),
        "{tuning:#?}"
    );
}

#[test]
fn fixed_parallelism_is_not_tuned() {
    let pipeline = sleepy(64, Duration::ZERO, Parallelism::Fixed(3));
    let mut iter = pipeline.iter();
    assert_eq!(iter.by_ref().count(), 8);
    assert_eq!(iter.tuning(), None);
    assert_eq!(iter.stats().tuning, None);
    assert_eq!(iter.stats().stage("map").unwrap().threads, 3);
}

#[test]
fn a_tuned_deterministic_pipeline_keeps_the_plans_order() {
    let tuned = sleepy(2000, Duration::from_micros(300), Parallelism::AutoUpTo(6))
        .deterministic(true)
        .map_plan(|plan| plan.shuffle(256).seed(7));
    let fixed = sleepy(2000, Duration::ZERO, Parallelism::Fixed(1))
        .deterministic(true)
        .map_plan(|plan| plan.shuffle(256).seed(7));
    let order = |p: &Pipeline<u64>| -> Vec<u64> { p.iter().items().map(Result::unwrap).collect() };
    assert_eq!(order(&tuned), order(&fixed));
}

//! No pipeline thread outlives its iterator: a consumer that stops early, a map that panics
//! on one item and a source that errors all end with the process's thread count back where
//! it was. Its own test binary (one test) so no other test's threads are counted.

use std::time::Duration;

use shardfeed_input_pipeline::{Address, BoxError, Parallelism, Pipeline, Plan, Repeat};

/// The process's threads whose name starts with `shardfeed-` (the pipeline names each one).
#[cfg(target_os = "linux")]
fn pipeline_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("shardfeed-"))
        .count()
}

/// The pipeline threads left once the kernel has caught up: `join` returns when a thread has
/// cleared its id, a moment before its `/proc/self/task` entry goes, so the count is polled
/// for up to two seconds. A thread that was not joined (or still runs) stays counted.
#[cfg(target_os = "linux")]
fn pipeline_threads_left() -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = pipeline_threads();
        if left == 0 || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn no_thread_outlives_its_pipeline() {
    assert_eq!(pipeline_threads(), 0);

    // A consumer that stops after two batches of an endless stream.
    let endless = Pipeline::new(
        Plan::new(vec![500]).repeat(Repeat::Forever),
        |a: Address| {
            std::thread::sleep(Duration::from_micros(200));
            Ok::<_, BoxError>(a.index)
        },
    )
    .parallelism(Parallelism::Fixed(6))
    .batch(8, true);
    let mut iter = endless.iter();
    iter.next().unwrap().unwrap();
    iter.next().unwrap().unwrap();
    assert!(
        pipeline_threads() >= 8,
        "planner, 6 map workers and the batcher are running"
    );
    drop(iter);
    assert_eq!(pipeline_threads_left(), 0, "after an early stop");

    // A map that panics on one item, read to the end.
    let panicking = Pipeline::new(Plan::new(vec![40]), |a: Address| Ok::<_, BoxError>(a.index))
        .map(|x| {
            assert!(x != 9, "no nines");
            Ok::<_, BoxError>(x)
        })
        .parallelism(Parallelism::Fixed(4));
    let results: Vec<_> = panicking.iter().items().collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(pipeline_threads_left(), 0, "after a panic");

    // A source that errors; the consumer stops at the first error.
    let failing = Pipeline::new(
        Plan::new(vec![1000]).repeat(Repeat::Forever),
        |a: Address| {
            if a.index == 3 {
                Err(format!("record {} is damaged", a.index))
            } else {
                Ok(a.index)
            }
        },
    )
    .parallelism(Parallelism::Fixed(4))
    .deterministic(true);
    let first_error = failing.iter().items().find_map(Result::err);
    assert!(
        first_error
            .unwrap()
            .to_string()
            .contains("record 3 is damaged")
    );
    assert_eq!(pipeline_threads_left(), 0, "after a source error");

    // A tuned pipeline: its tuner and its parked workers stop with it too.
    let tuned = Pipeline::new(
        Plan::new(vec![500]).repeat(Repeat::Forever),
        |a: Address| Ok::<_, BoxError>(a.index),
    )
    .parallelism(Parallelism::AutoUpTo(6))
    .batch(8, true);
    let mut iter = tuned.iter();
    for _ in 0..50 {
        iter.next().unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        pipeline_threads() >= 9,
        "planner, 6 map workers (some parked), batcher, tuner"
    );
    drop(iter);
    assert_eq!(pipeline_threads_left(), 0, "after a tuned pipeline");
}

//! The synthetic dataset: deterministic, varied, and not separable by colour alone.

use shardfeed_dataset::synthetic::{GenData, draw};

#[test]
fn images_are_deterministic_and_varied_in_size() {
    let config = GenData {
        sides: (60, 90),
        ..GenData::default()
    };
    assert_eq!(draw(&config, 0, 5, 0), draw(&config, 0, 5, 0));
    assert_ne!(draw(&config, 0, 5, 0), draw(&config, 0, 6, 0));
    let sizes: std::collections::BTreeSet<(u32, u32)> = (0..20)
        .map(|i| {
            let image = draw(&config, i % 2, i as u64, 0);
            (image.width, image.height)
        })
        .collect();
    assert!(sizes.len() > 10, "{sizes:?}");
    assert!(
        sizes
            .iter()
            .all(|&(w, h)| (60..=90).contains(&w) && (60..=90).contains(&h))
    );
}

#[test]
fn the_mean_colour_does_not_separate_the_classes() {
    let config = GenData {
        sides: (48, 64),
        ..GenData::default()
    };
    let means = |class: usize| -> Vec<f64> {
        (0..80u64)
            .map(|i| {
                let image = draw(&config, class, i * 2 + class as u64, 0);
                image.pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / image.pixels.len() as f64
            })
            .collect()
    };
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        (mean, sd)
    };
    let (cat_mean, cat_sd) = stats(&means(0));
    let (dog_mean, dog_sd) = stats(&means(1));
    println!(
        "per-image mean colour: cat {cat_mean:.1} ± {cat_sd:.1}, dog {dog_mean:.1} ± {dog_sd:.1}"
    );
    // The class means are close together compared with the spread inside each class.
    assert!(
        (cat_mean - dog_mean).abs() < 0.5 * cat_sd.min(dog_sd),
        "{cat_mean} vs {dog_mean}"
    );
}

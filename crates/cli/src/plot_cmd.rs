//! `shardfeed plot`: the 8 × 4 grid of validation images (`obs: cat / est: dog`, mistakes in
//! red) or test images (`est: dog`), and the training curves again from `metrics.csv`.

use crate::fmt::escaped;
use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed::evaluate::{EvaluateSettings, classify_validation};
use shardfeed::plot::{GRID_COLUMNS, GRID_ROWS, GridCell, draw_curves, draw_grid};
use shardfeed::predict::{PredictSettings, predict};
use shardfeed_dataset::folder::Location;
use shardfeed_dataset::run::RunInfo;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_model::{DeviceKind, predicted};

/// Flags of `shardfeed plot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run folder written by `shardfeed train`.
    #[arg(long, default_value = "runs/latest", value_parser = crate::paths::local())]
    model: PathBuf,
    /// Plot the first 32 validation images with observed and estimated classes (the default).
    #[arg(long, conflicts_with = "test")]
    val: bool,
    /// Plot the first 32 images (by name) of this folder with their estimated class.
    #[arg(long, value_name = "DIR", value_parser = crate::paths::local())]
    test: Option<PathBuf>,
    /// Read the run's validation files from this folder (default: where training read them).
    #[arg(long, value_parser = crate::paths::local())]
    shards: Option<PathBuf>,
    /// The grid PNG to write.
    #[arg(long, default_value = "grid.png", value_parser = crate::paths::local())]
    out: PathBuf,
    /// Also redraw the run's curves.png from its metrics.csv.
    #[arg(long)]
    curves: bool,
    /// Where the model runs: cpu, or cuda (needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda")]
    device: DeviceKind,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let wanted = GRID_ROWS * GRID_COLUMNS;
    let mut cells = Vec::with_capacity(wanted);
    if let Some(dir) = &args.test {
        let mut files = shardfeed::predict::list_images(&[Location::local(dir)])?;
        files.truncate(wanted);
        let summary = predict(
            &PredictSettings {
                model: args.model.clone(),
                inputs: files.into_iter().map(Location::local).collect(),
                batch: wanted,
                jobs: Parallelism::Auto,
                device: args.device,
                precision: Default::default(),
                strict: false,
            },
            |p| {
                cells.push(GridCell {
                    rgb: p.image.pixels.clone(),
                    side: p.image.width as usize,
                    title: format!("est: {}", p.label),
                    wrong: false,
                });
                Ok(())
            },
        )?;
        for (file, reason) in &summary.skipped {
            eprintln!(
                "skipped {}",
                escaped(&format!("{}: {reason}", file.display()))
            );
        }
    } else {
        let classes = RunInfo::load(&args.model)?.classes;
        let name = |i: i64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| classes.get(i).cloned())
                .unwrap_or_else(|| i.to_string())
        };
        classify_validation(
            &EvaluateSettings {
                model: args.model.clone(),
                shards: args.shards.clone().map(Location::local),
                keys: None,
                batch: wanted,
                jobs: Parallelism::Auto,
                device: args.device,
                precision: Default::default(),
            },
            |item, p| {
                let estimated = predicted(p).0 as i64;
                cells.push(GridCell {
                    rgb: item.image.pixels.clone(),
                    side: item.image.width as usize,
                    title: format!("obs: {} / est: {}", name(item.class), name(estimated)),
                    wrong: estimated != item.class,
                });
                cells.len() < wanted
            },
        )?;
        let wrong = cells.iter().filter(|c| c.wrong).count();
        println!(
            "{}, {wrong} misclassified (in red)",
            crate::fmt::count(cells.len() as u64, "validation image")
        );
    }
    draw_grid(&cells).save_png(&args.out)?;
    println!("wrote {}", args.out.display());
    if args.curves {
        let out = args.model.join(shardfeed::train::CURVES_FILE);
        draw_curves(&args.model.join("metrics.csv"), &out)?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

//! PNG plots without system fonts: an RGB canvas, text in the public-domain 8×8 bitmap font
//! that `font8x8` embeds, the 8 × 4 image grid of SPEC §5 (`obs: cat / est: dog`, mistakes in
//! red) and the training curves (loss and accuracy per epoch, training vs validation).

use std::path::Path;

/// An RGB colour.
pub type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
/// Titles of misclassified images.
pub const RED: Rgb = [200, 20, 20];
const GREY: Rgb = [200, 200, 200];
const BLUE: Rgb = [31, 119, 180];
const ORANGE: Rgb = [255, 127, 14];

/// Pixels of one glyph at scale 1.
pub const GLYPH: usize = 8;

/// An RGB image being drawn.
#[derive(Debug, Clone)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A `width × height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The RGB pixels, row by row.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The colour at (x, y).
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Sets (x, y), ignoring points outside.
    pub fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&colour);
    }

    /// Fills a rectangle.
    pub fn fill(&mut self, x: i64, y: i64, width: usize, height: usize, colour: Rgb) {
        for dy in 0..height as i64 {
            for dx in 0..width as i64 {
                self.set(x + dx, y + dy, colour);
            }
        }
    }

    /// Copies an RGB image (`width × height × 3` bytes) with its top-left corner at (x, y).
    pub fn blit(&mut self, x: usize, y: usize, width: usize, height: usize, rgb: &[u8]) {
        for row in 0..height.min(self.height.saturating_sub(y)) {
            let columns = width.min(self.width.saturating_sub(x));
            let src = &rgb[row * width * 3..(row * width + columns) * 3];
            let start = ((y + row) * self.width + x) * 3;
            self.pixels[start..start + columns * 3].copy_from_slice(src);
        }
    }

    /// A line of `thickness` pixels from (x0, y0) to (x1, y1).
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), thickness: i64, colour: Rgb) {
        let steps = (to.0 - from.0)
            .abs()
            .max((to.1 - from.1).abs())
            .ceil()
            .max(1.0) as i64;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let x = (from.0 + (to.0 - from.0) * t).round() as i64;
            let y = (from.1 + (to.1 - from.1) * t).round() as i64;
            for dy in 0..thickness {
                for dx in 0..thickness {
                    self.set(x + dx - thickness / 2, y + dy - thickness / 2, colour);
                }
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale × scale`.
    /// Characters outside printable ASCII are drawn as `?`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, colour: Rgb) {
        for (i, c) in text.chars().enumerate() {
            let code = if (' '..='~').contains(&c) {
                c as usize
            } else {
                '?' as usize
            };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            let left = x + (i * GLYPH * scale) as i64;
            for (row, bits) in glyph.iter().enumerate() {
                for column in 0..GLYPH {
                    if bits >> column & 1 == 1 {
                        let (px, py) = (left + (column * scale) as i64, y + (row * scale) as i64);
                        self.fill(px, py, scale, scale, colour);
                    }
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG, atomically.
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.pixels)?;
        writer.finish()?;
        shardfeed_record_format::atomic::write_atomic(path, &bytes)?;
        Ok(())
    }
}

/// `text` cut to `max` characters (the last one `~` when cut).
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('~');
        cut
    }
}

/// One image of a grid.
#[derive(Debug, Clone)]
pub struct GridCell {
    /// RGB pixels, `side × side × 3`.
    pub rgb: Vec<u8>,
    /// The image's side.
    pub side: usize,
    /// Its title (`obs: cat / est: dog` or `est: dog`).
    pub title: String,
    /// Drawn in red (a misclassified image).
    pub wrong: bool,
}

/// Rows of the image grid (SPEC §5).
pub const GRID_ROWS: usize = 8;
/// Columns of the image grid.
pub const GRID_COLUMNS: usize = 4;

/// An image enlarged `factor` times (nearest neighbour).
fn enlarge(rgb: &[u8], side: usize, factor: usize) -> Vec<u8> {
    if factor == 1 {
        return rgb.to_vec();
    }
    let big = side * factor;
    let mut out = Vec::with_capacity(big * big * 3);
    for y in 0..big {
        for x in 0..big {
            let i = ((y / factor) * side + x / factor) * 3;
            out.extend_from_slice(&rgb[i..i + 3]);
        }
    }
    out
}

/// Draws up to 8 × 4 cells, row by row, each image under its title. Images smaller than
/// 128 px are enlarged so titles fit; a title longer than its cell is cut, ending in `~`.
pub fn draw_grid(cells: &[GridCell]) -> Canvas {
    let cells = &cells[..cells.len().min(GRID_ROWS * GRID_COLUMNS)];
    let largest = cells.iter().map(|c| c.side).max().unwrap_or(160).max(1);
    let factor = 128usize.div_ceil(largest).max(1);
    let side = largest * factor;
    let longest = cells
        .iter()
        .map(|c| c.title.chars().count())
        .max()
        .unwrap_or(0);
    let cell_inner = side.max((longest * GLYPH).min(32 * GLYPH));
    let (pad, title) = (12, GLYPH + 6);
    let cell_width = cell_inner + pad;
    let cell_height = side + title + pad;
    let mut canvas = Canvas::new(
        GRID_COLUMNS * cell_width + pad,
        GRID_ROWS * cell_height + pad,
        WHITE,
    );
    for (i, cell) in cells.iter().enumerate() {
        let (row, column) = (i / GRID_COLUMNS, i % GRID_COLUMNS);
        let x = pad + column * cell_width;
        let y = pad + row * cell_height;
        let colour = if cell.wrong { RED } else { BLACK };
        let text = fit(&cell.title, cell_inner / GLYPH);
        let indent = (cell_inner - text.chars().count() * GLYPH) / 2;
        canvas.text((x + indent) as i64, y as i64, &text, 1, colour);
        let image = enlarge(&cell.rgb, cell.side, factor);
        let shown = cell.side * factor;
        canvas.blit(
            x + (cell_inner - shown) / 2,
            y + title,
            shown,
            shown,
            &image,
        );
    }
    canvas
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Epoch.
    pub epoch: f64,
    /// Training loss.
    pub loss: f64,
    /// Training accuracy.
    pub accuracy: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
}

/// Reads `metrics.csv` (`shardfeed-model`'s reader, the `csv` crate); an empty validation
/// field (no validation files) reads as NaN and is not drawn.
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<CurvePoint>> {
    Ok(shardfeed_model::fit::read_metrics(path)?
        .into_iter()
        .map(|row| CurvePoint {
            epoch: row.epoch as f64,
            loss: row.loss,
            accuracy: row.accuracy,
            val_loss: row.val_loss.unwrap_or(f64::NAN),
            val_accuracy: row.val_accuracy.unwrap_or(f64::NAN),
        })
        .collect())
}

/// A named, coloured series of (epoch, value) points.
type Series<'a> = (&'a str, Rgb, Vec<(f64, f64)>);

/// One panel of the curves: two series over the epochs.
fn panel(canvas: &mut Canvas, left: usize, title: &str, series: [Series<'_>; 2]) {
    let (top, width, height) = (40usize, 380usize, 260usize);
    let (x0, y0) = (left as f64 + 60.0, top as f64 + height as f64);
    let points = series.iter().flat_map(|s| s.2.iter().copied());
    let (mut low, mut high) = (f64::MAX, f64::MIN);
    let mut last_epoch: f64 = 1.0;
    for (epoch, value) in points {
        if value.is_finite() {
            low = low.min(value);
            high = high.max(value);
        }
        last_epoch = last_epoch.max(epoch);
    }
    if low > high {
        (low, high) = (0.0, 1.0);
    }
    if high - low < 1e-6 {
        (low, high) = (low - 0.5, high + 0.5);
    }
    let margin = (high - low) * 0.05;
    let (low, high) = (low - margin, high + margin);
    let first_epoch = 1.0;
    let span = (last_epoch - first_epoch).max(1.0);
    let to_x = |epoch: f64| x0 + (epoch - first_epoch) / span * width as f64;
    let to_y = |value: f64| y0 - (value - low) / (high - low) * height as f64;
    canvas.text(left as i64 + 60, 12, title, 2, BLACK);
    // Axes, grid lines and labels.
    for tick in 0..=4 {
        let value = low + (high - low) * f64::from(tick) / 4.0;
        let y = to_y(value);
        canvas.line((x0, y), (x0 + width as f64, y), 1, GREY);
        canvas.text(
            left as i64 + 4,
            y as i64 - 4,
            &format!("{value:.3}"),
            1,
            BLACK,
        );
    }
    canvas.line((x0, y0), (x0 + width as f64, y0), 2, BLACK);
    canvas.line((x0, y0), (x0, top as f64), 2, BLACK);
    let epochs = last_epoch as u64;
    let every = epochs.div_ceil(10).max(1);
    for epoch in (1..=epochs).step_by(every as usize) {
        let x = to_x(epoch as f64);
        canvas.line((x, y0), (x, y0 + 5.0), 1, BLACK);
        let label = epoch.to_string();
        canvas.text(
            x as i64 - (label.len() * 4) as i64,
            y0 as i64 + 8,
            &label,
            1,
            BLACK,
        );
    }
    canvas.text(
        x0 as i64 + width as i64 / 2 - 20,
        y0 as i64 + 22,
        "epoch",
        1,
        BLACK,
    );
    for (i, (name, colour, values)) in series.iter().enumerate() {
        let values: Vec<(f64, f64)> = values.iter().copied().filter(|p| p.1.is_finite()).collect();
        if values.is_empty() {
            continue;
        }
        for pair in values.windows(2) {
            canvas.line(
                (to_x(pair[0].0), to_y(pair[0].1)),
                (to_x(pair[1].0), to_y(pair[1].1)),
                2,
                *colour,
            );
        }
        for &(epoch, value) in &values {
            canvas.fill(
                to_x(epoch) as i64 - 2,
                to_y(value) as i64 - 2,
                5,
                5,
                *colour,
            );
        }
        let ly = y0 as i64 + 40 + 14 * i as i64;
        canvas.fill(x0 as i64, ly, 20, 8, *colour);
        canvas.text(x0 as i64 + 26, ly, name, 1, BLACK);
    }
}

/// The training curves: loss and accuracy per epoch, training vs validation.
pub fn curves(points: &[CurvePoint]) -> Canvas {
    let mut canvas = Canvas::new(900, 390, WHITE);
    let series = |f: fn(&CurvePoint) -> f64| -> Vec<(f64, f64)> {
        points.iter().map(|p| (p.epoch, f(p))).collect()
    };
    panel(
        &mut canvas,
        0,
        "loss",
        [
            ("training", BLUE, series(|p| p.loss)),
            ("validation", ORANGE, series(|p| p.val_loss)),
        ],
    );
    panel(
        &mut canvas,
        450,
        "accuracy",
        [
            ("training", BLUE, series(|p| p.accuracy)),
            ("validation", ORANGE, series(|p| p.val_accuracy)),
        ],
    );
    canvas
}

/// Draws `metrics.csv`'s curves into `out` (PNG).
pub fn draw_curves(metrics: &Path, out: &Path) -> anyhow::Result<()> {
    curves(&read_metrics(metrics)?).save_png(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cell rectangles `draw_grid` uses: (x, y) of each cell's title band and image, for
    /// cells of `side` px (≥ 128, so no enlargement) and titles no wider than the image.
    fn title_band(canvas: &Canvas, i: usize, side: usize) -> Vec<Rgb> {
        let (pad, title) = (12, GLYPH + 6);
        let (x, y) = (
            pad + (i % GRID_COLUMNS) * (side + pad),
            pad + (i / GRID_COLUMNS) * (side + title + pad),
        );
        let mut pixels = Vec::new();
        for dy in 0..GLYPH {
            for dx in 0..side {
                pixels.push(canvas.get(x + dx, y + dy));
            }
        }
        pixels
    }

    #[test]
    fn a_misclassified_image_has_a_red_title_and_the_others_black() {
        let side = 160; // wider than the titles: no enlargement, cells as wide as images
        let grey = vec![100u8; side * side * 3];
        let cells: Vec<GridCell> = [false, true, false, true, false]
            .iter()
            .map(|&wrong| GridCell {
                rgb: grey.clone(),
                side,
                title: if wrong {
                    "obs: cat / est: dog"
                } else {
                    "obs: dog / est: dog"
                }
                .into(),
                wrong,
            })
            .collect();
        let canvas = draw_grid(&cells);
        for (i, cell) in cells.iter().enumerate() {
            let band = title_band(&canvas, i, side);
            let red = band.iter().filter(|&&p| p == RED).count();
            let black = band.iter().filter(|&&p| p == BLACK).count();
            if cell.wrong {
                assert!(red > 50 && black == 0, "cell {i}: {red} red, {black} black");
            } else {
                assert!(black > 50 && red == 0, "cell {i}: {red} red, {black} black");
            }
        }
        // The image itself sits under its title, unchanged.
        let (pad, title) = (12, GLYPH + 6);
        let below = canvas.get(pad + side + pad + 5, pad + title + 5);
        assert_eq!(below, [100, 100, 100]);
    }
}

//! Realistic synthetic inputs for the figure tests, and checks on the files they write.

use std::path::Path;

use crate::metrics::{EpochRecord, History};

/// A deterministic pseudo-random sequence in [0, 1) (no dependency needed for test noise).
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1))
    }

    pub(crate) fn next(&mut self) -> f64 {
        // 64-bit LCG (Knuth's MMIX constants); the top 53 bits make the float.
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Curves shaped like the seed's 50-epoch run: loss falling from about 0.7, accuracy rising
/// to near 1, validation noisier than training.
pub(crate) fn plausible_history(epochs: u32) -> History {
    let mut noise = Noise::new(7);
    let mut history = History::default();
    for epoch in 1..=epochs {
        let t = f64::from(epoch - 1);
        let loss = 0.05 + 0.65 * (-t / 6.0).exp() + 0.02 * noise.next();
        let val_loss = 0.08 + 0.6 * (-t / 8.0).exp() + 0.08 * noise.next();
        history.push(EpochRecord {
            epoch,
            loss,
            accuracy: (1.0 - 0.8 * loss).min(1.0),
            val_loss: Some(val_loss),
            val_accuracy: Some((1.02 - 0.9 * val_loss - 0.05 * noise.next()).min(1.0)),
            seconds: 1.5 + 0.1 * noise.next(),
            val_images: None,
        });
    }
    history
}

/// A `height x width x 3` gray image of a soft blob, like a downscaled chest X-ray.
pub(crate) fn blob_image(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut noise = Noise::new(seed);
    let (cx, cy) = (0.3 + 0.4 * noise.next(), 0.3 + 0.4 * noise.next());
    let radius = 0.15 + 0.2 * noise.next();
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let dx = f64::from(x) / f64::from(width) - cx;
            let dy = f64::from(y) / f64::from(height) - cy;
            let d2 = (dx * dx + dy * dy) / (radius * radius);
            let value = 30.0 + 190.0 * (-d2).exp() + 20.0 * noise.next();
            let v = value.clamp(0.0, 255.0) as u8;
            pixels.extend([v, v, v]);
        }
    }
    pixels
}

/// Checks that `path` is a PNG of `size` pixels that is not one flat colour.
pub(crate) fn assert_png(path: &Path, size: (u32, u32)) {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable PNG: {e}", path.display()))
        .to_rgb8();
    assert_eq!(image.dimensions(), size, "{}", path.display());
    let first = image.get_pixel(0, 0);
    let distinct = image.pixels().filter(|p| *p != first).count();
    // A figure with axes, text and data differs from its background in many pixels.
    assert!(
        distinct > 1000,
        "{} is nearly flat: {distinct} pixels differ from the corner",
        path.display()
    );
}

/// Checks that the SVG at `path` is an SVG and contains every one of `texts`.
pub(crate) fn assert_svg_contains(path: &Path, texts: &[&str]) {
    let svg = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(svg.contains("<svg"), "{} is not an SVG", path.display());
    for text in texts {
        assert!(svg.contains(text), "{} lacks {text:?}", path.display());
    }
}

/// The text content of every `<text>` element of the SVG at `path`, trimmed.
pub(crate) fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let body = element.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_owned())
        })
        .collect()
}

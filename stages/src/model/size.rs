//! The input sizes the model supports and the head's pooling, as runtime values. The
//! geometry table (`model::geometry`, above these values) maps them to the compile-time
//! shapes every backend instantiates.

use super::error::ModelError;
use serde::Deserialize;

/// An input size with a concrete, compile-time-checked VGG16 instantiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageSize {
    /// 32 x 32 (fast tests): 32 -> 16 -> 8 -> 4 -> 2 -> 1; needs global pooling.
    S32,
    /// 224 x 224 (ImageNet): 224 -> 112 -> 56 -> 28 -> 14 -> 7.
    S224,
    /// 237 x 237 (the seed experiment): 237 -> 118 -> 59 -> 29 -> 14 -> 7.
    S237,
}

impl ImageSize {
    pub const SUPPORTED: [ImageSize; 3] = [ImageSize::S32, ImageSize::S224, ImageSize::S237];

    /// The size for `pixels`, or an error listing the supported ones.
    pub fn from_pixels(pixels: u32) -> Result<Self, ModelError> {
        Self::SUPPORTED
            .into_iter()
            .find(|s| s.pixels() as u32 == pixels)
            .ok_or_else(|| ModelError::UnsupportedImageSize {
                size: pixels,
                supported: Self::SUPPORTED.map(|s| s.pixels().to_string()).join(", "),
            })
    }

    /// Side length of the (square) input.
    pub const fn pixels(self) -> usize {
        match self {
            ImageSize::S32 => 32,
            ImageSize::S224 => 224,
            ImageSize::S237 => 237,
        }
    }

    /// Side length at the input and after each of the five max-pools (2x2, stride 2, floor).
    pub const fn chain(self) -> [usize; 6] {
        let mut chain = [self.pixels(); 6];
        let mut i = 1;
        while i < 6 {
            chain[i] = chain[i - 1] / 2;
            i += 1;
        }
        chain
    }

    /// Side length of the base's output.
    pub const fn base_out(self) -> usize {
        self.chain()[5]
    }
}

/// The head's pooling of the base output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average-pool 4x4, stride 4 (the seed: 7x7 -> 1x1, averaging the top-left 4x4).
    Avg4,
    /// Global average over the whole base output.
    Global,
}

impl Pooling {
    pub const fn name(self) -> &'static str {
        match self {
            Pooling::Avg4 => "avg4",
            Pooling::Global => "global",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Pooling::Avg4, Pooling::Global]
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// Window size on a base output of side `base_out`.
    pub const fn window(self, base_out: usize) -> usize {
        match self {
            Pooling::Avg4 => 4,
            Pooling::Global => base_out,
        }
    }

    /// Checks that this pooling fits `size`'s base output; returns the pooled side length.
    pub fn pooled_side(self, size: ImageSize) -> Result<usize, ModelError> {
        let base_out = size.base_out();
        let k = self.window(base_out);
        if k > base_out {
            return Err(ModelError::PoolingTooLarge {
                size: size.pixels(),
                base_out,
            });
        }
        Ok(base_out / k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_floor_halvings_and_unknown_sizes_list_the_supported() {
        for s in ImageSize::SUPPORTED {
            let c = s.chain();
            assert!(c.windows(2).all(|w| w[1] == w[0] / 2), "{c:?}");
            assert_eq!(ImageSize::from_pixels(c[0] as u32).unwrap(), s);
        }
        let e = ImageSize::from_pixels(100).unwrap_err().to_string();
        assert_eq!(
            e,
            "image size 100 is not supported; supported sizes: 32, 224, 237"
        );
        assert_eq!(Pooling::Avg4.pooled_side(ImageSize::S237).unwrap(), 1);
        assert_eq!(Pooling::Global.pooled_side(ImageSize::S32).unwrap(), 1);
        assert!(Pooling::Avg4.pooled_side(ImageSize::S32).is_err());
    }
}

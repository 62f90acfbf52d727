//! Host <-> GPU layouts, all pure copies (bit-exact both ways):
//!
//! - Images arrive NHWC (`[n, h, w, 3]`, as the seed's arrays and Keras hold them); cuDNN's
//!   fastest strict-fp32 convolutions, like PyTorch's, are NCHW, so images are transposed on
//!   the way in ([`nhwc_to_nchw`]) and maps on the way out ([`nchw_to_nhwc`]).
//! - Convolution weights are torchvision's OIHW `[out, in, 3, 3]`, which is cuDNN's KCRS
//!   filter layout for NCHW data: no reordering, only packing. The 13 convolutions' weights
//!   and biases live in one device buffer ([`ParamArena`]) so that gradients and Adam's
//!   moments are one buffer each and one kernel launch updates them all.

use crate::model::weights::BaseWeights;
use crate::model::ModelError;

/// `[n, h, w, c]` -> `[n, c, h, w]`.
pub fn nhwc_to_nchw(src: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    assert_eq!(src.len(), n * h * w * c, "NHWC length");
    let mut dst = vec![0.0f32; src.len()];
    let plane = h * w;
    for b in 0..n {
        let s = &src[b * plane * c..(b + 1) * plane * c];
        let d = &mut dst[b * plane * c..(b + 1) * plane * c];
        for (p, pixel) in s.chunks_exact(c).enumerate() {
            for (ch, v) in pixel.iter().enumerate() {
                d[ch * plane + p] = *v;
            }
        }
    }
    dst
}

/// `[n, c, h, w]` -> `[n, h, w, c]`.
pub fn nchw_to_nhwc(src: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(src.len(), n * h * w * c, "NCHW length");
    let mut dst = vec![0.0f32; src.len()];
    let plane = h * w;
    for b in 0..n {
        let s = &src[b * plane * c..(b + 1) * plane * c];
        let d = &mut dst[b * plane * c..(b + 1) * plane * c];
        for (p, pixel) in d.chunks_exact_mut(c).enumerate() {
            for (ch, v) in pixel.iter_mut().enumerate() {
                *v = s[ch * plane + p];
            }
        }
    }
    dst
}

/// Where each tensor of the base sits in the one flat parameter buffer. Offsets are
/// multiples of 64 values (256 bytes), the alignment cuDNN prefers for its operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamArena {
    /// `(weight offset, weight length, bias offset, bias length)` per convolution, in table
    /// order.
    pub convs: Vec<(usize, usize, usize, usize)>,
    /// Values in the buffer, padding included.
    pub len: usize,
}

/// Values per alignment unit of the arena.
pub const ALIGN: usize = 64;

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

impl ParamArena {
    /// The arena of the VGG16 base (shapes from the layer table, through `BaseWeights`).
    pub fn vgg16() -> Self {
        // Shapes only: the table gives them through any BaseWeights; zero weights are cheap
        // compared with what they describe, but build the offsets from the table directly.
        let mut convs = Vec::with_capacity(13);
        let mut at = 0;
        for l in crate::model::vgg16::conv_layers() {
            if let crate::model::vgg16::FeatureKind::Conv { c_in, c_out, .. } = l.kind {
                let w = c_out * c_in * 9;
                let w_at = at;
                at = align(at + w);
                let b_at = at;
                at = align(at + c_out);
                convs.push((w_at, w, b_at, c_out));
            }
        }
        Self { convs, len: at }
    }

    /// The base's weights packed into one buffer (padding is zero).
    pub fn pack(&self, weights: &BaseWeights) -> Vec<f32> {
        let mut flat = vec![0.0f32; self.len];
        for (conv, &(w_at, w_len, b_at, b_len)) in weights.convs().iter().zip(&self.convs) {
            flat[w_at..w_at + w_len].copy_from_slice(&conv.weight);
            flat[b_at..b_at + b_len].copy_from_slice(&conv.bias);
        }
        flat
    }

    /// The base's weights read back from a packed buffer.
    pub fn unpack(&self, flat: &[f32]) -> Result<BaseWeights, ModelError> {
        if flat.len() != self.len {
            return Err(ModelError::InputLength {
                what: "GPU parameter buffer",
                got: flat.len(),
                expected: self.len,
                detail: "the packed VGG16 base".into(),
            });
        }
        let mut next = self
            .convs
            .iter()
            .flat_map(|&(w_at, w_len, b_at, b_len)| [(w_at, w_len), (b_at, b_len)]);
        BaseWeights::try_from_fn(|_, _| {
            let (at, len) = next.next().unwrap_or((0, 0));
            Ok(flat[at..at + len].to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::{self, Model};
    use crate::model::size::{ImageSize, Pooling};
    use crate::model::spec::{ConvAlgorithm, HeadSpec, NetworkSpec};
    use crate::model::weights::{HeadWeights, ModelWeights};

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn image_layouts_round_trip_bit_for_bit() {
        let (n, h, w, c) = (2, 3, 5, 3);
        // Every value distinct, with the awkward ones: -0.0, a NaN payload, subnormals.
        let mut nhwc: Vec<f32> = (0..n * h * w * c).map(|i| i as f32 * 0.5 - 7.0).collect();
        nhwc[3] = -0.0;
        nhwc[4] = f32::from_bits(0x7fc0_1234);
        nhwc[5] = f32::from_bits(1);
        let nchw = nhwc_to_nchw(&nhwc, n, h, w, c);
        // NCHW element (b, ch, y, x) is NHWC element (b, y, x, ch).
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let a = nchw[((b * c + ch) * h + y) * w + x];
                        let e = nhwc[((b * h + y) * w + x) * c + ch];
                        assert_eq!(a.to_bits(), e.to_bits());
                    }
                }
            }
        }
        assert_eq!(bits(&nchw_to_nhwc(&nchw, n, c, h, w)), bits(&nhwc));
    }

    #[test]
    fn the_parameter_arena_is_aligned_and_round_trips_a_checkpoint_bit_for_bit() {
        let arena = ParamArena::vgg16();
        assert_eq!(arena.convs.len(), 13);
        let mut end = 0;
        for &(w_at, w_len, b_at, b_len) in &arena.convs {
            assert_eq!(w_at % ALIGN, 0);
            assert_eq!(b_at % ALIGN, 0);
            assert!(w_at >= end && b_at >= w_at + w_len, "no overlap");
            end = b_at + b_len;
        }
        assert!(arena.len >= end && arena.len - 14_714_688 < 26 * ALIGN);

        let spec =
            NetworkSpec::new(ImageSize::S32, Pooling::Global, ConvAlgorithm::Direct).unwrap();
        let head = HeadSpec::new(16, 0.1).unwrap();
        let mut base = BaseWeights::glorot(3);
        // Biases that are not all zero, so that a weight/bias mix-up would show.
        let mut fill = 0.0f32;
        let base_vals: Vec<Vec<f32>> = base
            .tensors()
            .iter()
            .map(|t| {
                t.values
                    .iter()
                    .map(|v| {
                        fill += 1e-3;
                        if t.rank == 1 {
                            fill
                        } else {
                            *v
                        }
                    })
                    .collect()
            })
            .collect();
        let mut it = base_vals.into_iter();
        base = BaseWeights::try_from_fn(|_, _| Ok(it.next().unwrap())).unwrap();
        let model = Model {
            spec,
            head,
            weights: ModelWeights {
                base: base.clone(),
                head: HeadWeights::glorot(&head, 3),
            },
            classes: crate::model::spec::default_classes(),
        };
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.safetensors");
        checkpoint::save(&model, &first).unwrap();
        let loaded = checkpoint::load(&first).unwrap();

        // To the GPU's buffer and back, then saved again: the same bytes.
        let flat = arena.pack(&loaded.weights.base);
        assert!(arena
            .convs
            .iter()
            .all(|&(w_at, w_len, _, _)| flat[w_at..w_at + w_len].iter().any(|v| *v != 0.0)));
        let back = arena.unpack(&flat).unwrap();
        assert_eq!(back, base);
        let second = dir.path().join("b.safetensors");
        checkpoint::save(
            &Model {
                weights: ModelWeights {
                    base: back,
                    head: loaded.weights.head.clone(),
                },
                ..loaded
            },
            &second,
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap()
        );
        assert!(arena.unpack(&flat[1..]).is_err());
    }
}

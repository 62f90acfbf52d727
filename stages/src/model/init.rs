//! Deterministic random initialisation from a u64 seed, as Keras does by default: kernels
//! Glorot-uniform (limit `sqrt(6 / (fan_in + fan_out))`, fans including the 3x3 receptive
//! field for convolutions), biases zero.
//!
//! Each tensor draws from its own SplitMix64 stream keyed by the seed and the tensor's name,
//! so a tensor's values do not depend on the order tensors are initialised in, and never on
//! the thread count or on dfdx's RNG.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified here, so the
/// initial weights are reproducible across crate versions.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits (exactly representable in f32).
    pub fn next_unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The stream seed of one named tensor: FNV-1a of the name mixed with the run's seed.
fn stream_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix64::new(seed ^ h).next_u64()
}

/// Glorot-uniform values for tensor `name` with `len` elements and the given fans.
pub fn glorot_uniform(
    seed: u64,
    name: &str,
    len: usize,
    fan_in: usize,
    fan_out: usize,
) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let mut rng = SplitMix64::new(stream_seed(seed, name));
    (0..len)
        .map(|_| (rng.next_unit_f32() * 2.0 - 1.0) * limit)
        .collect()
}

/// Glorot-uniform OIHW conv kernel `[c_out, c_in, 3, 3]` (Keras fans: `9 c_in`, `9 c_out`).
pub fn conv_kernel(seed: u64, name: &str, c_in: usize, c_out: usize) -> Vec<f32> {
    glorot_uniform(seed, name, c_out * c_in * 9, 9 * c_in, 9 * c_out)
}

/// He-uniform OIHW conv kernel (limit `sqrt(6 / fan_in)`, fan_in = `9 c_in`). Unlike
/// Glorot, it keeps the activations' scale through 13 ReLU layers, so a randomly initialised
/// base still gives features of usable size (Glorot shrinks them about 1000-fold).
pub fn conv_kernel_he(seed: u64, name: &str, c_in: usize, c_out: usize) -> Vec<f32> {
    let limit = (6.0 / (9 * c_in) as f64).sqrt() as f32;
    let mut rng = SplitMix64::new(stream_seed(seed, name));
    (0..c_out * c_in * 9)
        .map(|_| (rng.next_unit_f32() * 2.0 - 1.0) * limit)
        .collect()
}

/// Glorot-uniform dense kernel in PyTorch `Linear` layout `[out, in]`.
pub fn dense_kernel(seed: u64, name: &str, inputs: usize, outputs: usize) -> Vec<f32> {
    glorot_uniform(seed, name, outputs * inputs, inputs, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_is_deterministic_bounded_and_name_keyed() {
        let a = conv_kernel(7, "features.0.weight", 3, 64);
        assert_eq!(a, conv_kernel(7, "features.0.weight", 3, 64));
        assert_ne!(a, conv_kernel(8, "features.0.weight", 3, 64));
        assert_ne!(a, conv_kernel(7, "features.2.weight", 3, 64));
        let limit = (6.0f32 / (27.0 + 576.0)).sqrt();
        assert!(a.iter().all(|v| v.abs() <= limit));
        // Roughly uniform: mean near 0, variance near limit^2 / 3.
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.01 * limit * 10.0);
        assert!(
            (var / (limit * limit / 3.0) - 1.0).abs() < 0.1,
            "variance {var}"
        );
        // First value pinned so an accidental change of the generator is caught.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}

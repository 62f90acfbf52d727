//! A model summary like Keras' `model.summary()`: layers, output shapes, parameter counts.

use super::size::Pooling;
use super::spec::{HeadSpec, NetworkSpec};
use super::vgg16::{FeatureKind, VGG16_FEATURES};
use std::fmt;

/// One row of the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    /// Keras-style layer name, e.g. `block1_conv1`.
    pub name: String,
    /// Layer type, e.g. `Conv2D`.
    pub kind: String,
    /// Output shape without the batch dimension (NHWC or flat).
    pub output: Vec<usize>,
    pub params: usize,
    pub trainable: bool,
    /// Checkpoint tensor prefix, e.g. `features.0`, empty for parameter-free layers.
    pub tensors: String,
}

/// The whole summary; `Display` renders it as a Keras-like table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSummary {
    pub input: Vec<usize>,
    pub rows: Vec<SummaryRow>,
    pub total_params: usize,
    pub trainable_params: usize,
    pub non_trainable_params: usize,
}

impl ModelSummary {
    /// Summarises the network `spec` with `head`; the VGG16 base counts as frozen
    /// (non-trainable) when `base_frozen`.
    pub fn of(spec: &NetworkSpec, head: &HeadSpec, base_frozen: bool) -> Self {
        let chain = spec.size().chain();
        let mut side = chain[0];
        let mut channels = 3;
        let mut rows = Vec::new();
        for layer in VGG16_FEATURES {
            let (kind, tensors) = match layer.kind {
                FeatureKind::Conv { c_out, .. } => {
                    channels = c_out;
                    ("Conv2D", format!("features.{}", layer.index))
                }
                FeatureKind::MaxPool => {
                    side /= 2;
                    ("MaxPooling2D", String::new())
                }
            };
            rows.push(SummaryRow {
                name: layer.name.to_string(),
                kind: kind.to_string(),
                output: vec![side, side, channels],
                params: layer.num_params(),
                trainable: !base_frozen,
                tensors,
            });
        }
        let k = spec.pooling().window(side);
        side /= k;
        let units = head.units();
        let pool_kind = match spec.pooling() {
            Pooling::Avg4 => "AveragePooling2D",
            Pooling::Global => "AveragePooling2D (global)",
        };
        let head_rows = [
            (
                "average_pooling2d",
                pool_kind,
                vec![side, side, channels],
                0,
                "",
            ),
            ("flatten", "Flatten", vec![side * side * channels], 0, ""),
            (
                "dense",
                "Dense (ReLU)",
                vec![units],
                side * side * channels * units + units,
                "head.dense1",
            ),
            ("dropout", "Dropout", vec![units], 0, ""),
            (
                "dense_1",
                if head.is_binary() {
                    "Dense (sigmoid)"
                } else {
                    "Dense (softmax)"
                },
                vec![head.outputs()],
                head.outputs() * (units + 1),
                "head.dense2",
            ),
        ];
        for (name, kind, output, params, tensors) in head_rows {
            rows.push(SummaryRow {
                name: name.to_string(),
                kind: kind.to_string(),
                output,
                params,
                trainable: true,
                tensors: tensors.to_string(),
            });
        }
        let total_params = rows.iter().map(|r| r.params).sum();
        let trainable_params = rows.iter().filter(|r| r.trainable).map(|r| r.params).sum();
        ModelSummary {
            input: vec![chain[0], chain[0], 3],
            rows,
            total_params,
            trainable_params,
            non_trainable_params: total_params - trainable_params,
        }
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("(None, {})", inner.join(", "))
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = "_".repeat(96);
        writeln!(
            f,
            "Model: \"vgg16_transfer\" (input {}, NHWC)",
            shape(&self.input)
        )?;
        writeln!(f, "{rule}")?;
        writeln!(
            f,
            "{:<45}{:<26}{:>12}   Tensors",
            "Layer (type)", "Output Shape", "Param #"
        )?;
        writeln!(f, "{}", "=".repeat(96))?;
        for r in &self.rows {
            let name = format!("{} ({})", r.name, r.kind);
            writeln!(
                f,
                "{name:<45}{:<26}{:>12}   {}",
                shape(&r.output),
                thousands(r.params),
                r.tensors
            )?;
        }
        writeln!(f, "{}", "=".repeat(96))?;
        writeln!(f, "Total params: {}", thousands(self.total_params))?;
        writeln!(f, "Trainable params: {}", thousands(self.trainable_params))?;
        writeln!(
            f,
            "Non-trainable params: {}",
            thousands(self.non_trainable_params)
        )?;
        write!(f, "{rule}")
    }
}

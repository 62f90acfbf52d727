//! A three-class experiment end to end through the built binary: load (ready arrays), normalize,
//! split, model (`classes` = three names: a Dense(3) + softmax head), features, train, then
//! `pipeline predict` and `pipeline export` on the run. No real data: the images are drawn
//! here, three brightness patterns a random base tells apart.

mod common;

use std::fs;
use std::path::Path;

use common::Project;

const CLASSES: [&str; 3] = ["NORMAL", "PNEUMONIA", "COVID-19"];
const SIDE: usize = 32;
const PER_CLASS: usize = 16;

/// One image of class `class`: a dark field, stripes or a bright field, with a little noise.
fn image(class: usize, seed: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(SIDE * SIDE * 3);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let noise = ((x * 31 + y * 17 + seed * 13) % 23) as i32 - 11;
            let base: i32 = match class {
                0 => 40,
                1 => {
                    if (x / 4) % 2 == 0 {
                        220
                    } else {
                        30
                    }
                }
                _ => 210,
            };
            let v = (base + noise).clamp(0, 255) as u8;
            px.extend([v, v, v]);
        }
    }
    px
}

/// A version 1.0 `.npy` file of `u8` values of `shape` (the layout numpy's docs give).
fn write_npy(path: &Path, shape: &[usize], values: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values);
    fs::write(path, bytes).expect("npy");
}

fn write_png(path: &Path, px: &[u8]) {
    let img = image::RgbImage::from_raw(SIDE as u32, SIDE as u32, px.to_vec()).expect("image");
    img.save(path).expect("png");
}

fn experiment(model_classes: Option<&[&str]>, class_weight: &str) -> String {
    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let model_classes =
        model_classes.map_or(String::new(), |c| format!("classes = [{}]", quoted(c)));
    format!(
        r#"name = "three"
seed = 5

[stages.load]
kind = "load"
image_size = 32
classes = [{load}]

[[stages.load.sources]]
type = "npy"
images = "X.npy"
labels = "Y.npy"

[stages.normalize]
kind = "normalize"
inputs = {{ images = "load.images" }}
mode = "scale"

[stages.split]
kind = "split"
inputs = {{ labels = "load.labels" }}
test_fraction = 0.25
seed = 3

[stages.model]
kind = "model"
image_size = 32
weights = "random-he"
pooling = "global"
units = 32
dropout = 0.1
{model_classes}

[stages.features]
kind = "features"
inputs = {{ base = "model.base", images = "normalize.images" }}

[stages.train]
kind = "train"
inputs = {{ model = "model.model", features = "features.features", labels = "load.labels", train = "split.train", images = "normalize.images" }}
epochs = 60
learning_rate = 0.01
batch_size = 8
validation_fraction = 0.0
{class_weight}
"#,
        load = quoted(&CLASSES),
    )
}

/// The project: the arrays under `data/`, three PNGs (one per class) under `new/`.
fn project() -> Project {
    let p = Project::new();
    fs::create_dir_all(p.path().join("data")).expect("data");
    fs::create_dir_all(p.path().join("new")).expect("new");
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..3 * PER_CLASS {
        let class = i % 3;
        x.extend(image(class, i));
        y.push(class as u8);
    }
    write_npy(
        &p.path().join("data/X.npy"),
        &[3 * PER_CLASS, SIDE, SIDE, 3],
        &x,
    );
    write_npy(&p.path().join("data/Y.npy"), &[3 * PER_CLASS], &y);
    for class in 0..3 {
        write_png(
            &p.path().join(format!("new/{class}.png")),
            &image(class, 100 + class),
        );
    }
    p
}

fn history_losses(p: &Project) -> Vec<f64> {
    let record = p.latest();
    let id = record["id"].as_str().expect("id").to_string();
    let text = fs::read_to_string(p.runs_dir().join(&id).join("history.csv")).expect("history.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "loss")
        .expect("loss column");
    lines
        .map(|l| {
            l.split(',')
                .nth(col)
                .expect("loss")
                .parse()
                .expect("number")
        })
        .collect()
}

#[test]
fn a_three_class_experiment_trains_a_softmax_head_and_predicts_every_class() {
    let p = project();
    p.write(
        "exp.toml",
        &experiment(Some(&CLASSES), "class_weight = \"balanced\""),
    );
    p.ok(&["run", "exp.toml"]);

    // The training loss is the categorical cross-entropy: from about ln 3 down.
    let losses = history_losses(&p);
    assert_eq!(losses.len(), 60);
    assert!(losses[0] > 0.5, "first epoch loss {}", losses[0]);
    assert!(
        losses[59] < 0.5 * losses[0],
        "loss {} -> {}",
        losses[0],
        losses[59]
    );
    // The balanced weights are recorded, keyed by class (these classes are balanced: 1 each).
    let record = p.latest();
    let train = record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some("train"))
        .expect("train stage")
        .clone();
    let weights = train["notes"]["class_weights"]
        .as_table()
        .unwrap_or_else(|| panic!("class weights in {train}"));
    for name in CLASSES {
        let w = weights[name].as_float().expect("weight");
        assert!((w - 1.0).abs() < 0.2, "{name}: {w}");
    }

    // predict: the most probable class and every class's probability, per image; the CSV
    // has one column per class, named by the class.
    let csv = p.path().join("pred.csv");
    let out = p.ok(&[
        "predict",
        "latest",
        "new",
        "--csv",
        csv.to_str().expect("path"),
    ]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(".png\t")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    let table = fs::read_to_string(&csv).expect("csv");
    let mut rows = table.lines();
    assert_eq!(
        rows.next(),
        Some("image,NORMAL,PNEUMONIA,COVID-19,label"),
        "{table}"
    );
    let mut right = 0;
    for (class, (line, row)) in lines.iter().zip(rows).enumerate() {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 5, "{row}");
        let p: Vec<f64> = fields[1..4].iter().map(|v| v.parse().expect("p")).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row}");
        let best = (0..3).fold(0, |b, k| if p[k] > p[b] { k } else { b });
        assert_eq!(fields[4], CLASSES[best], "{row}");
        // stdout says the same to 6 decimals, each probability after its class's name.
        let cells: Vec<&str> = line.split('\t').collect();
        assert_eq!(cells[1], CLASSES[best], "{line}");
        for (k, name) in CLASSES.iter().enumerate() {
            let (shown, value) = cells[2 + k].rsplit_once(' ').expect("name and value");
            assert_eq!(shown, *name, "{line}");
            let value: f64 = value.parse().expect("probability");
            assert!((value - p[k]).abs() <= 6e-7, "{line} vs {row}");
        }
        right += usize::from(best == class);
    }
    assert!(right >= 2, "{right} of 3 new images right:\n{table}");

    // export writes the whole model; its metadata names the classes in order.
    let exported = p.path().join("model.safetensors");
    p.ok(&["export", "latest", "-o", exported.to_str().expect("path")]);
    let bytes = fs::read(&exported).expect("export");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("len")) as usize;
    let header = String::from_utf8_lossy(&bytes[8..8 + len]).into_owned();
    assert!(
        header.contains(r#"classes=[\"NORMAL\",\"PNEUMONIA\",\"COVID-19\"]"#),
        "{header}"
    );
    assert!(
        header.contains(r#""head.dense2.weight":{"dtype":"F32","shape":[3,32]"#),
        "{header}"
    );
}

#[test]
fn labels_beyond_the_models_classes_stop_training_naming_the_fix() {
    let p = project();
    // The model left at the default pair, the data with three labels.
    p.write("exp.toml", &experiment(None, ""));
    let err = p.fails(&["run", "exp.toml"]);
    assert!(err.contains("has label 2"), "{err}");
    assert!(err.contains("the model has 2 classes"), "{err}");
    assert!(err.contains("set model.classes"), "{err}");

    // A class weight naming no class is refused, naming the key.
    p.write(
        "exp.toml",
        &experiment(
            Some(&CLASSES),
            "class_weight = { NORMAL = 1.0, COVID = 2.0 }",
        ),
    );
    let err = p.fails(&["run", "exp.toml"]);
    assert!(err.contains("class_weight"), "{err}");
    assert!(err.contains("`COVID` is not a class"), "{err}");
}

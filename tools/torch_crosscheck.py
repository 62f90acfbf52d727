#!/usr/bin/env python3
"""Cross-check a pipeline run against PyTorch's torchvision VGG16.

What it proves, for one run of a VGG16 experiment:

1. The model stage's `base.safetensors` loads by name into
   `torchvision.models.vgg16().features` with `load_state_dict(strict=True)`: every tensor is
   there, nothing extra, every shape is torchvision's (OIHW conv weights), every dtype f32.
2. Those weights, run by PyTorch on the normalize stage's images (NHWC f32, permuted to
   NCHW) and pooled the way our head pools (`avg4`: 4x4 average, stride 4, floor, so the
   top-left 4x4 of a 7x7 map; `global`: the whole map; then flattened in (h, w, c) order),
   give the features stage's `features.npy` (N x 512) to within TOLERANCE relative to the
   features' scale (max |value|).
3. The train stage's whole checkpoint (`model.safetensors`, as `pipeline export` writes it
   from a frozen-base run's head and base) loads with strict=True into
   torchvision's `features` plus a head of PyTorch `Linear` layers named `head.dense1`,
   `head.dense2`, and that model, run end to end on the test images, gives the evaluate
   stage's probabilities (`predictions.csv`) to within TOLERANCE (absolute; they are in [0, 1]).

Tolerance: both sides compute in fp32 with different summation orders (our tiled
im2col + gemm against oneDNN), over 13 convolutions with dot products of up to 4,608 terms.
Rounding leaves relative differences of a few 1e-6 (measured 0.8e-6 to 2.7e-6 on the
quickstart and on model1 at 32 and 237 px); a layout error gives differences of order 1e-1
(a spatially transposed kernel: 0.26; one layer's in/out channels swapped: 0.72). 1e-4 is
well clear of both.

Usage:
    python tools/torch_crosscheck.py [RUN_DIR] [--artifacts DIR]
RUN_DIR is a run's directory (`artifacts/runs/<id>`); without it, the newest run under
`--artifacts` (default `$PIPELINE_ARTIFACTS` or `artifacts`). Outputs that a run does not
publish are read from the store's cache by the stage keys in its `run.toml`; the trained
checkpoint of a frozen-base run is stored as parts, so pass it as `--model` after
`pipeline export RUN -o FILE` (the script says so when it is needed). Any input can
be given explicitly instead (`--base`, `--images`, `--features`, `--model`, `--test-index`,
`--predictions`; with all six, no run is needed). Exits 0 when everything is within tolerance, 1 when not, 2 on a usage or
loading error (a missing, extra or misshaped tensor fails loudly there).
"""

import argparse
import csv
import os
import sys
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors import safe_open

TOLERANCE = 1e-4
KEYS = ["base", "images", "features", "model", "test_index", "predictions"]


def die(message):
    """A usage or loading error: exit status 2, apart from a failed comparison's 1."""
    print(f"torch-crosscheck: error: {message}", file=sys.stderr)
    sys.exit(2)


class Base(torch.nn.Module):
    """torchvision's VGG16 `features`, under the same name as in torchvision's `vgg16()`."""

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.vgg16(weights=None).features


class Head(torch.nn.Module):
    """Our head: dense U + ReLU, dropout (inactive in eval), dense 1; outputs a logit."""

    def __init__(self, units):
        super().__init__()
        self.dense1 = torch.nn.Linear(512, units)
        self.dense2 = torch.nn.Linear(units, 1)

    def forward(self, x):
        return self.dense2(torch.relu(self.dense1(x)))


class Whole(Base):
    def __init__(self, units):
        super().__init__()
        self.head = Head(units)


def read_checkpoint(path):
    """The tensors (all f32, or an error) and our metadata of a checkpoint."""
    with safe_open(path, framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
        meta = f.metadata() or {}
    bad = [f"{n}: {t.dtype}" for n, t in tensors.items() if t.dtype != torch.float32]
    if bad:
        die(f"{path}: tensors that are not f32: {', '.join(bad)}")
    if "pipeline" in meta:  # format 2; format 1 had one metadata key per field
        lines = meta["pipeline"].splitlines()
        meta = dict(line.split("=", 1) for line in lines if "=" in line)
    if not meta.get("format", "").startswith("pipeline-vgg16/"):
        die(f"{path}: not a pipeline VGG16 checkpoint (metadata {meta})")
    return tensors, meta


def load_strict(module, tensors, path):
    """load_state_dict(strict=True), with the file named in the error."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        die(f"{path} does not load into torchvision's layout:\n{e}")
    return module.eval()


def pooled(features, images, pooling):
    """Base, then our head's pooling and flatten, for NHWC f32 `images`; [N, 512]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = features(x)
    side = y.shape[-1]
    window = {"avg4": 4, "global": side}[pooling]
    y = F.avg_pool2d(y, kernel_size=window, stride=window)  # floor, like ours
    return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1)  # flatten NHWC: (h, w, c)


def in_batches(fn, images, batch=32):
    with torch.no_grad():
        return torch.cat([fn(images[i : i + batch]) for i in range(0, len(images), batch)])


def compare(what, ours, theirs, scale):
    """Prints max abs and relative error; True when within TOLERANCE."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        print(f"{what}: shapes differ: pipeline {ours.shape}, torch {theirs.shape}")
        return False
    diff = np.abs(ours - theirs)
    max_abs = float(diff.max())
    # Element-wise relative error, over entries above 1e-3 of the scale (ReLU leaves zeros).
    big = np.abs(ours) > 1e-3 * scale
    max_rel_elem = float((diff[big] / np.abs(ours[big])).max()) if big.any() else 0.0
    rel = max_abs / scale
    ok = rel <= TOLERANCE
    print(
        f"{what}: n={ours.shape[0]} max_abs={max_abs:.3e} scale={scale:.4g} "
        f"rel={rel:.3e} max_rel_elementwise={max_rel_elem:.3e} tol={TOLERANCE:.0e} "
        f"{'ok' if ok else 'FAIL'}"
    )
    return ok


def paths_from_run(run_dir):
    """The inputs and outputs to compare, from a run record and its store's cache."""
    run_dir = Path(run_dir)
    record = tomllib.loads((run_dir / "run.toml").read_text())
    cache = run_dir.parent.parent / "cache" / "entries"
    stages = {s["name"]: s for s in record["stages"]}

    def output(ref):  # "stage.output" -> the file in the cache entry
        stage, name = ref.split(".", 1)
        s = stages[stage]
        return cache / s["key"][:2] / s["key"] / s["outputs"][name]["file"]

    def by_kind(kind, keep=lambda s: True):
        found = [s for s in record["stages"] if s["kind"] == kind and keep(s)]
        if len(found) != 1:
            die(f"{run_dir}: expected one `{kind}` stage, found {len(found)}")
        return found[0]

    # The model trained on one features stage and was scored on the test split; an external
    # set's features and evaluate stages (model1) are not the ones to compare.
    train = by_kind("train")
    features = stages[train["inputs"]["features"]["from"].split(".", 1)[0]]
    evaluate = by_kind("evaluate", lambda s: "test" in s["inputs"])
    model = output(evaluate["inputs"]["model"]["from"])
    if not model.is_file():
        # Stored as parts sharing the frozen base, not a file of the cache entry: published
        # whole (a fine-tuned run), or to be given as --model (main says how).
        model = run_dir / "model.safetensors"
        if not model.is_file():
            model = MissingModel(
                f"{run_dir}: the trained checkpoint is not one file in the store; write it "
                f"with `pipeline export {record['id']} -o model.safetensors` and pass "
                f"--model model.safetensors"
            )
    return {
        "base": output(features["inputs"]["base"]["from"]),
        "images": output(features["inputs"]["images"]["from"]),
        "features": output(f"{features['name']}.features"),
        "model": model,
        "test_index": output(evaluate["inputs"]["test"]["from"]),
        "predictions": output(f"{evaluate['name']}.predictions"),
    }


class MissingModel(str):
    """A run's trained checkpoint that is not one file: why, and how to get it."""


def newest_run(artifacts):
    runs = sorted(p for p in (Path(artifacts) / "runs").iterdir() if (p / "run.toml").is_file())
    if not runs:
        die(f"no runs under {artifacts}/runs")
    return runs[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", help="a run directory (default: the newest run)")
    ap.add_argument("--artifacts", default=os.environ.get("PIPELINE_ARTIFACTS", "artifacts"))
    for key in KEYS:
        ap.add_argument(f"--{key.replace('_', '-')}", type=Path, help=f"the {key} file")
    args = ap.parse_args()

    explicit = {k: getattr(args, k) for k in KEYS if getattr(args, k) is not None}
    if len(explicit) == len(KEYS):
        paths = explicit
    else:
        run = Path(args.run) if args.run else newest_run(args.artifacts)
        paths = paths_from_run(run) | explicit
        print(f"run: {run}")
    if isinstance(paths["model"], MissingModel):
        die(paths["model"])
    for key, path in paths.items():
        print(f"  {key}: {path}")

    images = np.load(paths["images"])
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[3] != 3:
        die(f"{paths['images']}: expected N x H x W x 3 f32, got {images.shape} {images.dtype}")

    # 1 and 2: the base file alone against the features stage.
    tensors, meta = read_checkpoint(paths["base"])
    base = load_strict(Base(), tensors, paths["base"])
    if int(meta["image_size"]) != images.shape[1]:
        die(f"base built for {meta['image_size']} px, images are {images.shape[1]} px")
    theirs = in_batches(lambda x: pooled(base.features, x, meta["pooling"]), images)
    ours = np.load(paths["features"])
    ok = compare("features", ours, theirs.numpy(), float(np.abs(ours).max()))

    # 3: the whole trained checkpoint, end to end, against the evaluate stage.
    tensors, meta = read_checkpoint(paths["model"])
    whole = load_strict(Whole(int(meta["units"])), tensors, paths["model"])
    test = np.load(paths["test_index"]).astype(np.int64)

    def predict(x):
        return torch.sigmoid(whole.head(pooled(whole.features, x, meta["pooling"])))[:, 0]

    theirs = in_batches(predict, images[test])
    with open(paths["predictions"], newline="") as f:
        ours = np.array([float(row["probability"]) for row in csv.DictReader(f)], dtype=np.float32)
    ok &= compare("probabilities", ours, theirs.numpy(), 1.0)

    print(f"pooling={meta['pooling']} image_size={meta['image_size']} units={meta['units']}")
    print("torch-crosscheck: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, KeyError, ValueError) as e:
        die(f"{type(e).__name__}: {e}")

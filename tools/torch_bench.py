#!/usr/bin/env python3
"""PyTorch's speed on this machine for the reference our VGG16 bench is compared with.

torchvision's VGG16 `features` (the 13 convolutions and 5 max-pools, random weights: speed
does not depend on them) at 237 x 237, batch 8, 2 threads, fp32:

- forward under `no_grad`: seconds per image and GFLOP/s, at 33.46 GFLOP per image
  (16.728 GMAC: the 13 convolutions at 237/118/59/29/14 px, floor pooling);
- a training step: forward, loss = sum of the output, backward through the whole base
  (every conv's weight and bias gradient), in seconds per image.

Each is timed after warm-up; it prints the best and the median of the repetitions. Compare
with `cargo bench -p stages --bench vgg16` on the same machine, run back to back. It prints
the load average before and after: another busy process on a 2-core machine halves either
figure, and a best far below the median says the machine was not quiet.

Usage: python tools/torch_bench.py [--reps 7] [--warmup 2] [--threads 2] [--batch 8]
"""

import argparse
import os
import platform
import statistics
import time

import torch
import torchvision

GFLOP_PER_IMAGE = 33.46  # at 237 x 237
SIZE = 237


def timed(step, warmup, reps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--train-reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features.eval()
    x = torch.rand(args.batch, 3, SIZE, SIZE)
    b = args.batch
    print(
        f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"VGG16 features, {SIZE} x {SIZE}, batch {b}, fp32")
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())

    def forward():
        with torch.no_grad():
            features(x)

    best, median = timed(forward, args.warmup, args.reps)
    print(
        f"forward (no_grad): best {best / b:.4f} s/image ({GFLOP_PER_IMAGE * b / best:.0f} "
        f"GFLOP/s), median {median / b:.4f} s/image ({GFLOP_PER_IMAGE * b / median:.0f} "
        f"GFLOP/s), {args.reps} reps"
    )

    def train_step():
        features.zero_grad(set_to_none=True)
        features(x).sum().backward()

    best, median = timed(train_step, 1, args.train_reps)
    print(
        f"training step (forward + backward): best {best / b:.4f} s/image, "
        f"median {median / b:.4f} s/image, {args.train_reps} reps"
    )
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()

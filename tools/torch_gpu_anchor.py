#!/usr/bin/env python3
"""PyTorch's VGG16 on the same GPU, as the anchor of `tools/gpu-check.sh`.

torchvision's VGG16 `features` (13 convolutions, 5 max-pools; random weights: speed does not
depend on them) at 237 x 237 (the seed's size), then the seed's head (4x4 average pool,
dense 512 -> 64 ReLU, dropout 0.2, dense 64 -> 1):

- forward under `no_grad`, images/s at batch 8/16/32/64;
- a fine-tuning step (forward, BCE-with-logits, backward through the whole network, Adam),
  ms per step at batch 8 and 32;

each timed twice: with the images already on the GPU ("data on GPU"), and with the batch
copied from host memory first ("with host copy"), as our backend does on every call: the
second is the fair comparison. In strict fp32 (cuDNN and matmul TF32 off, deterministic
algorithms) and in TF32. Prints lines `torch <what> (<math>, <data>): <value>` that the script
puts next to ours.

Usage: python tools/torch_gpu_anchor.py [--size 237] [--rounds 10]
"""

import argparse
import time

import torch
import torchvision


def model(device):
    base = torchvision.models.vgg16(weights=None).features
    head = torch.nn.Sequential(
        torch.nn.AvgPool2d(4, 4),
        torch.nn.Flatten(),
        torch.nn.Linear(512, 64),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(64, 1),
    )
    return torch.nn.Sequential(base, head).to(device)


# How a timed call gets its batch: already on the GPU, or copied from (pageable) host memory
# on every call, as our backend gets it.
DATA = [
    ("data on GPU", lambda host, on_gpu, dev: on_gpu),
    ("with host copy", lambda host, on_gpu, dev: host.to(dev)),
]


def timed(fn, rounds):
    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / rounds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=237)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    dev = torch.device("cuda")
    print(f"torch version: {torch.__version__} (cuDNN {torch.backends.cudnn.version()})")
    print(f"torch device: {torch.cuda.get_device_name(0)}")
    for math in ["fp32", "tf32"]:
        tf32 = math == "tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.manual_seed(0)
        net = model(dev)
        net.eval()
        for batch in [8, 16, 32, 64]:
            x_host = torch.rand(batch, 3, args.size, args.size)
            x = x_host.to(dev)
            for data, images in DATA:
                with torch.no_grad():
                    s = timed(lambda: net[0](images(x_host, x, dev)), args.rounds)
                print(
                    f"torch features/s at {args.size}, batch {batch:>2} ({math}, {data}): "
                    f"{batch / s:.0f}"
                )
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for batch in [8, 32]:
            x_host = torch.rand(batch, 3, args.size, args.size)
            y_host = (torch.arange(batch) % 2).float().unsqueeze(1)
            x, y = x_host.to(dev), y_host.to(dev)
            for data, images in DATA:

                def step():
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(images(x_host, x, dev)), images(y_host, y, dev))
                    loss.backward()
                    opt.step()

                s = timed(step, args.rounds)
                print(
                    f"torch training step at {args.size}, batch {batch:>2} ({math}, {data}) ms: "
                    f"{s * 1e3:.1f}"
                )


if __name__ == "__main__":
    main()

"""Seconds per training step of the paper's valid U-Net, full width against a narrower one.

Builds ``models.unet`` with valid padding on ``--tile-size`` tiles (572 -> 388 by
default) for each ``--base-filters`` value (64 and 16 by default), compiles it with
Adam and binary cross-entropy, and times ``train_on_batch`` on random data: the median
of ``--steps`` steps after ``--warmup`` untimed ones (the first call builds the
graph). Prints each time, the ratio to the first configuration measured in the same
run, and the achieved TFLOP/s, counting a training step as three forward passes
(forward, and two of the same size for the gradients of inputs and weights) of the
convolutions' multiply-adds. ``--peak-tflops`` adds the fraction of a device's
peak.

Run on a CPU:  python benchmarks/train_step.py --steps 2
Run on a GPU:  KERAS_BACKEND=jax python benchmarks/train_step.py --mixed-precision \\
                   --jit-compile --batch-size 4 --peak-tflops 65
(65 TFLOP/s: the dense FP16 tensor-core peak of a Tesla T4; use your GPU's figure.)

Taught in chapter 7 (Overlap-tile on Colab GPUs).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def forward_flops(model):
    """Floating-point operations of one forward pass of a batch of one: 2 per multiply-add."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, height, width, out_channels = layer.output.shape
            in_channels = layer.input.shape[-1]
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            total += 2 * height * width * out_channels * kernel * in_channels
        elif kind == "Conv2DTranspose":
            _, height, width, in_channels = layer.input.shape  # each input pixel feeds a k x k patch
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            total += 2 * height * width * in_channels * kernel * layer.filters
    return total


def time_steps(model, batch, steps, warmup):
    x, y = batch
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)  # returns host numbers, so the device has finished
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def measure(base_filters, args):
    import keras
    import numpy as np

    from unet_tutorial import models

    keras.utils.clear_session()
    model = models.unet(
        (args.tile_size, args.tile_size, 1),
        depth=args.depth,
        base_filters=base_filters,
        padding="valid",
        seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="binary_crossentropy",
        jit_compile=True if args.jit_compile else "auto",
    )
    out = models.output_size(args.tile_size, args.depth, "valid")
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, args.tile_size, args.tile_size, 1), dtype=np.float32)
    y = (rng.random((args.batch_size, out, out, 1)) > 0.5).astype(np.float32)
    seconds, times = time_steps(model, (x, y), args.steps, args.warmup)
    flops = 3 * forward_flops(model) * args.batch_size
    return {
        "filters": base_filters,
        "params": model.count_params(),
        "seconds": seconds,
        "times": times,
        "flops": flops,
        "out": out,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--base-filters",
        type=int,
        nargs="+",
        default=[64, 16],
        help="first-level filters of each network timed; ratios are to the first",
    )
    parser.add_argument("--tile-size", type=int, default=572, help="input tile side (valid padding)")
    parser.add_argument("--depth", type=int, default=4, help="down-sampling steps")
    parser.add_argument("--batch-size", type=int, default=1, help="tiles per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (graph building)")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 policy (GPUs)")
    parser.add_argument("--jit-compile", action="store_true", help="force XLA compilation of the train step")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak TFLOP/s, to print the achieved fraction",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")

    import keras

    from unet_tutorial import runtime

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    print(
        f"backend={keras.backend.backend()} | device={runtime.device_name()} | "
        f"policy={keras.mixed_precision.global_policy().name} | "
        f"jit_compile={'on' if args.jit_compile else 'auto'}"
    )
    print(
        f"valid U-Net, depth {args.depth}, tile {args.tile_size}, batch {args.batch_size}, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    results = [measure(filters, args) for filters in args.base_filters]
    baseline = results[0]
    for result in results:
        tflops = result["flops"] / result["seconds"] / 1e12
        line = (
            f"base_filters={result['filters']:3d}  params={result['params']:>11,}  "
            f"{result['seconds']:8.3f} s/step  ratio to f{baseline['filters']}: "
            f"{result['seconds'] / baseline['seconds']:.3f}  "
            f"({result['flops'] / 1e9:,.1f} GFLOP/step, {tflops:.3f} TFLOP/s"
        )
        if args.peak_tflops:
            line += f", {100 * tflops / args.peak_tflops:.1f} % of {args.peak_tflops:g} peak"
        print(line + ")")
        print(
            f"    steps: {', '.join(f'{t:.3f}' for t in result['times'])} s; "
            f"output {result['out']}x{result['out']}"
        )


if __name__ == "__main__":
    main()

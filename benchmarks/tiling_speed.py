"""Overlap-tile prediction speed for batch sizes 1, 4 and 8 (chapter 7).

Predicts slices of the ISBI 2012 test volume (30 x 512 x 512) with
``tiling.predict_tiled`` and a valid U-Net of depth 4 (16 filters, random weights: speed
does not depend on training), and prints tiles per second, the time for the whole
30-slice volume, and both as ratios to batch size 1 measured in the same run. Each batch
size first predicts one untimed slice, so that graph tracing is not timed; then each
slice is predicted with every batch size in turn. By default 10 slices are timed and the
30-slice time is extrapolated (and labelled so); ``--slices 30`` times them all.

Tiles are batched within one slice: a 512 x 512 slice with 572 tiles (388 out) has 4
tiles, so batch 8 runs batches of 4 there. Smaller tiles give more tiles per slice.

Uses UNET_TUTORIAL_DATA/isbi2012/test-volume.tif when UNET_TUTORIAL_DATA is set,
otherwise random uint8 slices of the same size.

Run: UNET_TUTORIAL_DATA=/path/to/data python benchmarks/tiling_speed.py [--slices 30] [--tile-size 380]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

from unet_tutorial import models, runtime, tiling

VOLUME_SLICES = 30


def load_volume(slices):
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if root:
        import tifffile

        path = Path(root) / "isbi2012" / "test-volume.tif"
        return tifffile.imread(path)[:slices], f"ISBI 2012 {path.name}"
    rng = np.random.default_rng(0)
    return rng.integers(
        0, 256, (slices, 512, 512), dtype=np.uint8
    ), "random uint8 512x512 (UNET_TUTORIAL_DATA unset)"


def time_batch_sizes(model, volume, tile_size, batch_sizes):
    """Seconds per batch size for the whole volume, taking batch sizes in turn on each slice.

    Alternating spreads any change in machine load evenly over the batch sizes.
    """
    for batch_size in batch_sizes:
        tiling.predict_tiled(model, volume[0], tile_size, batch_size)  # trace outside the clock
    seconds = dict.fromkeys(batch_sizes, 0.0)
    for image in volume:
        for batch_size in batch_sizes:
            start = time.perf_counter()
            tiling.predict_tiled(model, image, tile_size, batch_size)
            seconds[batch_size] += time.perf_counter() - start
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-filters", type=int, default=16, help="filters of the first level (64 in the paper)"
    )
    parser.add_argument(
        "--tile-size", type=int, default=572, help="input tile side (12 mod 16, at least 188)"
    )
    parser.add_argument(
        "--slices", type=int, default=10, help="slices to time (1-30; fewer are extrapolated to 30)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    if not 1 <= args.slices <= VOLUME_SLICES:
        parser.error(f"--slices must be between 1 and {VOLUME_SLICES}")

    volume, source = load_volume(args.slices)
    model = models.unet((None, None, 1), depth=4, base_filters=args.base_filters, seed=0)
    plan = tiling.plan_tiles(model, volume.shape[1:], args.tile_size)
    tiles_per_slice = plan.n_tiles
    print(f"data: {source}, {len(volume)} slice(s) timed")
    print(f"device: {runtime.device_name()}")
    print(
        f"model: valid U-Net depth 4, {args.base_filters} base filters, {model.count_params():,} parameters; "
        f"tile {plan.tile_size[0]} -> {plan.output_size[0]}, {tiles_per_slice} tiles per slice"
    )
    label = "volume s" if len(volume) == VOLUME_SLICES else f"volume s (extrapolated from {len(volume)})"
    print(f"{'batch':>5} {'in use':>6} {'tiles/s':>8} {label:>30} {'speed vs batch 1':>17}")
    seconds = time_batch_sizes(model, volume, args.tile_size, args.batch_sizes)
    baseline = None
    for batch_size in args.batch_sizes:
        tiles_per_second = tiles_per_slice * len(volume) / seconds[batch_size]
        volume_seconds = seconds[batch_size] / len(volume) * VOLUME_SLICES
        baseline = baseline or tiles_per_second
        print(
            f"{batch_size:>5} {min(batch_size, tiles_per_slice):>6} {tiles_per_second:>8.2f} "
            f"{volume_seconds:>30.1f} {tiles_per_second / baseline:>16.2f}x"
        )


if __name__ == "__main__":
    main()

"""Speed of the fast weight map against the straightforward reference (chapter 6).

Times ``weights.weight_map_reference`` (one full-image distance transform per
cell) and ``weights.weight_map`` (transforms cropped around each cell) on the same
label in one run, best of a few repeats, and prints the speed-up and the largest
absolute difference. Uses ISBI 2012 train-labels slice 0 when UNET_TUTORIAL_DATA
names a folder holding ``isbi2012/``, otherwise a synthetic mask of similar size.

Run: UNET_TUTORIAL_DATA=/path/to/data python benchmarks/weight_map_speed.py
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from unet_tutorial import weights


def load_label():
    """ISBI slice 0 (255 = cell) if available, else random 512x512 blobs (about 50 cells)."""
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if root:
        import tifffile

        path = Path(root) / "isbi2012" / "train-labels.tif"
        return tifffile.imread(path)[0], f"ISBI 2012 {path.name} slice 0"
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.normal(size=(512, 512)), 8.0)
    label = (smooth > 0.3 * smooth.std()).astype(np.uint8) * 255
    return label, "synthetic 512x512 blobs (UNET_TUTORIAL_DATA unset)"


def best_time(function, label, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(label)
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the reference (fast: 5x more)")
    args = parser.parse_args()

    label, source = load_label()
    cells = int(weights.cell_instances(label).max())
    reference_s, reference = best_time(weights.weight_map_reference, label, args.repeats)
    fast_s, fast = best_time(weights.weight_map, label, 5 * args.repeats)
    print(f"input: {source}, shape {label.shape}, {cells} cells (4-connected)")
    print(f"reference (one EDT per cell): {reference_s:.3f} s (best of {args.repeats})")
    print(f"fast (cropped EDTs):          {fast_s:.4f} s (best of {5 * args.repeats})")
    print(f"speed-up: {reference_s / fast_s:.1f}x")
    difference = np.abs(fast - reference).max()
    print(f"max abs difference: {difference:.2e} (tolerance {weights.DEFAULT_TOLERANCE:g})")


if __name__ == "__main__":
    main()

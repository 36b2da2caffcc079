"""Speed of the border thinning of the ISBI scores against the plain-Python flood (chapter 1).

Times ``challenge.thinned_cell_labels`` (Fiji's flood, a queue layer at a time with
NumPy) and ``reference_thinning`` (the plain-Python flood it replaced, one pixel at a time,
kept in tests/test_challenge.py) on the same cell maps in one run: five ISBI 2012 label
slices, blurred and with noise as a network's output might look, each thresholded at the
challenge's 11 thresholds (55 maps of 512 x 512). The two take turns; each one's best of
a few repeats counts, in CPU time of this process (other jobs on the machine disturb it
less than wall time). Prints both times, the speed-up, and whether the label arrays are
identical. Uses UNET_TUTORIAL_DATA/isbi2012/train-labels.tif when UNET_TUTORIAL_DATA is
set, otherwise synthetic labels of the same size.

Run: UNET_TUTORIAL_DATA=/path/to/data python benchmarks/thinning_speed.py [--repeats 3]
"""

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from unet_tutorial import challenge
from unet_tutorial.synthetic import synthetic_membranes

TESTS = Path(__file__).resolve().parent.parent / "tests" / "test_challenge.py"


def reference_thinning():
    """``reference_thinning`` from the tests (one copy of the old flood, not two)."""
    spec = importlib.util.spec_from_file_location("test_challenge", TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_thinning


def cell_maps(n_slices=5):
    """The 55 thresholded maps, and where their labels came from."""
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if root:
        import tifffile

        path = Path(root) / "isbi2012" / "train-labels.tif"
        masks = tifffile.imread(path, key=range(n_slices)) // 255
        source = f"ISBI 2012 {path.name}"
    else:
        masks = synthetic_membranes(n_slices, 512, seed=0)[1]
        source = "synthetic labels (UNET_TUTORIAL_DATA unset)"
    blurred = ndimage.gaussian_filter(masks.astype(float), (0, 2, 2))
    prob = np.clip(blurred + np.random.default_rng(0).normal(0.0, 0.1, blurred.shape), 0.0, 1.0)
    maps = [p > threshold for p in prob for threshold in challenge.DEFAULT_THRESHOLDS]
    return maps, f"{source}, slices 0-{n_slices - 1}, blurred (sigma 2) + noise (sigma 0.1)"


def best_times(thinnings, maps, repeats):
    """Best CPU time of each thinning over all maps, the two taking turns; the last labels."""
    times, labels = [[] for _ in thinnings], [None] * len(thinnings)
    for _ in range(repeats):
        for k, thinning in enumerate(thinnings):
            start = time.process_time()
            labels[k] = [thinning(cells) for cells in maps]
            times[k].append(time.process_time() - start)
    return [min(t) for t in times], labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each; the best counts")
    args = parser.parse_args()

    maps, source = cell_maps()
    thinnings = (reference_thinning(), challenge.thinned_cell_labels)
    (reference_s, fast_s), (expected, got) = best_times(thinnings, maps, args.repeats)
    same = all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, expected))
    print(f"input: {source}; {len(maps)} maps of {maps[0].shape} at 11 thresholds")
    print(f"reference (plain-Python flood): {reference_s:.3f} s CPU (best of {args.repeats})")
    print(f"thinned_cell_labels (layers):   {fast_s:.3f} s CPU (best of {args.repeats})")
    print(f"speed-up: {reference_s / fast_s:.1f}x; identical labels: {same}")


if __name__ == "__main__":
    main()

"""Augmented 512x512 image/mask pairs per second: ours against the legacy Keras generator.

Run from the repository root:

    UNET_TUTORIAL_DATA=/path/to/data python benchmarks/augment_throughput.py [--pairs 100]

Uses the ISBI 2012 training slices when UNET_TUTORIAL_DATA points at a folder with
``isbi2012/``, else synthetic 512x512 pairs. All methods run in the same process on
the same pairs; the ratios against the legacy ``ImageDataGenerator`` (given the same
parameters, image and mask transformed with the same seed as the old tutorials did)
are the figures to quote, not the absolute rates.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from unet_tutorial import augment

# The legacy generator's names for LEGACY_PARAMS (it has no image_order; it interpolates linearly).
LEGACY_GENERATOR_KWARGS = {k: v for k, v in augment.LEGACY_PARAMS.items() if k != "image_order"}


def load_pairs(count):
    """ISBI slices (uint8 image, 0/1 mask) if available, else synthetic ones."""
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if root and (Path(root) / "isbi2012" / "train-volume.tif").exists():
        import tifffile

        images = tifffile.imread(Path(root) / "isbi2012" / "train-volume.tif")
        masks = (tifffile.imread(Path(root) / "isbi2012" / "train-labels.tif") > 0).astype(np.uint8)
        source = "ISBI 2012 training slices"
    else:
        rng = np.random.default_rng(0)
        masks = np.stack([(ndimage.gaussian_filter(rng.random((512, 512)), 12) > 0.5) for _ in range(4)])
        masks = masks.astype(np.uint8)
        images = (masks * 160 + rng.integers(0, 60, masks.shape)).astype(np.uint8)
        source = "synthetic pairs (set UNET_TUTORIAL_DATA for ISBI)"
    index = np.arange(count) % len(images)
    return images[index], masks[index], source


def legacy_generator():
    """The deprecated ImageDataGenerator as Keras 3 / TF 2.x still ship it."""
    try:
        import tensorflow as tf

        return tf.keras.preprocessing.image.ImageDataGenerator(**LEGACY_GENERATOR_KWARGS)
    except (ImportError, AttributeError):
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        return ImageDataGenerator(**LEGACY_GENERATOR_KWARGS)


def time_pairs(methods, images, masks, rounds=5):
    """Pairs per second of each ``transform(image, mask, i)``, by wall clock and by CPU time.

    The methods take turns on chunks of the pairs, ``rounds`` times, and each keeps its
    fastest chunk: on a shared machine this cancels most of the load drift. CPU time
    (this process only) is steadier still for the single-threaded SciPy methods.
    """
    chunks = np.array_split(np.arange(len(images)), rounds)
    best = {name: (np.inf, np.inf) for name in methods}
    for transform in methods.values():
        transform(images[0], masks[0], 0)  # warm-up
    for chunk in chunks:
        for name, transform in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for i in chunk:
                transform(images[i], masks[i], int(i))
            wall, cpu = (time.perf_counter() - wall) / len(chunk), (time.process_time() - cpu) / len(chunk)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return {name: (1.0 / wall, 1.0 / cpu) for name, (wall, cpu) in best.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="pairs per method (default 100)")
    parser.add_argument(
        "--keras-pairs",
        type=int,
        default=2,
        help="pairs for keras.layers.RandomElasticTransform, about 10 s each (0 skips it)",
    )
    args = parser.parse_args()
    images, masks, source = load_pairs(args.pairs)
    print(f"{args.pairs} pairs of {images.shape[1]}x{images.shape[2]} from {source}")

    generator = legacy_generator()

    def legacy(image, mask, i):
        # the seed trick of the old tutorials: same seed -> same random transform for both
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return (
                generator.random_transform(image[..., None], seed=i),
                generator.random_transform(mask[..., None], seed=i),
            )

    rng = np.random.default_rng(0)
    methods = {
        "legacy ImageDataGenerator (seed trick)": legacy,
        "ours, LEGACY_PARAMS (linear)": lambda im, m, i: augment.random_transform(
            im, m, rng, **augment.LEGACY_PARAMS
        ),
        "ours, LEGACY_PARAMS + cubic image": lambda im, m, i: augment.random_transform(
            im, m, rng, **dict(augment.LEGACY_PARAMS, image_order=3)
        ),
        "ours, LEGACY_PARAMS + elastic": lambda im, m, i: augment.random_transform(
            im, m, rng, **dict(augment.LEGACY_PARAMS, elastic=True)
        ),
        "ours, elastic_deform (cubic)": lambda im, m, i: augment.elastic_deform(im, m, rng),
        "ours, PAPER_PARAMS": lambda im, m, i: augment.random_transform(im, m, rng, **augment.PAPER_PARAMS),
    }
    rates = time_pairs(methods, images, masks)

    if args.keras_pairs:
        import keras

        layer = keras.layers.RandomElasticTransform(
            factor=(1.0, 1.0), scale=(1.0, 1.0), value_range=(0, 255), seed=0
        )

        def keras_elastic(image, mask, i):
            return layer(
                {
                    "images": image[None, ..., None].astype("float32"),
                    "segmentation_masks": mask[None, ..., None].astype("float32"),
                }
            )

        # slow (a 155x155 Gaussian blur of the noise at 512 px): few pairs, no warm-up
        count = min(args.keras_pairs, args.pairs)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            keras_elastic(images[i], masks[i], i)
        # TensorFlow runs on several threads, so its CPU time exceeds its wall time
        rates["keras.layers.RandomElasticTransform (dict)"] = (
            count / (time.perf_counter() - wall),
            count / (time.process_time() - cpu),
        )

    base_wall, base_cpu = rates["legacy ImageDataGenerator (seed trick)"]
    width = max(map(len, rates))
    print(f"{'method':<{width}}  pairs/s (wall)  vs legacy  pairs/s (CPU)  vs legacy")
    for name, (wall, cpu) in rates.items():
        print(f"{name:<{width}}  {wall:14.1f}  {wall / base_wall:8.2f}x  {cpu:13.1f}  {cpu / base_cpu:8.2f}x")

    if args.keras_pairs:
        crop = masks[0][:256, :256]
        agreement = augment.keras_elastic_agreement(crop, seed=0)
        ours = augment.random_transform(
            crop.astype(np.float32), crop, np.random.default_rng(0), **augment.PAPER_PARAMS
        )
        print(
            f"agreement of (image copy of mask > 0.5) with mask after elastic deformation, 256 px crop: "
            f"ours {np.mean((ours[0] > 0.5) == (ours[1] > 0)):.4f}, "
            f"Keras RandomElasticTransform {agreement:.4f}"
        )


if __name__ == "__main__":
    main()

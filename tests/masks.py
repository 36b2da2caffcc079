"""Test masks and augmentation settings shared by several test modules.

Imported by name: pytest puts tests/ on the path.

Not a conftest.py: ``--doctest-modules`` would import it as ``conftest`` beside
notebooks/conftest.py, and the two names clash."""

import functools
import os
from pathlib import Path

import numpy as np
from scipy import ndimage


def make_blob_mask(size=160, seed=0):
    """Binary mask of smooth cell-like blobs."""
    noise = np.random.default_rng(seed).random((size, size))
    return (ndimage.gaussian_filter(noise, 10) > 0.5).astype(np.uint8)


@functools.cache
def _realistic_mask():
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if root:
        path = Path(root) / "isbi2012" / "train-labels.tif"
        if path.exists():
            import tifffile

            return (tifffile.imread(path)[0, 100:292, 150:342] > 0).astype(np.uint8)
    return make_blob_mask(192)


def realistic_mask():
    """A 192x192 ISBI label (1 = cell interior) if UNET_TUTORIAL_DATA is set, else blobs."""
    return _realistic_mask().copy()


#: Every geometric transform of ``augment.random_transform`` at once, at strong settings.
ALL_GEOMETRY = dict(
    rotation_range=30,
    width_shift_range=0.1,
    height_shift_range=0.1,
    shear_range=10,
    zoom_range=0.2,
    horizontal_flip=True,
    vertical_flip=True,
    rot90=True,
    elastic=True,
)

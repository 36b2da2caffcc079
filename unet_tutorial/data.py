"""The book's data set, ISBI 2012, its fixed train/validation split, and image scaling.

ISBI 2012, the electron microscopy challenge that the U-Net paper won, has three stacks of
30 slices of 512 x 512 pixels: training images, their labels and test images (whose labels
were never published). :func:`load_isbi2012` reads them from disk, or downloads them once
into a cache (the tooling module :mod:`unet_tutorial.download`);
:func:`load_isbi2012_or_synthetic` falls back to a synthetic stand-in so that a chapter
still runs offline. Everything here takes and returns NumPy arrays.

Where the stacks are looked for, in order: ``data_dir`` (the folder itself, then
``data_dir/isbi2012``), ``$UNET_TUTORIAL_DATA/isbi2012`` and the download cache
(``$UNET_TUTORIAL_CACHE/isbi2012`` or a folder in the user's cache). Downloads go into the
cache only, and only after their pixels matched the stacks' SHA-256 sums; files elsewhere
are read, never written, moved or deleted. The labels are stored as 255 = cell and
0 = membrane; the masks here are 1 = cell and 0 = membrane.

The validation slices are the last ones, not a random choice: neighbouring slices are
alike, so a random split would put near-copies of validation slices into training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import ISBI2012_FILES, CorruptFileError, find_isbi2012, read_stack
from .synthetic import synthetic_isbi2012

__all__ = [
    "Isbi2012",
    "load_isbi2012",
    "load_isbi2012_or_synthetic",
    "percentile_normalize",
    "split_isbi2012",
    "to_float",
]


@dataclass(frozen=True, eq=False, repr=False)
class Isbi2012:
    """The ISBI 2012 stacks, (30, 512, 512) uint8 each, or their synthetic stand-in.

    ``train_masks`` holds 1 = cell interior, 0 = membrane; ``source`` is the folder read (None for
    synthetic data, whose ``note`` says why the real data was unavailable and how to get it).
    Taught in chapter 1 (Semantic segmentation).
    """

    train_images: np.ndarray
    train_masks: np.ndarray
    test_images: np.ndarray
    source: Path | None
    is_synthetic: bool = False
    note: str = ""

    def __repr__(self) -> str:
        kind = "synthetic" if self.is_synthetic else f"from {self.source}"
        shapes = (self.train_images.shape, self.train_masks.shape, self.test_images.shape)
        return "Isbi2012({}: train_images{}, train_masks{}, test_images{})".format(kind, *shapes)


def load_isbi2012(data_dir=None, download=True) -> Isbi2012:
    """Load the ISBI 2012 stacks from the first folder holding all three, or download them.

    ``data_dir`` holds the three ``.tif`` stacks, or is the parent of ``isbi2012/``; the other folders
    searched are listed in the module docstring. With ``download`` the stacks are fetched into the cache
    when no folder holds all three. Raises ``DataUnavailableError`` (nothing found or downloaded) or
    ``CorruptFileError`` (a damaged stack, left untouched), whose message says what to do.
    Taught in chapter 1 (Semantic segmentation).
    """
    folder = find_isbi2012(data_dir, download)  # tooling: the search and the download
    images, labels, test_images = (read_stack(folder / name) for name in ISBI2012_FILES)
    return Isbi2012(images, (labels == 255).astype(np.uint8), test_images, source=folder)


def split_isbi2012(dataset: Isbi2012, n_val: int = 5):
    """The book's fixed split: the last ``n_val`` slices are held out (25-29 of 0-29 by default).

    Returns copies ``x_train, y_train, x_val, y_val``, so editing them leaves ``dataset`` unchanged.
    Taught in chapter 1 (Semantic segmentation).
    """
    n = len(dataset.train_images)
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or not 1 <= n_val < n:
        raise ValueError(f"n_val must be an integer from 1 to {n - 1} (of {n} slices), got {n_val!r}.")
    cut = n - int(n_val)
    images, masks = dataset.train_images, dataset.train_masks
    return images[:cut].copy(), masks[:cut].copy(), images[cut:].copy(), masks[cut:].copy()


def load_isbi2012_or_synthetic(data_dir=None, download=True, n_synthetic=30, seed=0) -> Isbi2012:
    """Load ISBI 2012, or fall back to synthetic data, with a warning, so a chapter still runs.

    ``data_dir`` and ``download`` as for :func:`load_isbi2012`. The fallback is ``n_synthetic`` slices
    (512 x 512) of :func:`unet_tutorial.synthetic.synthetic_membranes` with ``seed``; its ``note``, also
    issued as the warning, says why. Taught in chapter 1 (Semantic segmentation).
    """
    try:
        return load_isbi2012(data_dir, download)
    except (FileNotFoundError, CorruptFileError) as error:
        return synthetic_isbi2012(n_synthetic, seed, why=str(error))  # tooling: it warns, saying why


def to_float(images) -> np.ndarray:
    """Scale images to float32 for a network, the one image scaling of the book.

    Integers are divided by their dtype's largest value (uint8 by 255, uint16 by 65535), so
    [0, max] becomes [0, 1]; booleans become 0/1 and floats are only cast.
    Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> to_float(np.array([0, 51, 255], np.uint8)), to_float(np.array([0, 13107, 65535], np.uint16))
    (array([0. , 0.2, 1. ], dtype=float32), array([0. , 0.2, 1. ], dtype=float32))
    """
    array = np.asarray(images)
    if np.issubdtype(array.dtype, np.integer):
        return (array / np.float64(np.iinfo(array.dtype).max)).astype(np.float32)
    return array.astype(np.float32)


def percentile_normalize(image, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Stretch intensities between two percentiles of the image to [0, 1], clipping the rest.

    A few extreme pixels cannot set the scale, and any bit depth works, which makes images
    from different instruments comparable. Taught in chapter 8 (Your own data and pretrained
    encoders).

    Parameters
    ----------
    image : array_like
        Real values, all finite.
    low, high : float
        Percentiles mapped to 0 and 1, with ``0 <= low < high <= 100``.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1]; all zeros for a constant image.

    Examples
    --------
    >>> percentile_normalize(np.array([0, 10, 20, 30, 40]), low=25, high=75)
    array([0. , 0. , 0.5, 1. , 1. ], dtype=float32)
    """
    array = np.asarray(image, dtype=np.float64)
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}.")
    if not np.isfinite(array).all():
        raise ValueError("the image holds NaN or infinite values; replace them first, e.g. np.nan_to_num.")
    lo, hi = np.percentile(array, [low, high])
    if hi <= lo:
        return np.zeros(array.shape, np.float32)
    return np.clip((array - lo) / (hi - lo), 0, 1).astype(np.float32)

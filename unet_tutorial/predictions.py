"""Saving what a U-Net predicts: 8-bit PNGs, and the ISBI 2012 challenge's TIFF stack.

Probability maps are saved as 8-bit grey PNGs (0..255) and thresholded masks as PNGs
holding only 0 and 255. No function here replaces an existing file unless asked to with
``overwrite=True``.

The ISBI 2012 submission is one float TIFF stack of the test volume's size (30 x 512 x 512)
with values in [0, 1]. The challenge's evaluation (Fiji's ``RandError`` /
``VariationOfInformation``) thresholds it as ``value > t`` for t = 0, 0.1, ..., 0.9 and
takes the 4-connected components *above* the threshold as cells, as it does with
``train-labels.tif`` (255 = cell). So 1 means cell and 0 membrane, the polarity of this
book's masks: :func:`save_isbi_submission` writes the cell probability unchanged (a
membrane probability would have to be inverted first: ``1 - membrane_prob``).

Taught in chapter 4 (The full U-Net) and chapter 6 (Overlap-tile on Colab GPUs).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["binarize", "prediction_paths", "save_isbi_submission", "save_predictions", "to_uint8"]

_TOLERANCE = 1e-5  # float rounding of a sigmoid may step a hair outside [0, 1]


# --------------------------------------------------------------------------------------
# Probabilities to 8-bit images
# --------------------------------------------------------------------------------------


def _check_prob(prob, name="prob"):
    """Return ``prob`` as float32, refusing NaNs and values outside [0, 1]."""
    array = np.asarray(prob)
    if not (
        array.dtype == bool
        or np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold numbers in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; check the model's output")
    low, high = float(array.min()), float(array.max())
    if low < -_TOLERANCE or high > 1 + _TOLERANCE:
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got values from {low:.4g} to {high:.4g}; "
            "apply a sigmoid or softmax first (or divide 8-bit images by 255)."
        )
    return np.clip(array, 0.0, 1.0)


def binarize(prob, threshold=0.5):
    """Threshold a probability map: True where ``prob > threshold``.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    prob : array_like
        Probabilities in [0, 1], any shape.
    threshold : float
        In [0, 1]. A pixel exactly at the threshold counts as background, as in
        the ISBI evaluation.

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> binarize(np.array([0.2, 0.5, 0.7]))
    array([False, False,  True])
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return _check_prob(prob) > threshold


def to_uint8(prob):
    """Probabilities in [0, 1] as 8-bit grey values 0..255 (rounded).

    Taught in chapter 4 (The full U-Net).

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.2, 0.5, 1.0]))
    array([  0,  51, 128, 255], dtype=uint8)
    """
    return np.round(_check_prob(prob) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def _as_maps(probs):
    """A list of (H, W) maps from (H, W), (N, H, W), (N, H, W, 1) or a sequence of (H, W[, 1])."""
    if isinstance(probs, np.ndarray) or np.isscalar(probs):
        array = np.asarray(probs)
        if array.ndim == 4 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(
                f"probs must be (H, W), (N, H, W) or (N, H, W, 1), got shape {array.shape}; "
                "for a softmax output pass one class's channel, e.g. probs[..., 1]."
            )
        maps = list(array)
    else:
        maps = [np.asarray(p) for p in probs]
        maps = [m[..., 0] if m.ndim == 3 and m.shape[-1] == 1 else m for m in maps]
        bad = [m.shape for m in maps if m.ndim != 2]
        if bad:
            raise ValueError(f"every probability map must be (H, W), got shapes {bad}")
    if not maps:
        raise ValueError("probs is empty: there is nothing to save")
    return [_check_prob(m, name=f"probs[{i}]") for i, m in enumerate(maps)]


def _check_names(names, count):
    if names is None:
        return [f"{i:03d}" for i in range(count)]
    names = [str(name) for name in names]
    if len(names) != count:
        raise ValueError(f"got {len(names)} names for {count} probability maps")
    for name in names:
        if not name or name in (".", "..") or re.search(r"[\\/:*?\"<>|\x00]", name):
            raise ValueError(f"name {name!r} cannot be a file name; use letters, digits, '-', '_' and '.'")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"names must be unique, these repeat: {duplicates}")
    return names


def prediction_paths(folder, names):
    """The files :func:`save_predictions` writes: ``[(name_prob.png, name_mask.png), ...]``.

    Check them before a long prediction to fail early rather than after it.

    Taught in chapter 4 (The full U-Net).
    """
    folder = Path(folder)
    return [(folder / f"{name}_prob.png", folder / f"{name}_mask.png") for name in names]


def _refuse_existing(paths):
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise FileExistsError(
            f"Will not overwrite existing file(s): {shown}. "
            "Choose another output folder or pass overwrite=True."
        )


def save_predictions(probs, folder, threshold=0.5, names=None, overwrite=False):
    """Save probability maps and thresholded masks as 8-bit PNGs.

    For each map ``name_prob.png`` holds ``round(255 * p)`` and ``name_mask.png``
    holds 255 where ``p > threshold`` and 0 elsewhere. Nothing is written if any
    target file exists and ``overwrite`` is False.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    probs : numpy.ndarray or sequence of numpy.ndarray
        (H, W), (N, H, W) or (N, H, W, 1) probabilities in [0, 1], or a list of
        (H, W) maps of different sizes.
    folder : str or Path
        Created if missing.
    threshold : float
        For the masks.
    names : sequence of str, optional
        File name stems; default ``000``, ``001``, ...
    overwrite : bool
        Replace existing files.

    Returns
    -------
    list of pathlib.Path
        The files written, probability map then mask for each name.

    Raises
    ------
    FileExistsError
        A target file exists and ``overwrite`` is False (nothing is written).
    """
    from PIL import Image

    maps = _as_maps(probs)
    names = _check_names(names, len(maps))
    binarize(maps[0], threshold)  # validates the threshold before anything is written
    pairs = prediction_paths(folder, names)
    if not overwrite:
        _refuse_existing([path for pair in pairs for path in pair])
    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for prob, (prob_path, mask_path) in zip(maps, pairs):
        Image.fromarray(to_uint8(prob)).save(prob_path, format="PNG")
        Image.fromarray(binarize(prob, threshold).astype(np.uint8) * 255).save(mask_path, format="PNG")
        written += [prob_path, mask_path]
    return written


def save_isbi_submission(probs, path, overwrite=False):
    """Save a stack of cell probabilities as the ISBI 2012 challenge's multi-page TIFF.

    The file is a 32-bit float stack (N, H, W) with values in [0, 1], 1 = cell
    interior, 0 = membrane: the polarity the challenge's evaluation expects (see
    the module notes). For the challenge, ``probs`` is the prediction of
    ``test-volume.tif``: (30, 512, 512).

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    probs : numpy.ndarray or sequence of numpy.ndarray
        (N, H, W) or (N, H, W, 1) probabilities of *cell*, or a list of equally
        sized (H, W) maps.
    path : str or Path
        A ``.tif`` or ``.tiff`` file; its folder is created if missing.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileExistsError
        The file exists and ``overwrite`` is False.
    ValueError
        Maps of different sizes, values outside [0, 1], or a wrong suffix.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"{path} must end in .tif or .tiff (the challenge takes a TIFF stack)")
    maps = _as_maps(probs)
    shapes = sorted({m.shape for m in maps})
    if len(shapes) > 1:
        raise ValueError(f"all slices of a TIFF stack must have one size, got {shapes}")
    if not overwrite:
        _refuse_existing([path])
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.stack(maps).astype(np.float32), photometric="minisblack")
    return path

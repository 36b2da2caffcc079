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

Taught in chapter 5 (Training the U-Net) and chapter 7 (Overlap-tile on Colab GPUs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["binarize", "prediction_paths", "save_isbi_submission", "save_predictions", "to_uint8"]

_TOLERANCE = 1e-5  # float rounding of a sigmoid may step a hair outside [0, 1]


def _check_prob(prob, name="prob"):
    """``prob`` as float32 clipped to [0, 1]; NaNs and values clearly outside [0, 1] are refused."""
    array = np.asarray(prob).astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; check the model's output")
    low, high = float(array.min()), float(array.max())
    if low < -_TOLERANCE or high > 1 + _TOLERANCE:
        hint = "apply a sigmoid or softmax first (or divide 8-bit images by 255)"
        raise ValueError(f"{name} must be probabilities in [0, 1], got {low:.4g} to {high:.4g}; {hint}.")
    return np.clip(array, 0.0, 1.0)


def binarize(prob, threshold=0.5):
    """Threshold a probability map: True where ``prob > threshold``, as the ISBI evaluation does.

    Taught in chapter 5 (Training the U-Net).

    Examples
    --------
    >>> binarize(np.array([0.2, 0.5, 0.7]))
    array([False, False,  True])
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return _check_prob(prob) > threshold


def to_uint8(prob):
    """Probabilities in [0, 1] as 8-bit grey values 0..255 (rounded).

    Taught in chapter 5 (Training the U-Net).

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.2, 0.5, 1.0]))
    array([  0,  51, 128, 255], dtype=uint8)
    """
    return np.round(_check_prob(prob) * 255).astype(np.uint8)


def _as_maps(probs):
    """Checked (H, W) maps from (H, W), (N, H, W), (N, H, W, 1) or a sequence of (H, W[, 1]) maps."""
    maps = [probs] if isinstance(probs, np.ndarray) and probs.ndim == 2 else [np.asarray(p) for p in probs]
    maps = [m[..., 0] if m.ndim == 3 and m.shape[-1] == 1 else m for m in maps]
    if not maps or any(m.ndim != 2 for m in maps):
        shapes = sorted({m.shape for m in maps})
        raise ValueError(f"probs must be (H, W) maps, got {shapes}; for a softmax, pass one class's channel.")
    return [_check_prob(m, name=f"probs[{i}]") for i, m in enumerate(maps)]


def prediction_paths(folder, names):
    """The files :func:`save_predictions` writes: ``[(name_prob.png, name_mask.png), ...]``."""
    return [(Path(folder) / f"{name}_prob.png", Path(folder) / f"{name}_mask.png") for name in names]


def _refuse_existing(paths):
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise FileExistsError(f"Will not overwrite {shown}; choose another folder or pass overwrite=True.")


def save_predictions(probs, folder, threshold=0.5, names=None, overwrite=False):
    """Save probability maps as 8-bit PNGs: ``name_prob.png`` (:func:`to_uint8`) and ``name_mask.png``.

    The mask is 255 where ``prob > threshold`` and 0 elsewhere. ``probs`` is (H, W), (N, H, W) or
    (N, H, W, 1), or a list of (H, W) maps of any sizes; ``names`` are the file names' stems (default
    ``000``, ``001``, ...). Nothing is written if a file exists and ``overwrite`` is False. Returns the
    paths written, probability map then mask for each name. Taught in chapter 5 (Training the U-Net).
    """
    from PIL import Image

    maps = _as_maps(probs)
    names = [f"{i:03d}" for i in range(len(maps))] if names is None else [str(name) for name in names]
    if len(names) != len(maps) or len(set(names)) != len(maps):
        raise ValueError(f"need {len(maps)} different names, one per probability map, got {names}")
    if any(Path(name).name != name or name in ("", ".", "..") for name in names):
        raise ValueError(f"names must be plain file names, without folders: got {names}")
    binarize(maps[0], threshold)  # checks the threshold before anything is written
    pairs = prediction_paths(folder, names)
    paths = [path for pair in pairs for path in pair]
    if not overwrite:
        _refuse_existing(paths)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for prob, (prob_path, mask_path) in zip(maps, pairs):
        Image.fromarray(to_uint8(prob)).save(prob_path, format="PNG")
        Image.fromarray(binarize(prob, threshold).astype(np.uint8) * 255).save(mask_path, format="PNG")
    return paths


def save_isbi_submission(probs, path, overwrite=False):
    """Save a stack of cell probabilities as the ISBI 2012 challenge's multi-page TIFF.

    A 32-bit float stack (N, H, W) in [0, 1], 1 = cell, 0 = membrane: the polarity the challenge's
    evaluation expects (module notes). For the challenge, ``probs`` predicts ``test-volume.tif``:
    (30, 512, 512). ``path`` ends in ``.tif``; its folder is created if missing.
    Taught in chapter 7 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    probs : numpy.ndarray or sequence of numpy.ndarray
        (N, H, W) or (N, H, W, 1) probabilities of *cell*, or a list of equally sized (H, W) maps.

    Returns
    -------
    pathlib.Path
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

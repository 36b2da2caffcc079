"""Reading images to segment and saving what a U-Net predicts for them.

Probability maps are saved as 8-bit greyscale PNGs (0..255) and thresholded masks
as PNGs holding only 0 and 255, written with Pillow (no "low contrast" warnings).
A whole test stack can also be saved as one multi-page TIFF in the layout of the
ISBI 2012 challenge. No function here replaces an existing file unless asked to
with ``overwrite=True``.

The ISBI 2012 submission format
-------------------------------
The challenge asked for one TIFF stack of the test volume's size (30 x 512 x 512)
whose values lie in [0, 1]. Its evaluation (Fiji's ``RandError`` /
``VariationOfInformation``, which the organisers published) binarises the proposal
as ``value > threshold`` for thresholds 0, 0.1, ..., 0.9 and takes the 4-connected
components of the pixels *above* the threshold as the cells, just as it does with
``train-labels.tif`` (255 = cell interior, 0 = membrane). So 1 means "cell
interior" and 0 "membrane": the same polarity as the training labels and as this
book's masks (1 = cell). :func:`save_isbi_submission` therefore writes the
network's cell probability unchanged, as 32-bit floats. (Some write-ups describe
the format as a "membrane probability"; with this evaluation code a membrane map
would have to be inverted first: pass ``1 - membrane_prob``.)

Taught in chapter 4 (The full U-Net), chapter 6 (Overlap-tile on Colab GPUs) and chapter 7 (Your own data and
pretrained encoders).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "binarize",
    "to_uint8",
    "prediction_paths",
    "save_predictions",
    "save_isbi_submission",
    "load_images",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_TOLERANCE = 1e-5  # float rounding of a sigmoid may step a hair outside [0, 1]


# --------------------------------------------------------------------------------------
# Probabilities to 8-bit images
# --------------------------------------------------------------------------------------


def _check_prob(prob, name="prob"):
    """Return ``prob`` as float32, refusing NaNs and values outside [0, 1]."""
    array = np.asarray(prob)
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
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
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return _check_prob(prob) > threshold


def to_uint8(prob):
    """Probabilities in [0, 1] as 8-bit grey values 0..255 (rounded).

    Taught in chapter 4 (The full U-Net).
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
            f"Will not overwrite existing file(s): {shown}. Choose another output folder or pass overwrite=True."
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


# --------------------------------------------------------------------------------------
# Reading images to predict
# --------------------------------------------------------------------------------------


def _natural_key(path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _to_gray(array):
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float64)
        gray = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's "L"
        if np.issubdtype(array.dtype, np.integer):
            gray = np.round(gray)
        return gray.astype(array.dtype)
    return array


def _read_tiff(path):
    """(array, is_colour): pages first, colour samples moved last.

    tifffile's axes tell a stack of pages ("IYX", "QYX", "ZYX") from one colour image
    ("YXS", or "SYX" when the colour planes are stored separately), which the shape
    alone cannot: (3, H, W) may be either.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array, axes = series.asarray(), series.axes
    if "S" in axes:
        return np.moveaxis(array, axes.index("S"), -1), True
    return array, False


def _read_file(path, as_gray):
    """[(name, image), ...] from one file; a TIFF stack gives one entry per page."""
    if path.suffix.lower() in (".tif", ".tiff"):
        array, colour = _read_tiff(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            array = np.asarray(image)
        colour = array.ndim == 3
    is_stack = array.ndim > (3 if colour else 2)
    slices = list(array) if is_stack else [array]
    if as_gray:
        slices = [_to_gray(s) for s in slices]
    if not is_stack:
        return [(path.stem, slices[0])]
    return [(f"{path.stem}_{i:03d}", s) for i, s in enumerate(slices)]


def load_images(sources, as_gray=True):
    """Read the images to segment from folders, image files and TIFF stacks.

    Taught in chapter 6 (Overlap-tile on Colab GPUs) and chapter 7 (Your own data).

    Parameters
    ----------
    sources : str, Path or sequence of them
        Folders (their PNG, TIFF, JPEG and BMP files, in natural order: ``2``
        before ``10``), single image files, or multi-page TIFF stacks (one image
        per page, named ``<stem>_000``, ``<stem>_001``, ...).
    as_gray : bool
        Convert RGB(A) images to grey (luma); U-Nets of this book take one channel.

    Returns
    -------
    images : list of numpy.ndarray
        In their stored dtype (apply ``data.to_float`` before predicting).
    names : list of str
        Unique names for the outputs, from the file stems.

    Raises
    ------
    FileNotFoundError
        A source does not exist.
    ValueError
        No images found, an unsupported file type, or two images with the same name.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                            and not p.name.startswith(".")), key=_natural_key)
            if not found:
                raise ValueError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif source.is_file():
            if source.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{source} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
            files.append(source)
        else:
            raise FileNotFoundError(f"No such file or folder: {source}")
    if not files:
        raise ValueError("No images given: pass folders, image files or TIFF stacks.")
    entries = [entry for path in files for entry in _read_file(path, as_gray)]
    names = [name for name, _ in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"Several inputs would be saved under the same name: {duplicates}. "
            "Rename the files or predict the folders separately."
        )
    return [image for _, image in entries], names

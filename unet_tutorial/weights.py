"""Pixel-wise loss weights from the U-Net paper (Ronneberger et al. 2015, eq. 2).

The paper weights every pixel x of a training label by

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

where ``w_c`` balances the class frequencies and ``d1``/``d2`` are the distances
to the nearest and second-nearest cell. The second term is large only in thin
gaps between cells, so the network is pushed to learn the separating borders.

The distance from x to cell i is ``scipy.ndimage.distance_transform_edt(labels != i)``
at x: the Euclidean distance from x to the nearest pixel (centre) of cell i.

Where the border term applies is not written in the paper's formula, only drawn in
its Fig. 3d, where the high weights sit in the gaps *between* cells. By default
(``border_on="background"``) the term is added on background pixels only, as in
that figure and in the public reimplementations (e.g. ``unetwmap.m`` of
bioimaging-lab/deepCyAn); cell pixels keep their class weight. Read literally, the
formula also applies inside a cell, where ``d1 = 0`` and ``d2`` is the distance to
the nearest other cell; ``border_on="everywhere"`` gives that reading, which also
raises the weight of cell pixels next to a narrow gap.

The class term ``w_c`` is not defined in the paper either. Here ``"balanced"``
makes it average 1 over the image (weight N / (K N_c) for class c), so the
border term keeps the same scale whatever the class balance; deepCyAn instead
gives the rarer class the weight 1 and the other class its frequency ratio.

Taught in chapter 5 (Weight maps).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from .files import write_atomically

__all__ = [
    "BORDER_ON",
    "DEFAULT_TOLERANCE",
    "binary_with_borders",
    "border_term",
    "cell_instances",
    "class_weight_map",
    "separation_border",
    "weight_map",
    "weight_map_reference",
    "weight_maps",
]

#: Largest error the fast border term may make anywhere (10x below the 1e-3 target).
DEFAULT_TOLERANCE = 1e-4

# Bump when the numbers produced by weight_map change, so old caches are not reused.
_CACHE_VERSION = "weights-v2"

#: Where the border term is added: between cells (the paper's figure) or on every pixel.
BORDER_ON = ("background", "everywhere")

# 4-connectivity: a one-pixel membrane running diagonally leaves its two sides
# touching only at corners, and those cells must stay separate.
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- input
def _as_label_image(mask, labels="auto"):
    """Validate ``mask`` and return (int64 array, "binary" | "instance")."""
    if labels not in ("auto", "binary", "instance"):
        raise ValueError(f"labels must be 'auto', 'binary' or 'instance', got {labels!r}.")
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(
            f"mask must be a 2-D (H, W) array, got shape {array.shape}; "
            "for a stack of masks use weight_maps(masks)."
        )
    if array.size == 0:
        raise ValueError(f"mask is empty (shape {array.shape}).")
    if array.dtype == bool:
        array = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError("mask contains NaN or infinite values; labels must be integers.")
        if np.any(array != np.round(array)):
            raise ValueError(
                "mask holds non-integer floats; pass integer labels "
                "(e.g. threshold a probability map first: mask > 0.5)."
            )
        array = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int64, copy=False)
    else:
        raise TypeError(f"mask must hold integers, bools or integral floats, got dtype {array.dtype}.")
    if array.min() < 0:
        raise ValueError("mask has negative values; use 0 for background and 1..N for cells.")

    values = np.unique(array) if labels != "instance" else None
    looks_binary = values is not None and (set(values) <= {0, 1} or set(values) <= {0, 255})
    if labels == "binary" and not looks_binary:
        raise ValueError(
            "labels='binary' needs values in {0, 1} or {0, 255}, got "
            f"{values[:6].tolist()}{'...' if len(values) > 6 else ''}; "
            "use labels='instance' for a label image."
        )
    kind = "binary" if labels == "binary" or (labels == "auto" and looks_binary) else "instance"
    return array, kind


def cell_instances(mask, labels="auto"):
    """Return the cells of a mask as an instance label image (0 = background, 1..N).

    A binary mask (0 = membrane/background, 1 or 255 = cell) is split into its
    4-connected components; an instance image is returned as int64 unchanged.
    ``labels="auto"`` treats values within {0, 1} or {0, 255} as binary.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Binary mask or instance label image.
    labels : {"auto", "binary", "instance"}
        How to read ``mask``.

    Returns
    -------
    numpy.ndarray of int64, shape (H, W)
    """
    array, kind = _as_label_image(mask, labels)
    if kind == "instance":
        return array
    components, _ = ndimage.label(array > 0, structure=_FOUR_CONNECTED)
    return components.astype(np.int64, copy=False)


# --------------------------------------------------------------------- class term
_CLASS_WEIGHTS_HELP = "class_weights must be 'balanced', a dict {{0: a, 1: b}}, a pair (a, b) or None, got {!r}."

def _class_weight_pair(class_weights, foreground):
    """Return (background weight, cell weight) for a boolean cell mask."""
    if class_weights is None:
        return 1.0, 1.0
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(_CLASS_WEIGHTS_HELP.format(class_weights))
        n_total = foreground.size
        n_cell = int(np.count_nonzero(foreground))
        counts = [n_total - n_cell, n_cell]
        n_present = sum(count > 0 for count in counts)
        # N / (K * N_c); an absent class gets 0 (no pixel uses it anyway).
        return tuple(n_total / (n_present * count) if count else 0.0 for count in counts)
    if isinstance(class_weights, dict):
        missing = {0, 1} - set(class_weights)
        if missing:
            raise ValueError(
                f"class_weights dict needs keys 0 (background) and 1 (cell); missing {sorted(missing)}."
            )
        pair = (class_weights[0], class_weights[1])
    else:
        try:
            pair = tuple(class_weights)
        except TypeError:
            raise TypeError(_CLASS_WEIGHTS_HELP.format(class_weights)) from None
        if len(pair) != 2:
            raise ValueError(f"class_weights needs exactly two weights (background, cell), got {len(pair)}.")
    pair = tuple(float(weight) for weight in pair)
    if not all(math.isfinite(weight) and weight >= 0 for weight in pair):
        raise ValueError(f"class weights must be finite and non-negative, got {pair}.")
    return pair


def class_weight_map(mask, class_weights="balanced", labels="auto"):
    """Per-pixel class weight w_c(x): background versus cell.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Binary mask (0 / 1 or 0 / 255) or instance labels (0 = background).
    class_weights : "balanced", dict, sequence of two floats, or None
        ``"balanced"`` gives class c the weight N / (K * N_c), with N pixels, N_c of
        them in class c and K the number of classes present, so the weights average
        to 1 over the image. ``{0: a, 1: b}`` or ``(a, b)`` sets background and cell
        weights explicitly; None gives 1 everywhere.
    labels : {"auto", "binary", "instance"}
        How to read ``mask`` (see :func:`cell_instances`).

    Returns
    -------
    numpy.ndarray of float32, shape (H, W)
    """
    array, _ = _as_label_image(mask, labels)
    foreground = array > 0
    background_weight, cell_weight = _class_weight_pair(class_weights, foreground)
    return np.where(foreground, cell_weight, background_weight).astype(np.float32)


# -------------------------------------------------------------------- border term
def _check_border_params(w0, sigma, border_on="background"):
    if border_on not in BORDER_ON:
        raise ValueError(f"border_on must be 'background' or 'everywhere', got {border_on!r}.")
    if not (math.isfinite(w0) and w0 >= 0):
        raise ValueError(f"w0 must be a finite number >= 0, got {w0}.")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}.")


def _term_from_distances(d1, d2, w0, sigma):
    total = d1 + d2
    return (w0 * np.exp(-(total * total) / (2.0 * sigma * sigma))).astype(np.float32)


def _border_term_reference(instances, w0, sigma):
    """One full-image distance transform per cell, then sort for the two smallest."""
    cell_ids = np.unique(instances)
    cell_ids = cell_ids[cell_ids > 0]
    if len(cell_ids) < 2 or w0 == 0:
        return np.zeros(instances.shape, np.float32)
    distances = np.stack([ndimage.distance_transform_edt(instances != i) for i in cell_ids])
    two_smallest = np.partition(distances, 1, axis=0)[:2]
    return _term_from_distances(two_smallest[0], two_smallest[1], w0, sigma)


def _cutoff_radius(w0, sigma, tol):
    """Smallest R with w0 * exp(-R**2 / (2 sigma**2)) <= tol."""
    if w0 <= tol:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tol))


def _border_term_windowed(instances, w0, sigma, tol):
    """Border term with each cell's distance transform cropped to its neighbourhood.

    Error bound (why the result is within ``tol`` of the exact formula):
    let R = sigma * sqrt(2 ln(w0 / tol)), so w0 * exp(-s**2 / (2 sigma**2)) <= tol
    for every s >= R. Cell i's distance transform is computed only inside its
    bounding box grown by m = ceil(R) + 1 pixels on each side; the box holds every
    pixel of cell i, so there the cropped transform is exact. A pixel outside the
    grown box differs from every pixel of cell i by more than m >= R along one axis,
    so its true distance to cell i is > R; we record it as +inf instead.
    At a pixel x, the computed pair (d1', d2') is the two smallest of a subset of
    the true per-cell distances, hence d1' >= d1 and d2' >= d2.
    * If d1 + d2 <= R: both nearest cells are within R of x, so x lies in both grown
      boxes, their exact distances are in the subset, and (d1', d2') = (d1, d2):
      no error.
    * If d1 + d2 > R: then also d1' + d2' > R, so the exact and the computed terms
      both lie in [0, tol] and differ by at most tol.
    Hence |computed - exact| <= tol everywhere (plus float32 rounding of the output).
    """
    if w0 == 0:
        return np.zeros(instances.shape, np.float32)
    if instances.max() > instances.size:
        # find_objects allocates one entry per label value: renumber huge ids first.
        instances = np.unique(instances, return_inverse=True)[1].reshape(instances.shape)
    boxes = ndimage.find_objects(instances)
    if sum(box is not None for box in boxes) < 2:
        return np.zeros(instances.shape, np.float32)

    margin = math.ceil(_cutoff_radius(w0, sigma, tol)) + 1
    height, width = instances.shape
    nearest = np.full(instances.shape, np.inf)
    second = np.full(instances.shape, np.inf)
    for cell_id, box in enumerate(boxes, start=1):
        if box is None:
            continue
        rows, cols = box
        window = (
            slice(max(rows.start - margin, 0), min(rows.stop + margin, height)),
            slice(max(cols.start - margin, 0), min(cols.stop + margin, width)),
        )
        distance = ndimage.distance_transform_edt(instances[window] != cell_id)
        nearest_view, second_view = nearest[window], second[window]
        # Running two smallest: the new second is min(old second, max(old nearest, d)).
        np.minimum(second_view, np.maximum(nearest_view, distance), out=second_view)
        np.minimum(nearest_view, distance, out=nearest_view)
    return _term_from_distances(nearest, second, w0, sigma)


def _restrict(term, instances, border_on):
    """Zero the border term on cell pixels unless it applies everywhere."""
    if border_on == "background":
        term[instances > 0] = 0.0
    return term


def border_term(mask, w0=10.0, sigma=5.0, labels="auto", tol=DEFAULT_TOLERANCE, border_on="background"):
    """The separation term w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) alone.

    Computed the fast way (distance transforms cropped around each cell), within
    ``tol`` of the exact formula everywhere; see :func:`weight_map_reference` for the
    straightforward method. Zero when the mask has fewer than two cells, and on cell
    pixels unless ``border_on="everywhere"``.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Binary mask or instance label image (see :func:`cell_instances`).
    w0 : float
        Peak weight of the border term (the paper uses 10).
    sigma : float
        Width in pixels of the border term (the paper uses about 5).
    labels : {"auto", "binary", "instance"}
        How to read ``mask``.
    tol : float
        Largest allowed absolute error; must be > 0.
    border_on : {"background", "everywhere"}
        Pixels that get the term: background only (the paper's Fig. 3d) or all.

    Returns
    -------
    numpy.ndarray of float32, shape (H, W)

    Examples
    --------
    Two cells with a two-pixel gap: the term peaks in the gap, not on the cells.

    >>> mask = np.array([[1, 1, 0, 0, 1, 1]])
    >>> border_term(mask, w0=10, sigma=5).round(2)
    array([[0.  , 0.  , 8.35, 8.35, 0.  , 0.  ]], dtype=float32)
    >>> border_term(mask, w0=10, sigma=5, border_on="everywhere").round(2)
    array([[7.26, 8.35, 8.35, 8.35, 8.35, 7.26]], dtype=float32)
    """
    w0, sigma, tol = float(w0), float(sigma), float(tol)
    _check_border_params(w0, sigma, border_on)
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol}.")
    instances = cell_instances(mask, labels)
    return _restrict(_border_term_windowed(instances, w0, sigma, tol), instances, border_on)


def weight_map(mask, w0=10.0, sigma=5.0, class_weights="balanced", labels="auto", border_on="background"):
    """The U-Net paper's weight map w(x) = w_c(x) + border term (fast method).

    Within 1e-4 of the exact formula everywhere (see ``_border_term_windowed`` for
    the proof); tens of times faster than :func:`weight_map_reference` on an
    ISBI label (benchmarks/weight_map_speed.py prints the ratio: 64x on the book's
    2-core test machine). Cells of a binary mask are its
    4-connected components.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Binary mask (0 = membrane/background, 1 or 255 = cell) or instance labels
        (0 = background, 1..N = cells).
    w0 : float
        Peak weight of the border term (paper: 10).
    sigma : float
        Width in pixels of the border term (paper: about 5).
    class_weights : "balanced", dict, sequence of two floats, or None
        See :func:`class_weight_map`.
    labels : {"auto", "binary", "instance"}
        ``"auto"`` reads values within {0, 1} or {0, 255} as binary, else as instances.
    border_on : {"background", "everywhere"}
        Pixels that get the border term (see the module docstring).

    Returns
    -------
    numpy.ndarray of float32, shape (H, W)
    """
    instances = cell_instances(mask, labels)
    class_term = class_weight_map(instances, class_weights, labels="instance")
    return class_term + border_term(instances, w0, sigma, labels="instance", border_on=border_on)


def weight_map_reference(mask, w0=10.0, sigma=5.0, class_weights="balanced", labels="auto",
                         border_on="background"):
    """Straightforward, exact weight map: the baseline that :func:`weight_map` speeds up.

    Runs one Euclidean distance transform per cell over the whole image, stacks
    them and picks the two smallest per pixel. Memory grows as cells x pixels
    (about 280 MB for an ISBI label with 136 cells).

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    mask, w0, sigma, class_weights, labels, border_on
        As for :func:`weight_map`.

    Returns
    -------
    numpy.ndarray of float32, shape (H, W)
    """
    w0, sigma = float(w0), float(sigma)
    _check_border_params(w0, sigma, border_on)
    instances = cell_instances(mask, labels)
    class_term = class_weight_map(instances, class_weights, labels="instance")
    border = _restrict(_border_term_reference(instances, w0, sigma), instances, border_on)
    return class_term + border


# -------------------------------------------------------------- touching cells
def separation_border(instances, width=1):
    """Pixels where two different cells touch (the paper's HeLa case).

    A pixel is on the border when its 3x3 neighbourhood (itself included) holds two
    different non-zero labels. With ``width=2`` all of them are marked: both sides of
    a contact line plus background pixels in one-pixel gaps. With ``width=1`` a cell
    pixel is marked only when a neighbour has a *larger* label, so the line is one
    pixel thick; this still leaves no two remaining pixels of different cells 8- or
    4-adjacent, so the cells separate.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    instances : array_like of int, shape (H, W)
        Instance labels, 0 = background.
    width : {1, 2}
        Thickness of the separating line between two touching cells.

    Returns
    -------
    numpy.ndarray of bool, shape (H, W)
    """
    if width not in (1, 2):
        raise ValueError(f"width must be 1 or 2, got {width!r}.")
    labels_image, _ = _as_label_image(instances, "instance")
    if labels_image.max() >= 2**52:
        # scipy filters go through float64: renumber (order kept) so ids stay exact.
        labels_image = np.unique(labels_image, return_inverse=True)[1].reshape(labels_image.shape)
    # One above the largest label; not int64 max, which scipy's float cval would overflow.
    no_cell = int(labels_image.max()) + 1
    largest = ndimage.maximum_filter(labels_image, size=3, mode="constant", cval=0)
    cells_only = np.where(labels_image > 0, labels_image, no_cell)
    smallest = ndimage.minimum_filter(cells_only, size=3, mode="constant", cval=no_cell)
    two_cells_nearby = smallest < largest  # false when no cell is near (smallest = no_cell)
    if width == 2:
        return two_cells_nearby
    return two_cells_nearby & (labels_image < largest)


def binary_with_borders(instances, width=1):
    """Binary training mask (uint8 0/1) with touching cells cut apart.

    Cells become 1, background and :func:`separation_border` pixels 0, so the
    network learns to predict the thin background line between touching cells.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    instances : array_like of int, shape (H, W)
        Instance labels, 0 = background.
    width : {1, 2}
        Thickness of the cut, see :func:`separation_border`.

    Returns
    -------
    numpy.ndarray of uint8, shape (H, W)
    """
    labels_image, _ = _as_label_image(instances, "instance")
    return ((labels_image > 0) & ~separation_border(labels_image, width)).astype(np.uint8)


# ----------------------------------------------------------------------- stacks
def _normalised_params(w0, sigma, class_weights, labels, border_on):
    """Parameters as JSON-able values, so equal settings give equal cache keys."""
    if isinstance(class_weights, dict):
        class_weights = [float(class_weights[0]), float(class_weights[1])]
    elif class_weights is not None and not isinstance(class_weights, str):
        class_weights = [float(weight) for weight in class_weights]
    return {"w0": float(w0), "sigma": float(sigma), "class_weights": class_weights, "labels": labels,
            "border_on": border_on}


def _cache_key(masks, params):
    digest = hashlib.sha256()
    digest.update(_CACHE_VERSION.encode())
    digest.update(json.dumps(params, sort_keys=True).encode())
    digest.update(f"{masks.dtype.str}{masks.shape}".encode())
    digest.update(np.ascontiguousarray(masks).tobytes())
    return digest.hexdigest()[:32]


def _load_cached(array_path, checksum_path, shape):
    """Cached maps, or None (with a warning) when the files are damaged."""
    try:
        maps = np.load(array_path, allow_pickle=False)
        expected = checksum_path.read_text().strip()
        valid = (
            maps.shape == shape
            and maps.dtype == np.float32
            and hashlib.sha256(maps.tobytes()).hexdigest() == expected
        )
    except (OSError, ValueError, EOFError):
        valid = False
    if not valid:
        message = f"Weight-map cache {array_path} is damaged; recomputing it."
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return None
    return maps


def weight_maps(masks, cache_dir=None, *, w0=10.0, sigma=5.0, class_weights="balanced", labels="auto",
                border_on="background"):
    """Weight maps for a whole stack of masks, optionally cached on disk.

    With ``cache_dir`` the result is saved as ``weight_maps-<key>.npy`` (plus a
    ``.sha256`` checksum file) where the key hashes the masks' bytes, the parameters
    and a version string; the next call with the same input loads it instead of
    recomputing. A damaged cache file is recomputed with a warning. Nothing is
    written outside ``cache_dir`` (created if missing).

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    masks : array_like, shape (N, H, W)
        Stack of binary masks or instance label images.
    cache_dir : str or os.PathLike, optional
        Folder for cached results; None disables caching.
    w0, sigma, class_weights, labels, border_on
        As for :func:`weight_map`.

    Returns
    -------
    numpy.ndarray of float32, shape (N, H, W)
    """
    stack = np.asarray(masks)
    if stack.ndim != 3:
        raise ValueError(
            f"masks must be a stack of shape (N, H, W), got shape {stack.shape}; "
            "for a single mask use weight_map(mask)."
        )
    if stack.shape[0] == 0:
        raise ValueError("masks is an empty stack (N = 0); pass at least one mask.")
    _check_border_params(float(w0), float(sigma), border_on)
    params = _normalised_params(w0, sigma, class_weights, labels, border_on)

    def compute():
        return np.stack([
            weight_map(mask, w0=w0, sigma=sigma, class_weights=class_weights, labels=labels,
                       border_on=border_on)
            for mask in stack
        ]).astype(np.float32, copy=False)

    if cache_dir is None:
        return compute()
    directory = Path(cache_dir)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cache_dir {directory} exists but is not a folder; pass a folder path.")
    directory.mkdir(parents=True, exist_ok=True)
    key = _cache_key(stack, params)
    array_path = directory / f"weight_maps-{key}.npy"
    checksum_path = directory / f"weight_maps-{key}.sha256"

    if array_path.exists():
        cached = _load_cached(array_path, checksum_path, stack.shape)
        if cached is not None:
            return cached
    maps = compute()
    checksum = hashlib.sha256(maps.tobytes()).hexdigest()
    write_atomically(array_path, lambda path: np.save(path, maps))
    write_atomically(checksum_path, lambda path: path.write_text(checksum))
    return maps

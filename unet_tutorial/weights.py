"""Pixel-wise loss weights from the U-Net paper (Ronneberger et al. 2015, eq. 2).

The paper weights every pixel x of a training label by

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

where ``w_c`` balances the class frequencies and ``d1``/``d2`` are the distances
to the nearest and second-nearest cell. The second term is large only in thin
gaps between cells, so the network is pushed to learn the separating borders.
One function per term: :func:`class_weight_map` (w_c), :func:`border_term` (the
second term) and :func:`weight_map` (their sum); :func:`weight_map_reference` is the
straightforward exact computation beside the fast one.

The distance from x to cell i is ``scipy.ndimage.distance_transform_edt(labels != i)``
at x: the Euclidean distance from x to the nearest pixel (centre) of cell i. The cells
of a binary mask (0 = membrane/background, 1 or 255 = cell) are its 4-connected
components: a one-pixel membrane running diagonally leaves its two sides touching only
at corners, and those cells must stay separate. ``labels="auto"`` reads a mask whose
values lie within {0, 1} or {0, 255} as binary, anything else as instance labels
(0 = background, 1..N = cells).

Where the border term applies is not written in the paper's formula, only drawn in
its Fig. 3d, where the high weights sit in the gaps *between* cells. By default
(``border_on="background"``) the term is added on background pixels only, as in
that figure and in the public reimplementations (e.g. ``unetwmap.m`` of
bioimaging-lab/deepCyAn); cell pixels keep their class weight. Read literally, the
formula also applies inside a cell, where ``d1 = 0`` and ``d2`` is the distance to
the nearest other cell; ``border_on="everywhere"`` gives that reading, which also
raises the weight of cell pixels next to a narrow gap.

The class term ``w_c`` is not defined in the paper either. Here ``"balanced"``
makes it average 1 over the image (weight N / (K N_c) for class c, with N pixels,
N_c of them in class c and K the number of classes present), so the border term
keeps the same scale whatever the class balance; deepCyAn instead gives the rarer
class the weight 1 and the other class its frequency ratio.

The fast border term (``_border_term_windowed``) computes each cell's distance
transform only inside the cell's bounding box grown by a margin, and is within
``tol`` of the exact formula everywhere. Why: let R = sigma * sqrt(2 ln(w0 / tol)), so
w0 * exp(-s**2 / (2 sigma**2)) <= tol for every s >= R. Cell i's distance transform
is computed only inside its bounding box grown by m = ceil(R) + 1 pixels on each
side; the box holds every pixel of cell i, so there the cropped transform is exact. A
pixel outside the grown box differs from every pixel of cell i by more than m >= R
along one axis, so its true distance to cell i is > R; it is recorded as +inf
instead. At a pixel x, the computed pair (d1', d2') is the two smallest of a subset
of the true per-cell distances, hence d1' >= d1 and d2' >= d2.

* If d1 + d2 <= R: both nearest cells are within R of x, so x lies in both grown
  boxes, their exact distances are in the subset, and (d1', d2') = (d1, d2): no error.
* If d1 + d2 > R: then also d1' + d2' > R, so the exact and the computed terms both
  lie in [0, tol] and differ by at most tol.

Hence |computed - exact| <= tol everywhere (plus float32 rounding of the output). With
the default tol = 1e-4 the fast method is tens of times faster than the reference on
an ISBI label (``benchmarks/weight_map_speed.py`` prints the ratio: 64x on the book's
2-core test machine), whose memory grows as cells x pixels (about 280 MB for an ISBI
label with 136 cells).

:func:`weight_maps` computes a stack and can cache it on disk as
``weight_maps-<key>.npy`` plus a ``.sha256`` checksum file, where the key hashes the
masks' bytes, the parameters and a version string; a damaged cache is recomputed with
a warning, and nothing is written outside ``cache_dir``.

Taught in chapter 6 (Weight maps).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .challenge import _label_map
from .files import cached_array

__all__ = [
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


# --------------------------------------------------------------------------- input
def cell_instances(mask, labels="auto"):
    """The cells of a mask as an int64 instance label image (0 = background, 1..N = cells).

    ``mask`` and ``labels`` as for :func:`weight_map`.
    Taught in chapter 6 (Weight maps).
    """
    if labels not in ("auto", "binary", "instance"):
        raise ValueError(f"labels must be 'auto', 'binary' or 'instance', got {labels!r}.")
    array = _label_map(mask, "mask")
    if array.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got {array.shape}; for a stack use weight_maps.")
    if labels == "instance":
        return array
    values = set(np.unique(array).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):  # instance labels
        if labels == "binary":
            raise ValueError("labels='binary' needs values in {0, 1} or {0, 255}; use labels='instance'.")
        return array
    four_connected = ndimage.generate_binary_structure(2, 1)  # cells touching at a corner stay apart
    return ndimage.label(array > 0, structure=four_connected)[0].astype(np.int64, copy=False)


def _small_ids(instances):
    """Cells renumbered 1..N in order when ids exceed the pixel count (scipy wants small ids)."""
    if instances.max() <= instances.size:
        return instances
    ids, compact = np.unique(instances, return_inverse=True)
    return compact.reshape(instances.shape) + int(ids[0] > 0)  # 0 stays background


# --------------------------------------------------------------------- class term
def _class_weight_pair(class_weights, cells):
    """(background weight, cell weight); ``cells`` is the boolean cell mask."""
    if class_weights is None:
        return 1.0, 1.0
    if isinstance(class_weights, str) and class_weights == "balanced":  # N / (K N_c)
        counts = [cells.size - np.count_nonzero(cells), np.count_nonzero(cells)]
        present = sum(count > 0 for count in counts)
        return tuple(cells.size / (present * count) if count else 0.0 for count in counts)
    try:  # {0: a, 1: b} or (a, b)
        pair = tuple(float(class_weights[key]) for key in (0, 1)) if len(class_weights) == 2 else ()
    except (LookupError, TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(0 <= weight < math.inf for weight in pair):
        raise ValueError(
            f"class_weights must be 'balanced', None, {{0: a, 1: b}} or (a, b) with a, b >= 0, "
            f"got {class_weights!r}."
        )
    return pair


def class_weight_map(mask, class_weights="balanced", labels="auto"):
    """The class term w_c(x), float32: one weight for background pixels, one for cell pixels.

    Parameters as for :func:`weight_map`.

    Taught in chapter 6 (Weight maps).
    """
    cells = cell_instances(mask, labels) > 0
    background_weight, cell_weight = _class_weight_pair(class_weights, cells)
    return np.where(cells, cell_weight, background_weight).astype(np.float32)


# -------------------------------------------------------------------- border term
def _check_border_params(w0, sigma, border_on):
    if border_on not in ("background", "everywhere"):
        raise ValueError(f"border_on must be 'background' or 'everywhere', got {border_on!r}.")
    if not (0 <= w0 < math.inf and 0 < sigma < math.inf):
        raise ValueError(f"w0 must be >= 0 and sigma > 0, both finite; got w0={w0}, sigma={sigma}.")


def _term_from_distances(d1, d2, w0, sigma):
    """The paper's w0 * exp(-(d1 + d2)**2 / (2 sigma**2))."""
    total = d1 + d2
    return (w0 * np.exp(-(total * total) / (2.0 * sigma * sigma))).astype(np.float32)


def _border_term_reference(instances, w0, sigma):
    """Exact: one full-image distance transform per cell, then the two smallest at every pixel."""
    cell_ids = np.unique(instances[instances > 0])
    if len(cell_ids) < 2 or w0 == 0:
        return np.zeros(instances.shape, np.float32)
    distances = np.stack([ndimage.distance_transform_edt(instances != i) for i in cell_ids])
    d1, d2 = np.partition(distances, 1, axis=0)[:2]
    return _term_from_distances(d1, d2, w0, sigma)


def _border_term_windowed(instances, w0, sigma, tol):
    """Fast: each cell's distance transform only near the cell; within ``tol`` (module docstring)."""
    instances = _small_ids(instances)
    margin = math.ceil(sigma * math.sqrt(2.0 * math.log(w0 / tol))) + 1 if w0 > tol else 1  # R + 1
    nearest, second = np.full(instances.shape, np.inf), np.full(instances.shape, np.inf)
    for cell_id, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:  # no cell with this id
            continue
        window = tuple(slice(max(part.start - margin, 0), part.stop + margin) for part in box)
        distance = ndimage.distance_transform_edt(instances[window] != cell_id)
        near, far = nearest[window], second[window]
        np.minimum(far, np.maximum(near, distance), out=far)  # running two smallest
        np.minimum(near, distance, out=near)
    return _term_from_distances(nearest, second, w0, sigma)  # 0 where fewer than two cells are near


def _restrict(term, instances, border_on):
    """The border term on background pixels only (Fig. 3d), unless it applies everywhere."""
    return np.where(instances > 0, np.float32(0), term) if border_on == "background" else term


def border_term(mask, w0=10.0, sigma=5.0, labels="auto", tol=DEFAULT_TOLERANCE, border_on="background"):
    """The separation term w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) alone, the fast way: float32 (H, W).

    Within ``tol`` (> 0) of the exact formula everywhere (proof in the module docstring); the other
    arguments as for :func:`weight_map`. Taught in chapter 6 (Weight maps).

    Examples
    --------
    >>> border_term(np.array([[1, 1, 0, 0, 1, 1]]), border_on="everywhere").round(2)  # a two-pixel gap
    array([[7.26, 8.35, 8.35, 8.35, 8.35, 7.26]], dtype=float32)
    """
    w0, sigma, tol = float(w0), float(sigma), float(tol)
    _check_border_params(w0, sigma, border_on)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}; weight_map_reference gives the exact term.")
    instances = cell_instances(mask, labels)
    return _restrict(_border_term_windowed(instances, w0, sigma, tol), instances, border_on)


def weight_map(mask, w0=10.0, sigma=5.0, class_weights="balanced", labels="auto", border_on="background"):
    """The U-Net paper's weight map w(x) = w_c(x) + border term, float32 (H, W), the fast way (within 1e-4).

    Taught in chapter 6 (Weight maps).

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Binary mask (0 / 1 or 0 / 255; the cells are its 4-connected components) or instance labels.
    w0, sigma : float
        Peak weight and width in pixels of the border term (the paper: 10 and about 5).
    class_weights : "balanced", {0: a, 1: b}, (a, b) or None
        Class term: N / (K N_c) for class c (averages 1), background a and cell b, or 1 everywhere.
    labels : {"auto", "binary", "instance"}
        How to read ``mask``; "auto" reads values within {0, 1} or {0, 255} as binary.
    border_on : {"background", "everywhere"}
        Pixels that get the border term: background only (the paper's Fig. 3d) or all.
    """
    instances = cell_instances(mask, labels)
    class_term = class_weight_map(instances, class_weights, labels="instance")
    return class_term + border_term(instances, w0, sigma, labels="instance", border_on=border_on)


def weight_map_reference(
    mask, w0=10.0, sigma=5.0, class_weights="balanced", labels="auto", border_on="background"
):
    """The exact weight map (a distance transform per cell, whole image): what :func:`weight_map` speeds up.

    Parameters and return value as for :func:`weight_map`.

    Taught in chapter 6 (Weight maps).
    """
    w0, sigma = float(w0), float(sigma)
    _check_border_params(w0, sigma, border_on)
    instances = cell_instances(mask, labels)
    class_term = class_weight_map(instances, class_weights, labels="instance")
    return class_term + _restrict(_border_term_reference(instances, w0, sigma), instances, border_on)


# -------------------------------------------------------------- touching cells
def separation_border(instances, width=1):
    """Pixels where two different cells touch (the paper's HeLa case).

    A pixel of ``instances`` (int labels (H, W), 0 = background) whose 3x3 neighbourhood holds two
    different cells is on the border. ``width=2`` marks them all; ``width=1`` a cell pixel only when a
    neighbour has a *larger* label: one pixel thick, and still no two cells left 4- or 8-adjacent.
    Returns a bool (H, W) mask. Taught in chapter 6 (Weight maps).
    """
    if width not in (1, 2):
        raise ValueError(f"width must be 1 or 2, got {width!r}.")
    labels = _small_ids(cell_instances(instances, "instance"))  # scipy's filters go through float64
    no_cell = int(labels.max()) + 1  # not int64's max, which scipy's float cval would overflow
    largest = ndimage.maximum_filter(labels, size=3, mode="constant", cval=0)
    cells_only = np.where(labels > 0, labels, no_cell)
    smallest = ndimage.minimum_filter(cells_only, size=3, mode="constant", cval=no_cell)
    two_cells_nearby = smallest < largest  # false when no cell is near (smallest = no_cell)
    return two_cells_nearby if width == 2 else two_cells_nearby & (labels < largest)


def binary_with_borders(instances, width=1):
    """Binary training mask (uint8 0/1) with touching cells cut apart by :func:`separation_border`.

    Parameters as for :func:`separation_border`.

    Taught in chapter 6 (Weight maps).
    """
    return (~separation_border(instances, width) & (np.asarray(instances) > 0)).astype(np.uint8)


# ----------------------------------------------------------------------- stacks
def weight_maps(
    masks,
    cache_dir=None,
    *,
    w0=10.0,
    sigma=5.0,
    class_weights="balanced",
    labels="auto",
    border_on="background",
):
    """:func:`weight_map` of every mask of a stack, float32 (N, H, W), cached on disk if asked.

    Taught in chapter 6 (Weight maps).

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Folder of the cache (module docstring), created if missing; None: no cache.
    masks, w0, sigma, class_weights, labels, border_on
        As for :func:`weight_map`, the masks stacked (N, H, W).
    """
    stack = np.asarray(masks)
    if stack.ndim != 3:
        raise ValueError(f"masks must be a stack (N, H, W), got {stack.shape}; for one mask use weight_map.")
    options = dict(w0=w0, sigma=sigma, class_weights=class_weights, labels=labels, border_on=border_on)

    def compute():
        return np.stack([weight_map(mask, **options) for mask in stack])

    if cache_dir is None:
        return compute()
    key = {**options, "w0": float(w0), "sigma": float(sigma), "version": _CACHE_VERSION}
    if class_weights is not None and not isinstance(class_weights, str):  # {0: a, 1: b} is (a, b)
        key["class_weights"] = list(_class_weight_pair(class_weights, None))
    return cached_array(cache_dir, "weight_maps", compute, stack, key)

"""Data augmentation for segmentation: one geometry for image, mask and weight map.

The U-Net paper trains on 30 images and gets away with it because every training tile
is randomly shifted, rotated, flipped and, above all, elastically deformed: "random
displacement vectors on a coarse 3 by 3 grid", drawn from a Gaussian with a 10-pixel
standard deviation and interpolated bicubically to a smooth per-pixel field.

Two rules keep a mask aligned with its image:

* Every random number is drawn once, from one ``numpy.random.Generator``, and the same
  geometry is applied to the image (cubic or linear interpolation), the mask (nearest
  neighbour, so labels stay labels) and the weight map (linear, so weights stay >= 0).
* The affine part and the elastic field are composed into ONE coordinate map, so each
  array is resampled once: faster, and less blur than two passes.

Flips and 90-degree rotations are exact array operations, not resampling. Coordinates
are (row, col); a geometric transform maps each *output* pixel to the *input* position
it is read from, as in ``scipy.ndimage``.

The parameters of ``random_transform`` (``DEFAULT_PARAMS`` holds their defaults, which
change nothing; geometric ranges use the units of the legacy Keras ``ImageDataGenerator``):

==================  ===========================================================================
rotation_range      angle drawn from [-r, r] degrees
width_shift_range   column shift from [-s, s]: a fraction of the width if s < 1, else pixels
height_shift_range  row shift, likewise (the legacy generator swaps width and height)
shear_range         shear angle drawn from [-s, s] degrees
zoom_range          z or (lo, hi): row and column factors from [1-z, 1+z]; above 1 zooms out
horizontal_flip     flip left-right with probability 1/2 (vertical_flip: up-down)
rot90               k quarter turns, k from {0, 1, 2, 3} ({0, 2} if the image is not square)
elastic             the paper's elastic deformation (``displacement_field``), with
                    elastic_grid nodes per axis (paper: 3) moved by elastic_sigma pixels (10)
brightness          grey-value shift from [-b, b], a fraction of the full range
contrast, gamma     factor around the image mean / exponent, from [1-c, 1+c]; c < 1
fill_mode           beyond the border: one of ``FILL_MODES`` ("constant" fills with 0)
image_order         spline order of the image: 3 cubic, 1 linear; masks use 0, weights 1
==================  ===========================================================================

Keras' own ``RandomElasticTransform`` (chapter 2 compares it, Keras 3.15): called with
``{"images": ..., "segmentation_masks": ...}`` or one layer on image then mask, its seed
generator advances between the two resamplings, so only 70-80 % of mask pixels stay
aligned; two layers built with the same seed share one field (over 99 %). The row and
column displacements come from the same seed, so they are equal and pixels only move along
the diagonal; the same holds on JAX. On PyTorch (Keras 3.15.1, torch 2.13) the seed does
not fix the field: two layers misalign too, and the row and column shifts differ.

Taught in chapter 2 (Augmentation).
"""

from __future__ import annotations

import functools
from types import MappingProxyType

import keras
import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_PARAMS",
    "LEGACY_PARAMS",
    "PAPER_PARAMS",
    "apply_affine",
    "displacement_field",
    "elastic_deform",
    "keras_elastic_agreement",
    "keras_elastic_displacement",
    "random_transform",
]

# SciPy's names for what happens beyond the border. "mirror" (d c b | a b c d | c b a)
# is the paper's choice; "reflect" repeats the edge pixel (d c b a | a b c d | d c b a).
FILL_MODES = ("mirror", "reflect", "nearest", "constant", "wrap")

#: The parameters of ``random_transform`` (explained in the module docstring); these change nothing.
DEFAULT_PARAMS = MappingProxyType(
    dict(
        rotation_range=0.0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        shear_range=0.0,
        zoom_range=0.0,
        horizontal_flip=False,
        vertical_flip=False,
        rot90=False,
        elastic=False,
        elastic_grid=3,
        elastic_sigma=10.0,
        brightness=0.0,
        contrast=0.0,
        gamma=0.0,
        fill_mode="mirror",
        image_order=3,
    )
)

#: The recipe of the popular zhixuhao/unet Keras tutorial; image_order=1 is the legacy
#: generator's linear interpolation. Use as ``random_transform(img, mask, rng, **LEGACY_PARAMS)``.
LEGACY_PARAMS = MappingProxyType(
    dict(
        rotation_range=0.2,
        width_shift_range=0.05,
        height_shift_range=0.05,
        shear_range=0.05,
        zoom_range=0.05,
        horizontal_flip=True,
        fill_mode="nearest",
        image_order=1,
    )
)

#: The paper's recipe: flips, 90-degree rotations, elastic deformation on a 3x3 grid
#: with 10-pixel displacements, mirrored borders and small grey-value changes.
PAPER_PARAMS = MappingProxyType(
    dict(
        horizontal_flip=True,
        vertical_flip=True,
        rot90=True,
        elastic=True,
        elastic_grid=3,
        elastic_sigma=10.0,
        brightness=0.05,
        contrast=0.1,
        gamma=0.1,
        fill_mode="mirror",
        image_order=3,
    )
)


def _check_params(params):
    """``DEFAULT_PARAMS`` updated with ``params``, after checking the names and ranges."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise TypeError(f"Unknown augmentation parameter(s) {unknown}; valid: {', '.join(DEFAULT_PARAMS)}.")
    p = {**DEFAULT_PARAMS, **params}
    zoom = p["zoom_range"]
    low, high = p["zoom_range"] = (1.0 - zoom, 1.0 + zoom) if np.isscalar(zoom) else tuple(map(float, zoom))
    if not (0 <= p["contrast"] < 1 and 0 <= p["gamma"] < 1):
        raise ValueError(f"contrast and gamma must lie in [0, 1), got {p['contrast']} and {p['gamma']}.")
    if not 0 < low <= high:
        raise ValueError(f"zoom_range must be a number in [0, 1) or a pair 0 < lo <= hi, got {zoom!r}.")
    if p["fill_mode"] not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {p['fill_mode']!r}.")
    return p


def _check_grey_range(image, p):
    """Grey-value changes work on a [0, 1] scale: float images must lie in it."""
    grey = p["brightness"] or p["contrast"] or p["gamma"]
    if grey and np.issubdtype(image.dtype, np.floating) and (image.min() < 0 or image.max() > 1):
        raise ValueError("grey-value changes need float images in [0, 1] (or brightness=contrast=gamma=0).")


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.default_rng(seed) Generator, got {type(rng).__name__}")


# --------------------------------------------------------------------------- elastic deformation
@functools.lru_cache(maxsize=32)  # 3 ms a call at 572 px; training crops share a few sizes
def _spline_upsampler(n_out, grid):
    """Read-only (n_out, grid) matrix whose column j is ``ndimage.zoom`` (bicubic) of unit vector j."""
    matrix = np.stack([ndimage.zoom(unit, n_out / grid, order=3, mode="mirror") for unit in np.eye(grid)], 1)
    matrix.setflags(write=False)
    return matrix


def displacement_field(shape, rng, grid=3, sigma=10.0):
    """Random smooth displacement field (dy, dx) of the U-Net paper's elastic deformation.

    Displacements of a ``grid`` x ``grid`` lattice of nodes (paper: 3), drawn by ``rng`` from
    N(0, sigma**2) pixels (paper: 10), zoomed bicubically to every pixel of ``shape`` (H, W):
    ``ndimage.zoom(nodes, (H / grid, W / grid), order=3, mode="mirror")``, computed as
    ``rows @ nodes @ cols.T`` with cached matrices. Output pixel p is read from input position
    p + (dy, dx)[p]. Taught in chapter 2 (Augmentation).

    Examples
    --------
    >>> [field.shape for field in displacement_field((5, 7), np.random.default_rng(0))]
    [(5, 7), (5, 7)]
    """
    _check_rng(rng)
    return _field(shape, rng, grid, sigma)


def _field(shape, rng, grid, sigma):
    """:func:`displacement_field`, ``rng`` already checked."""
    nodes = rng.normal(0.0, sigma, size=(2, grid, grid))
    rows, cols = _spline_upsampler(int(shape[0]), grid), _spline_upsampler(int(shape[1]), grid)
    # @ cols.T as grid outer products summed in order (a tiny inner size: no BLAS threads)
    return tuple(sum(np.multiply.outer(r, c) for r, c in zip((rows @ n).T, cols.T)) for n in nodes)


# --------------------------------------------------------------------------- resampling
def _affine_matrix(shape, theta=0.0, shift=(0.0, 0.0), shear=0.0, zoom=(1.0, 1.0)):
    """(row, col) matrix from output to input positions, built like the legacy ``apply_affine_transform``."""
    angle, shear_angle = np.deg2rad(theta), np.deg2rad(shear)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    translation = np.array([[1.0, 0.0, -shift[1]], [0.0, 1.0, -shift[0]], [0.0, 0.0, 1.0]])  # moves +shift
    shearing = np.array([[1.0, -np.sin(shear_angle), 0.0], [0.0, np.cos(shear_angle), 0.0], [0.0, 0.0, 1.0]])
    scaling = np.diag([zoom[1], zoom[0], 1.0])
    centre = np.array([[1.0, 0.0, (shape[1] - 1) / 2], [0.0, 1.0, (shape[0] - 1) / 2], [0.0, 0.0, 1.0]])
    col_row = centre @ (rotation @ translation @ shearing @ scaling) @ np.linalg.inv(centre)
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # (col, row) -> (row, col)
    return swap @ col_row @ swap


def _warp(image, mask, weights, matrix, field, order, mode):
    """Image (spline ``order``), mask (nearest) and weights (linear) read at ``matrix @ (p + field[p])``."""
    image, mask = np.asarray(image), np.asarray(mask)
    arrays = [image, mask] + ([] if weights is None else [np.asarray(weights)])
    if mask.shape != image.shape[:2] or any(w.shape != mask.shape for w in arrays[2:]):
        raise ValueError(f"shapes {[a.shape for a in arrays]}: mask and weights must be the image's (H, W)")
    if matrix is None and field is None:
        return tuple(array.copy() for array in arrays)
    if field is None:
        sample = functools.partial(ndimage.affine_transform, matrix=matrix[:2, :2], offset=matrix[:2, 2])
    else:
        m = np.eye(3) if matrix is None else matrix
        rows, cols = np.arange(mask.shape[0])[:, None] + field[0], np.arange(mask.shape[1]) + field[1]
        coords = [m[0, 0] * rows + m[0, 1] * cols + m[0, 2], m[1, 0] * rows + m[1, 1] * cols + m[1, 2]]
        sample = functools.partial(ndimage.map_coordinates, coordinates=np.array(coords))
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    warped = np.stack([sample(c, order=order, mode=mode, output=np.float64) for c in channels], -1)
    warped = warped.reshape(image.shape)
    if np.issubdtype(image.dtype, np.integer):
        warped = np.clip(np.rint(warped), np.iinfo(image.dtype).min, np.iinfo(image.dtype).max)
    elif order > 1:  # cubic splines overshoot at edges: stay in the input's range
        warped = np.clip(warped, image.min(), image.max())
    labels = mask.view(np.uint8) if mask.dtype == bool else mask  # nearest copies labels: none are new
    arrays[0] = warped.astype(image.dtype, copy=False)
    arrays[1] = sample(labels, order=0, mode=mode, output=labels.dtype).astype(mask.dtype)
    if weights is not None:
        dtype = arrays[2].dtype if np.issubdtype(arrays[2].dtype, np.floating) else np.float32
        arrays[2] = sample(arrays[2], order=1, mode=mode, output=np.float64).astype(dtype, copy=False)
    return tuple(arrays)


def apply_affine(
    image, mask, theta=0.0, shift=(0.0, 0.0), shear=0.0, zoom=(1.0, 1.0), weights=None, order=3, mode="mirror"
):
    """Apply one given affine transform, about the image centre, to image, mask and weights.

    The deterministic counterpart of ``random_transform``, to show each transform alone.
    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image, mask, weights : as in ``random_transform``
    theta, shear : float
        Rotation (counter-clockwise as displayed; 90 equals ``np.rot90``) and shear angle in degrees.
    shift, zoom : (float, float)
        (rows, cols): pixels the content moves down/right; scale of the sampling grid (above 1 shrinks).
    order, mode : int, str
        Spline order of the image (3 cubic, 1 linear) and one of ``FILL_MODES``.

    Returns
    -------
    (image, mask[, weights]) : arrays of the input shapes and dtypes

    Examples
    --------
    >>> mask = np.array([[1, 0], [0, 0]], np.uint8)
    >>> apply_affine(mask, mask, theta=90)[1]  # as np.rot90
    array([[0, 0],
           [1, 0]], dtype=uint8)
    """
    matrix = _affine_matrix(np.shape(mask), theta, shift, shear, zoom)
    return _warp(image, mask, weights, None if np.allclose(matrix, np.eye(3)) else matrix, None, order, mode)


def elastic_deform(image, mask, rng, grid=3, sigma=10.0, order=3, mode="mirror", weights=None):
    """The U-Net paper's elastic deformation, the same for image, mask and weights.

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image, mask, weights : as in ``random_transform``
    rng, grid, sigma : as in ``displacement_field`` (paper: 3 nodes per axis, 10 pixels)
    order, mode : as in ``apply_affine`` (paper: mirror)

    Returns
    -------
    (image, mask[, weights]) : arrays of the input shapes and dtypes

    Examples
    --------
    >>> flat = np.full((6, 6), 7, np.uint8)  # interpolation invents no grey values
    >>> np.unique(elastic_deform(flat, flat > 0, np.random.default_rng(0))[0])
    array([7], dtype=uint8)
    """
    field = displacement_field(np.shape(mask), rng, grid, sigma)
    return _warp(image, mask, weights, None, None if sigma == 0 else field, order, mode)


# --------------------------------------------------------------------------- random_transform
def _draw(rng, centre, spread):
    """A number drawn uniformly from [centre - spread, centre + spread]; no draw for spread 0."""
    return rng.uniform(centre - spread, centre + spread) if spread else centre


def _draw_affine(p, shape, rng):
    """Draw rotation, shift, shear and zoom in turn; None if all are zero."""
    theta = _draw(rng, 0.0, p["rotation_range"])
    ranges = (p["height_shift_range"], p["width_shift_range"])
    shift = tuple(_draw(rng, 0.0, s) * (n if s < 1 else 1) for s, n in zip(ranges, shape))  # s < 1: of n
    shear = _draw(rng, 0.0, p["shear_range"])
    zoom = tuple(rng.uniform(*p["zoom_range"], size=2)) if p["zoom_range"] != (1.0, 1.0) else (1.0, 1.0)
    if theta == 0 and shift == (0, 0) and shear == 0 and zoom == (1.0, 1.0):
        return None
    return _affine_matrix(shape, theta, shift, shear, zoom)


def _flip_and_rotate(arrays, p, rng):
    """Exact flips and quarter turns, the same for every array."""
    flip_lr = p["horizontal_flip"] and rng.random() < 0.5
    flip_ud = p["vertical_flip"] and rng.random() < 0.5
    square = arrays[1].shape[0] == arrays[1].shape[1]
    turns = (int(rng.integers(4)) if square else 2 * int(rng.integers(2))) if p["rot90"] else 0
    axes = [axis for axis, flip in ((1, flip_lr), (0, flip_ud)) if flip]
    return [np.ascontiguousarray(np.rot90(np.flip(array, axes), turns)) for array in arrays]


def _change_grey_values(image, p, rng):
    """Random contrast (about the mean), brightness and gamma, on a [0, 1] scale."""
    contrast = _draw(rng, 1.0, p["contrast"])
    brightness = _draw(rng, 0.0, p["brightness"])
    gamma = _draw(rng, 1.0, p["gamma"])
    integer = np.issubdtype(image.dtype, np.integer)
    full = np.float32(np.iinfo(image.dtype).max if integer else 1.0)
    values = image.astype(np.float32) / full
    mean = values.mean()
    values = np.clip((values - mean) * np.float32(contrast) + np.float32(mean + brightness), 0.0, 1.0)
    values = values ** np.float32(gamma) if gamma != 1.0 else values
    return np.rint(values * full).astype(image.dtype) if integer else values.astype(image.dtype)


def random_transform(image, mask, rng, weights=None, **params):
    """Random augmentation, the same geometry for image, mask and weights.

    One resampling for the affine part and the elastic field together, then exact flips and quarter
    turns, then grey values of the image only. Returns (image, mask[, weights]) in the input shapes
    and dtypes. Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image, mask, weights : (H, W[, C]) image (floats in [0, 1]), its (H, W) labels, optional (H, W) weights
    rng : numpy.random.Generator, the source of every random number (a seed reproduces the result)
    **params : names of ``DEFAULT_PARAMS`` (e.g. ``**PAPER_PARAMS``), explained in the module docstring

    Examples
    --------
    >>> image = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    >>> random_transform(image, image > 4, np.random.default_rng(2), horizontal_flip=True)[0]  # flipped
    array([[3, 2, 1],
           [6, 5, 4]], dtype=uint8)
    """
    _check_rng(rng)
    p, image = _check_params(params), np.asarray(image)
    _check_grey_range(image, p)
    return _transform(image, mask, rng, weights, p=p)


def _transform(image, mask, rng, weights=None, *, p):
    """:func:`random_transform` with the parameters ``p`` that :func:`_check_params` returned."""
    shape = np.shape(mask)
    matrix = _draw_affine(p, shape, rng)
    elastic = p["elastic"] and p["elastic_sigma"] > 0
    field = _field(shape, rng, p["elastic_grid"], p["elastic_sigma"]) if elastic else None
    arrays = _warp(image, mask, weights, matrix, field, p["image_order"], p["fill_mode"])
    arrays = _flip_and_rotate(arrays, p, rng)
    if p["brightness"] or p["contrast"] or p["gamma"]:
        arrays[0] = _change_grey_values(arrays[0], p, rng)
    return tuple(arrays)


# --------------------------------------------------------------------------- Keras' elastic layer
def _keras_elastic_layer(seed, value_range=(0.0, 1.0), **kwargs):
    return keras.layers.RandomElasticTransform(
        factor=(1.0, 1.0), scale=(1.0, 1.0), value_range=value_range, seed=seed, **kwargs
    )


def keras_elastic_agreement(mask, seed, how="dict"):
    """Fraction of pixels where Keras' elastic transform keeps image and mask aligned.

    Warps a float copy of the binary ``mask`` (the image) and the mask with
    ``keras.layers.RandomElasticTransform`` (factor 1, scale 1) and compares ``image > 0.5`` with
    ``mask > 0.5``; the module docstring sums up the results. Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    mask, seed : (H, W) binary mask and the seed of the Keras layer(s)
    how : {"dict", "same_layer", "two_layers"}
        One call on ``{"images": ..., "segmentation_masks": ...}`` (Keras' documented way), one
        layer called on the image then the mask, or two layers built with the same seed.

    Returns
    -------
    float
        Agreement in [0, 1] (``random_transform``: 1 with a nearest image, about 0.995 cubic).
    """
    image = (np.asarray(mask) > 0).astype(np.float32)[None, ..., None]
    if how == "dict":
        out = _keras_elastic_layer(seed)({"images": image, "segmentation_masks": image.copy()})
        warped = out["images"], out["segmentation_masks"]
    elif how == "same_layer":
        layer = _keras_elastic_layer(seed)
        warped = layer(image), layer(image.copy())
    elif how == "two_layers":
        warped = (
            _keras_elastic_layer(seed)(image),
            _keras_elastic_layer(seed, interpolation="nearest")(image.copy()),
        )
    else:
        raise ValueError(f"how must be 'dict', 'same_layer' or 'two_layers', got {how!r}.")
    warped_image, warped_mask = (keras.ops.convert_to_numpy(a)[0, ..., 0] > 0.5 for a in warped)
    return float(np.mean(warped_image == warped_mask))


def keras_elastic_displacement(shape, seed):
    """Displacement field (dy, dx) that ``keras.layers.RandomElasticTransform`` applies.

    Warps images of the row and column coordinates with the layer (factor 1, scale 1,
    ``fill_mode="nearest"``) and subtracts them. Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    shape, seed : (H, W) of the image and the seed of the layer

    Returns
    -------
    dy, dx : (H, W) arrays of float32
        Away from the border dy equals dx on TensorFlow and JAX; on PyTorch they differ.
    """
    rows, cols = np.meshgrid(*(np.arange(int(n), dtype=np.float32) for n in shape), indexing="ij")
    layer = _keras_elastic_layer(seed, value_range=(-1e9, 1e9), fill_mode="nearest")
    warped = keras.ops.convert_to_numpy(layer(np.stack([rows, cols], axis=-1)[None]))[0]
    return warped[..., 0] - rows, warped[..., 1] - cols

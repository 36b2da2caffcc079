"""Data augmentation for segmentation: one geometry for image, mask and weight map.

The U-Net paper trains on 30 images and gets away with it because every
training tile is randomly shifted, rotated, flipped and, above all, elastically
deformed: "random displacement vectors on a coarse 3 by 3 grid", drawn from a
Gaussian with a 10-pixel standard deviation and interpolated bicubically to a
smooth per-pixel field. This module implements that recipe and the parameter
set of the old ``ImageDataGenerator`` tutorials with SciPy.

Two rules keep a mask aligned with its image:

* Every random number is drawn once, from one ``numpy.random.Generator``, and
  the same geometry is applied to the image (cubic or linear interpolation),
  the mask (nearest neighbour, so labels stay labels) and the weight map
  (linear, so weights stay non-negative).
* The affine part and the elastic field are composed into ONE coordinate map,
  so each array is resampled once: faster, and less blur than two passes.

Flips and 90-degree rotations are exact array operations, not resampling.

Coordinates are (row, col). A geometric transform maps each *output* pixel to
the *input* position it is read from, as in ``scipy.ndimage``.

Taught in chapter 2 (Augmentation); ``SegmentationDataset`` also serves the
training loops of chapters 3 and 4.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType

import keras
import numpy as np
from scipy import ndimage

from unet_tutorial import tiling

#: How training inputs are mirrored beyond the image border: without repeating the border
#: pixel (np.pad's "reflect", SciPy's "mirror"). Prediction (tiling.predict_tiled)
#: defaults to "symmetric"; both are mirror images of the tissue.
MIRROR_MODE = "reflect"

__all__ = [
    "AugmentParams",
    "LEGACY_PARAMS",
    "PAPER_PARAMS",
    "SegmentationDataset",
    "apply_affine",
    "displacement_field",
    "elastic_deform",
    "keras_elastic_agreement",
    "keras_elastic_displacement",
    "mirror_crop",
    "mirror_pad",
    "random_transform",
]

# SciPy's names for what happens beyond the border. "mirror" (d c b | a b c d | c b a)
# is the paper's choice; "reflect" repeats the edge pixel (d c b a | a b c d | d c b a).
FILL_MODES = ("mirror", "reflect", "nearest", "constant", "wrap")


# --------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random augmentations; all zero/False is the identity.

    Geometric fields follow the units of the legacy Keras ``ImageDataGenerator``
    so old recipes carry over unchanged.

    Parameters
    ----------
    rotation_range : float
        Rotation angle drawn uniformly from [-r, r] **degrees**.
    width_shift_range, height_shift_range : float
        Shift drawn uniformly from [-s, s]; a **fraction of the width/height**
        if s < 1, else pixels. (The legacy generator applies
        ``height_shift_range`` to columns and ``width_shift_range`` to rows;
        here height moves rows and width moves columns.)
    shear_range : float
        Shear angle drawn uniformly from [-s, s] **degrees**.
    zoom_range : float or (float, float)
        Zoom factors for rows and columns drawn independently from [1-z, 1+z]
        (or [lo, hi]). As in the legacy API a factor above 1 scales the
        sampling grid up, so the content shrinks (zooms out).
    horizontal_flip, vertical_flip : bool
        Flip left-right / up-down, each with probability 1/2.
    rot90 : bool
        Rotate by k*90 degrees, k uniform in {0, 1, 2, 3} (only {0, 2} if the
        image is not square, so the shape never changes).
    elastic : bool
        Add the paper's elastic deformation (see ``displacement_field``).
    elastic_grid : int
        Number of control points per axis of the coarse grid (paper: 3).
    elastic_sigma : float
        Standard deviation in pixels of the coarse displacements (paper: 10).
    brightness : float
        Grey-value shift drawn from [-b, b], a fraction of the full range
        (255 for uint8, 1 for float images, which must lie in [0, 1]).
    contrast : float
        Contrast factor drawn from [1-c, 1+c], applied around the image mean.
    gamma : float
        Gamma exponent drawn from [1-g, 1+g]; needs g < 1.
    fill_mode : {"mirror", "reflect", "nearest", "constant", "wrap"}
        How pixels beyond the border are filled (SciPy's modes).
    cval : float
        Fill value of the image when ``fill_mode="constant"``.
    mask_cval : int
        Fill value of the mask when ``fill_mode="constant"``. Weights are
        filled with 0 there, so padded pixels do not count in the loss.
    image_order : int
        Spline order for the image: 3 (cubic, default) or 1 (linear, what the
        legacy generator used). Masks always use 0, weights always 1.

    Notes
    -----
    Taught in chapter 2 (Augmentation).
    """

    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rot90: bool = False
    elastic: bool = False
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    fill_mode: str = "mirror"
    cval: float = 0.0
    mask_cval: int = 0
    image_order: int = 3

    def __post_init__(self):
        for name in ("rotation_range", "width_shift_range", "height_shift_range",
                     "shear_range", "elastic_sigma", "brightness", "contrast", "gamma"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        if self.contrast >= 1 or self.gamma >= 1:
            raise ValueError(
                f"contrast and gamma must be < 1 (factors are drawn from [1-r, 1+r]), "
                f"got contrast={self.contrast}, gamma={self.gamma}."
            )
        _zoom_bounds(self.zoom_range)  # validates
        _check_mode(self.fill_mode)
        _check_grid(self.elastic_grid)
        if self.image_order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"image_order must be a spline order 0..5, got {self.image_order!r}.")

    @classmethod
    def from_any(cls, params) -> "AugmentParams":
        """Build from an ``AugmentParams``, a mapping of field names, or None (identity)."""
        if params is None:
            return cls()
        if isinstance(params, cls):
            return params
        if isinstance(params, Mapping):
            unknown = sorted(set(params) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                valid = ", ".join(f.name for f in dataclasses.fields(cls))
                raise TypeError(f"Unknown augmentation parameter(s) {unknown}; valid names: {valid}.")
            return cls(**params)
        raise TypeError(
            f"Augmentation parameters must be an AugmentParams or a dict, got {type(params).__name__}."
        )


#: The recipe of the popular zhixuhao/unet Keras tutorial (ImageDataGenerator units:
#: degrees, fractions of the size, degrees, [1-z, 1+z]). image_order=1 reproduces the
#: generator's linear interpolation. Use as ``random_transform(img, mask, rng, **LEGACY_PARAMS)``.
LEGACY_PARAMS = MappingProxyType(dict(
    rotation_range=0.2,
    width_shift_range=0.05,
    height_shift_range=0.05,
    shear_range=0.05,
    zoom_range=0.05,
    horizontal_flip=True,
    fill_mode="nearest",
    image_order=1,
))

#: The paper's recipe: flips, 90-degree rotations, elastic deformation on a 3x3 grid
#: with 10-pixel displacements, mirrored borders and small grey-value changes.
PAPER_PARAMS = MappingProxyType(dict(
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
))


# --------------------------------------------------------------------------- validation
def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
            f"got {type(rng).__name__}; one Generator makes a seed reproduce a batch."
        )


def _check_mode(mode):
    if mode not in FILL_MODES:
        raise ValueError(f"fill mode must be one of {FILL_MODES}, got {mode!r}.")


def _check_grid(grid):
    if not isinstance(grid, numbers.Integral) or isinstance(grid, bool) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2 (control points per axis), got {grid!r}.")


def _zoom_bounds(zoom_range):
    if isinstance(zoom_range, numbers.Real) and not isinstance(zoom_range, bool):
        if not 0 <= zoom_range < 1:
            raise ValueError(f"zoom_range as a number must lie in [0, 1), got {zoom_range!r}.")
        return 1.0 - zoom_range, 1.0 + zoom_range
    if isinstance(zoom_range, (tuple, list)) and len(zoom_range) == 2:
        low, high = (float(v) for v in zoom_range)
        if 0 < low <= high:
            return low, high
    raise ValueError(f"zoom_range must be a number z or a pair (lo, hi) with 0 < lo <= hi, got {zoom_range!r}.")


def _check_arrays(image, mask, weights):
    """Return the inputs as arrays after checking shapes and dtypes."""
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}.")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"image must hold integers or floats, got dtype {image.dtype}.")
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"mask shape {mask.shape} must equal the image's (H, W) = {image.shape[:2]}; "
            "masks are 2-D label images without a channel axis (use mask[..., 0])."
        )
    if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.number)):
        raise TypeError(f"mask must hold integer labels, got dtype {mask.dtype}.")
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != mask.shape:
            raise ValueError(f"weights shape {weights.shape} must equal the mask shape {mask.shape}.")
        if not np.issubdtype(weights.dtype, np.number):
            raise TypeError(f"weights must be numeric, got dtype {weights.dtype}.")
    return image, mask, weights


def _result(image, mask, weights):
    return (image, mask) if weights is None else (image, mask, weights)


# --------------------------------------------------------------------------- geometry
@functools.lru_cache(maxsize=32)
def _spline_upsampler(n_out: int, grid: int, transposed: bool = False) -> np.ndarray:
    """(n_out, grid) matrix that cubic-spline interpolates ``grid`` points to ``n_out``.

    Column j is the upsampled j-th unit vector; since ``ndimage.zoom`` is linear and
    separable, ``U_rows @ coarse @ U_cols.T`` equals the 2-D bicubic zoom.
    ``transposed=True`` returns U.T as a contiguous array.
    """
    eye = np.eye(grid)
    columns = [ndimage.zoom(eye[j], n_out / grid, order=3, mode="mirror") for j in range(grid)]
    matrix = np.stack(columns, axis=0 if transposed else 1)
    if columns[0].shape[0] != n_out:  # float rounding in zoom's output size; never seen, but be sure
        raise RuntimeError(f"spline upsampling produced {columns[0].shape[0]} values, expected {n_out}.")
    matrix.setflags(write=False)
    return matrix


def displacement_field(shape, rng, grid=3, sigma=10.0):
    """Random smooth displacement field of the U-Net paper.

    Draws a (row, col) displacement for each node of a ``grid x grid`` lattice
    spanning the image corner to corner, from N(0, sigma**2) pixels, and
    interpolates each component bicubically to every pixel.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image.
    rng : numpy.random.Generator
        Source of randomness.
    grid : int
        Control points per axis (paper: 3).
    sigma : float
        Standard deviation of the node displacements in pixels (paper: 10).

    Returns
    -------
    dy, dx : ndarray of float64, shape (H, W)
        Row and column displacements; output pixel p is read from input
        position p + (dy, dx)[p].

    Notes
    -----
    Taught in chapter 2 (Augmentation).
    """
    _check_rng(rng)
    _check_grid(grid)
    if not isinstance(sigma, numbers.Real) or sigma < 0:
        raise ValueError(f"sigma must be a number >= 0 (pixels), got {sigma!r}.")
    height, width = _check_shape(shape)
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    rows = _spline_upsampler(height, grid)
    cols_t = _spline_upsampler(width, grid, transposed=True)
    return _outer_sum(rows @ coarse[0], cols_t), _outer_sum(rows @ coarse[1], cols_t)


def _outer_sum(left, right):
    """left @ right for a tiny inner dimension, without BLAS threads.

    OpenBLAS spreads this (H, 3) @ (3, W) product over threads, which on a busy
    machine costs more than the arithmetic; grid-many outer products do not.
    """
    out = np.multiply.outer(left[:, 0], right[0])
    for k in range(1, left.shape[1]):
        out += np.multiply.outer(left[:, k], right[k])
    return out


def _check_shape(shape):
    if len(shape) != 2 or any(not isinstance(n, numbers.Integral) or n < 1 for n in shape):
        raise ValueError(f"shape must be (H, W) with positive integers, got {shape!r}.")
    return int(shape[0]), int(shape[1])


def _affine_matrix(shape, theta=0.0, shift=(0.0, 0.0), shear=0.0, zoom=(1.0, 1.0)):
    """3x3 homogeneous (row, col) matrix mapping output to input coordinates.

    Built like the legacy ``apply_affine_transform`` (rotation @ shift @ shear @ zoom
    about the image centre, in (col, row) order, then permuted to (row, col)), so a
    given parameter set produces the legacy geometry on square images. ``shift``
    here moves the content by +shift pixels (the legacy tx/ty move it by -t).
    """
    height, width = shape
    angle, shear_angle = np.deg2rad(theta), np.deg2rad(shear)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    translation = np.array([[1.0, 0.0, -shift[1]], [0.0, 1.0, -shift[0]], [0.0, 0.0, 1.0]])
    shearing = np.array([[1.0, -np.sin(shear_angle), 0.0], [0.0, np.cos(shear_angle), 0.0], [0.0, 0.0, 1.0]])
    scaling = np.diag([zoom[1], zoom[0], 1.0])
    col_row = rotation @ translation @ shearing @ scaling
    centre = np.array([[1.0, 0.0, (width - 1) / 2], [0.0, 1.0, (height - 1) / 2], [0.0, 0.0, 1.0]])
    col_row = centre @ col_row @ np.linalg.inv(centre)
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return swap @ col_row @ swap


def _coordinates(shape, matrix, field):
    """Input coordinates of every output pixel: matrix @ (p + field(p))."""
    coords = np.empty((2, *shape))
    rows = np.add(np.arange(shape[0], dtype=np.float64)[:, None], field[0], out=coords[0])
    cols = np.add(np.arange(shape[1], dtype=np.float64)[None, :], field[1], out=coords[1])
    if matrix is None:
        return coords
    new_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2]
    coords[1] = matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2]
    coords[0] = new_rows
    return coords


def _warp(image, mask, weights, matrix, field, order, mode, cval=0.0, mask_cval=0):
    """Apply one geometry to all arrays: image with ``order``, mask nearest, weights linear."""
    if matrix is None and field is None:
        return _result(image.copy(), mask.copy(), None if weights is None else weights.copy())
    if field is not None:
        # build the coordinate map once and reuse it for every array and channel
        coords = _coordinates(mask.shape, matrix, field)
        resample = functools.partial(_map, coords=coords)
    else:
        resample = functools.partial(_affine, matrix=matrix)
    if image.ndim == 2:
        warped = resample(image, order=order, mode=mode, cval=cval)
    else:
        warped = np.stack([resample(image[..., c], order=order, mode=mode, cval=cval)
                           for c in range(image.shape[2])], axis=-1)
    new_image = _restore_image_dtype(warped, image, order)
    # nearest neighbour copies label values, so no new labels can appear
    labels = mask.view(np.uint8) if mask.dtype == bool else mask
    new_mask = resample(labels, order=0, mode=mode, cval=mask_cval, output=labels.dtype).astype(mask.dtype)
    new_weights = None
    if weights is not None:
        dtype = weights.dtype if np.issubdtype(weights.dtype, np.floating) else np.float32
        new_weights = resample(weights, order=1, mode=mode, cval=0.0).astype(dtype, copy=False)
    return _result(new_image, new_mask, new_weights)


def _map(array, coords, order, mode, cval, output=np.float64):
    return ndimage.map_coordinates(array, coords, order=order, mode=mode, cval=cval, output=output)


def _affine(array, matrix, order, mode, cval, output=np.float64):
    return ndimage.affine_transform(array, matrix[:2, :2], matrix[:2, 2], order=order,
                                    mode=mode, cval=cval, output=output)


def _restore_image_dtype(warped, original, order):
    """Undo spline overshoot and return the original dtype."""
    if np.issubdtype(original.dtype, np.integer):
        info = np.iinfo(original.dtype)
        return np.clip(np.rint(warped), info.min, info.max).astype(original.dtype)
    if order > 1 and original.size:
        # cubic splines overshoot at edges; keep the grey values inside the input's range
        warped = np.clip(warped, original.min(), original.max())
    return warped.astype(original.dtype, copy=False)


def apply_affine(image, mask, theta=0.0, shift=(0.0, 0.0), shear=0.0, zoom=(1.0, 1.0),
                 weights=None, order=3, mode="mirror", cval=0.0, mask_cval=0):
    """Apply one given affine transform (about the image centre) to image, mask and weights.

    The deterministic counterpart of ``random_transform``, useful to show each
    transform on its own.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Grey or colour image, integer or float.
    mask : ndarray, (H, W)
        Label image; resampled with nearest neighbour so no new labels appear.
    theta : float
        Rotation in degrees, counter-clockwise as displayed (90 equals ``np.rot90``).
    shift : (float, float)
        (rows, cols) shift in pixels; the content moves down/right by this much.
    shear : float
        Shear angle in degrees (legacy ``ImageDataGenerator`` convention).
    zoom : (float, float)
        (rows, cols) scale of the sampling grid; above 1 the content shrinks.
    weights : ndarray, (H, W), optional
        Weight map; resampled linearly.
    order : int
        Spline order for the image (3 cubic, 1 linear).
    mode : {"mirror", "reflect", "nearest", "constant", "wrap"}
        Border handling.
    cval, mask_cval : float, int
        Fill values of image and mask for ``mode="constant"`` (weights get 0).

    Returns
    -------
    tuple
        (image, mask) or (image, mask, weights), same shapes and dtypes.

    Notes
    -----
    Taught in chapter 2 (Augmentation).
    """
    image, mask, weights = _check_arrays(image, mask, weights)
    _check_mode(mode)
    matrix = _affine_matrix(mask.shape, theta, shift, shear, zoom)
    if np.allclose(matrix, np.eye(3)):
        matrix = None
    return _warp(image, mask, weights, matrix, None, order, mode, cval, mask_cval)


def elastic_deform(image, mask, rng, grid=3, sigma=10.0, order=3, mode="mirror", weights=None):
    """Elastic deformation of the U-Net paper, identical for image, mask and weights.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Grey or colour image, integer or float.
    mask : ndarray, (H, W)
        Label image, resampled with nearest neighbour (labels stay labels).
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same deformation.
    grid : int
        Control points per axis of the coarse grid (paper: 3).
    sigma : float
        Standard deviation of the node displacements in pixels (paper: 10).
    order : int
        Spline order for the image: 3 (bicubic) or 1 (linear).
    mode : {"mirror", "reflect", "nearest", "constant", "wrap"}
        Border handling; the paper mirrors.
    weights : ndarray, (H, W), optional
        Weight map, resampled linearly.

    Returns
    -------
    tuple
        (image, mask) or (image, mask, weights), same shapes and dtypes.

    Notes
    -----
    Taught in chapter 2 (Augmentation).
    """
    _check_rng(rng)
    image, mask, weights = _check_arrays(image, mask, weights)
    _check_mode(mode)
    field = displacement_field(mask.shape, rng, grid, sigma)
    if sigma == 0:
        field = None
    return _warp(image, mask, weights, None, field, order, mode)


# --------------------------------------------------------------------------- random_transform
def _draw_affine(p: AugmentParams, shape, rng):
    """Draw the affine parameters; None when every affine range is zero."""
    height, width = shape
    theta = rng.uniform(-p.rotation_range, p.rotation_range) if p.rotation_range else 0.0
    shift_rows = _draw_shift(p.height_shift_range, height, rng)
    shift_cols = _draw_shift(p.width_shift_range, width, rng)
    shear = rng.uniform(-p.shear_range, p.shear_range) if p.shear_range else 0.0
    low, high = _zoom_bounds(p.zoom_range)
    zoom = tuple(rng.uniform(low, high, size=2)) if (low, high) != (1.0, 1.0) else (1.0, 1.0)
    if theta == 0 and shift_rows == 0 and shift_cols == 0 and shear == 0 and zoom == (1.0, 1.0):
        return None
    return _affine_matrix(shape, theta, (shift_rows, shift_cols), shear, zoom)


def _draw_shift(fraction_or_pixels, size, rng):
    if not fraction_or_pixels:
        return 0.0
    shift = rng.uniform(-fraction_or_pixels, fraction_or_pixels)
    return shift * size if fraction_or_pixels < 1 else shift


def _flip_and_rotate(arrays, p: AugmentParams, rng):
    """Exact flips / 90-degree rotations, the same for every array."""
    flip_lr = p.horizontal_flip and rng.random() < 0.5
    flip_ud = p.vertical_flip and rng.random() < 0.5
    turns = 0
    if p.rot90:
        square = arrays[1].shape[0] == arrays[1].shape[1]
        turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    result = []
    for array in arrays:
        if flip_lr:
            array = np.flip(array, axis=1)
        if flip_ud:
            array = np.flip(array, axis=0)
        if turns:
            array = np.rot90(array, turns, axes=(0, 1))
        result.append(np.ascontiguousarray(array))
    return result


def _full_scale(image):
    return float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0


def _change_grey_values(image, p: AugmentParams, rng):
    """Random contrast, brightness and gamma on a [0, 1] scale (image only)."""
    contrast = rng.uniform(1 - p.contrast, 1 + p.contrast) if p.contrast else 1.0
    brightness = rng.uniform(-p.brightness, p.brightness) if p.brightness else 0.0
    gamma = rng.uniform(1 - p.gamma, 1 + p.gamma) if p.gamma else 1.0
    full = _full_scale(image)
    values = image.astype(np.float32) / np.float32(full)
    mean = values.mean()
    values = (values - mean) * np.float32(contrast) + np.float32(mean + brightness)
    np.clip(values, 0.0, 1.0, out=values)
    if gamma != 1.0:
        np.power(values, np.float32(gamma), out=values)
    if np.issubdtype(image.dtype, np.integer):
        return np.rint(values * np.float32(full)).astype(image.dtype)
    return values.astype(image.dtype)


def random_transform(image, mask, rng, weights=None, **params):
    """Random augmentation, the same geometry for image, mask and weights.

    Order: one resampling for the affine part (rotation, shift, shear, zoom)
    and the elastic field together, then exact flips / 90-degree rotations,
    then grey-value changes of the image only.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Integer or float image (float images in [0, 1] if grey values change).
    mask : ndarray, (H, W)
        Label image; resampled with nearest neighbour.
    rng : numpy.random.Generator
        Source of every random number, so a seed reproduces the result.
    weights : ndarray, (H, W), optional
        Weight map, resampled linearly.
    **params
        Fields of ``AugmentParams``, e.g. ``**LEGACY_PARAMS`` or
        ``**PAPER_PARAMS``. None given means the identity.

    Returns
    -------
    tuple
        (image, mask) or (image, mask, weights), same shapes and dtypes.

    Notes
    -----
    Taught in chapter 2 (Augmentation).
    """
    _check_rng(rng)
    p = AugmentParams.from_any(params)
    image, mask, weights = _check_arrays(image, mask, weights)
    grey = p.brightness or p.contrast or p.gamma
    if grey and np.issubdtype(image.dtype, np.floating) and image.size and (image.min() < 0 or image.max() > 1):
        raise ValueError(
            f"Grey-value changes expect float images in [0, 1], got values in "
            f"[{image.min():.3g}, {image.max():.3g}]; rescale the image or set brightness=contrast=gamma=0."
        )
    matrix = _draw_affine(p, mask.shape, rng)
    field = None
    if p.elastic and p.elastic_sigma > 0:
        field = displacement_field(mask.shape, rng, p.elastic_grid, p.elastic_sigma)
    arrays = _warp(image, mask, weights, matrix, field, p.image_order, p.fill_mode, p.cval, p.mask_cval)
    arrays = _flip_and_rotate(arrays, p, rng)
    if grey:
        arrays[0] = _change_grey_values(arrays[0], p, rng)
    return tuple(arrays)


# --------------------------------------------------------------------------- padding and crops
def mirror_pad(image, pad):
    """Mirror an image (or mask) beyond its border, as the paper's overlap-tile does.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
    pad : int or ((top, bottom), (left, right))
        Pixels added on each side of the two spatial axes.

    Returns
    -------
    ndarray
        Padded copy; the border pixel is not repeated (``np.pad`` mode "reflect",
        SciPy's "mirror").

    Notes
    -----
    Taught in chapter 2 (Augmentation), for the training crops. Chapter 6 mirrors with
    :func:`unet_tutorial.tiling.mirror_pad` directly, in its default "symmetric" mode.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}.")
    if isinstance(pad, numbers.Integral):
        widths = [(int(pad), int(pad))] * 2
    else:
        widths = [tuple(int(v) for v in side) for side in pad]
        if len(widths) != 2 or any(len(side) != 2 for side in widths):
            raise ValueError(f"pad must be an int or ((top, bottom), (left, right)), got {pad!r}.")
    if any(v < 0 for side in widths for v in side):
        raise ValueError(f"pad widths must be >= 0, got {pad!r}.")
    if min(image.shape[:2]) < 2 and any(v > 0 for side in widths for v in side):
        raise ValueError(f"cannot mirror an image of shape {image.shape}; it needs at least 2 pixels per axis.")
    (top, bottom), (left, right) = widths
    return tiling.mirror_pad(image, top, bottom, left, right, pad_mode=MIRROR_MODE)


def mirror_crop(image, top, left, size):
    """Crop a window that may extend beyond the image; outside pixels are mirrored.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
    top, left : int
        Position of the window's first pixel; may be negative.
    size : int or (int, int)
        Window (height, width).

    Returns
    -------
    ndarray
        The window, a new array. Equals ``mirror_pad(image, p)[top+p:..., left+p:...]``.

    Notes
    -----
    Taught in chapter 2 (Augmentation), for the valid network of chapter 4 (The full
    U-Net): its 572-pixel input around a 388-pixel label tile.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}.")
    height, width = tiling._pair(size, "size")
    top, left = int(top), int(left)
    if 0 <= top and top + height <= image.shape[0] and 0 <= left and left + width <= image.shape[1]:
        return image[top:top + height, left:left + width].copy()
    return tiling.mirror_window(image, top, left, height, width, pad_mode=MIRROR_MODE)


# --------------------------------------------------------------------------- Keras dataset
class SegmentationDataset(keras.utils.PyDataset):
    """Random, augmented training crops served to ``model.fit``.

    Each sample picks an image at random, a random ``output_size`` label window
    anywhere inside it (edges included) and the ``input_size`` window centred on
    it; input context beyond the image border is mirrored, as in the paper.
    The input window, its mask and weights are augmented together, then mask
    and weights are cropped to the centre ``output_size``.

    Parameters
    ----------
    images : sequence of ndarray, each (H, W) or (H, W, C), or one (N, H, W[, C]) array
        Integer images are scaled to [0, 1] by their dtype's maximum; float
        images are used as they are (scale them to [0, 1] first).
    masks : sequence of ndarray (H, W) or (N, H, W) array
        Labels matching the images.
    input_size : int or (int, int)
        Network input size, e.g. 572 for the valid U-Net.
    output_size : int or (int, int), optional
        Network output size, e.g. 388; default ``input_size`` (same padding).
    weights : sequence of ndarray (H, W), optional
        Pixel weight maps, returned as ``sample_weight``.
    batch_size : int
    steps_per_epoch : int, optional
        Batches per epoch; default ``ceil(len(images) / batch_size)``.
    augment : None, callable, AugmentParams or dict
        None: no augmentation. Parameters: ``random_transform`` with them.
        A callable is called as ``augment(image, mask, rng)`` (plus
        ``weights=w`` if weights are given) and must return the same tuple.
    seed : int
        Batch ``index`` of epoch ``e`` draws from
        ``SeedSequence([seed, e, index])``, so its content is reproducible and
        independent of worker order.
    binary : bool, optional
        True: ``y = mask > 0`` as float32 (B, out, out, 1) for a sigmoid
        output. False: ``y`` int32 (B, out, out) class indices for sparse
        categorical losses. Default: True if every mask holds only {0, 1} or
        {0, 255}.
    workers, use_multiprocessing, max_queue_size
        Passed to ``keras.utils.PyDataset``.

    Notes
    -----
    Batches are ``(x, y)`` or ``(x, y, w)``: x float32 (B, in, in, C), w
    float32 (B, out, out). ``on_epoch_end`` advances ``epoch`` so every epoch
    sees new crops.

    Taught in chapter 2 (Augmentation) and used to train in chapters 3 to 7.
    """

    def __init__(self, images, masks, input_size, output_size=None, weights=None, batch_size=1,
                 steps_per_epoch=None, augment=None, seed=0, binary=None, workers=1,
                 use_multiprocessing=False, max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        self.images = _as_list(images, "images", (2, 3))
        self.masks = _as_list(masks, "masks", (2,))
        self.weights = None if weights is None else _as_list(weights, "weights", (2,))
        self._check_pairs()
        self.input_size = tiling._pair(input_size, "input_size")
        self.output_size = self.input_size if output_size is None else tiling._pair(output_size, "output_size")
        self.margin = self._margin()
        self._check_sizes()
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        if steps_per_epoch is None:
            steps_per_epoch = math.ceil(len(self.images) / self.batch_size)
        if not isinstance(steps_per_epoch, numbers.Integral) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}.")
        self.steps_per_epoch = int(steps_per_epoch)
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.seed = int(seed)
        self.epoch = 0
        self.augment = self._resolve_augment(augment)
        self.binary = self._resolve_binary(binary)
        self.channels = 1 if self.images[0].ndim == 2 else self.images[0].shape[2]

    # -- validation helpers
    def _check_pairs(self):
        if len(self.images) != len(self.masks):
            raise ValueError(f"got {len(self.images)} images but {len(self.masks)} masks.")
        if self.weights is not None and len(self.weights) != len(self.masks):
            raise ValueError(f"got {len(self.masks)} masks but {len(self.weights)} weight maps.")
        channels = {1 if im.ndim == 2 else im.shape[2] for im in self.images}
        if len(channels) > 1:
            raise ValueError(f"all images need the same number of channels, got {sorted(channels)}.")
        for i, (image, mask) in enumerate(zip(self.images, self.masks)):
            if image.shape[:2] != mask.shape:
                raise ValueError(f"image {i} has shape {image.shape[:2]} but its mask {mask.shape}.")
            if self.weights is not None and self.weights[i].shape != mask.shape:
                raise ValueError(f"weight map {i} has shape {self.weights[i].shape}, its mask {mask.shape}.")

    def _margin(self):
        extra = [i - o for i, o in zip(self.input_size, self.output_size)]
        if any(e < 0 or e % 2 for e in extra):
            raise ValueError(
                f"input_size {self.input_size} must exceed output_size {self.output_size} by an even "
                "number of pixels (the label window sits at the centre of the input)."
            )
        return extra[0] // 2, extra[1] // 2

    def _check_sizes(self):
        for i, mask in enumerate(self.masks):
            if mask.shape[0] < self.output_size[0] or mask.shape[1] < self.output_size[1]:
                raise ValueError(
                    f"image {i} ({mask.shape}) is smaller than output_size {self.output_size}; "
                    "use a smaller crop or pad the image first (mirror_pad)."
                )

    def _resolve_augment(self, augment):
        if augment is None or callable(augment):
            return augment
        params = AugmentParams.from_any(augment)
        return functools.partial(_random_transform_params, params=params)

    def _resolve_binary(self, binary):
        values = np.unique(np.concatenate([np.unique(m) for m in self.masks]))
        if binary is None:
            binary = bool(np.all(np.isin(values, [0, 1])) or np.all(np.isin(values, [0, 255])))
        if not binary:
            integral = np.issubdtype(values.dtype, np.integer) or np.all(values == np.round(values))
            if values.dtype == bool or not integral or values.min() < 0:
                raise ValueError(
                    f"multi-class masks need non-negative integer labels, got values {values[:10]}; "
                    "pass binary=True for a foreground/background mask."
                )
        return bool(binary)

    # -- PyDataset interface
    def __len__(self):
        return self.steps_per_epoch

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches.")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))
        samples = [self._sample(rng) for _ in range(self.batch_size)]
        x = np.stack([s[0] for s in samples])
        y = np.stack([s[1] for s in samples])
        if self.weights is None:
            return x, y
        return x, y, np.stack([s[2] for s in samples])

    def _sample(self, rng):
        i = int(rng.integers(len(self.images)))
        height, width = self.masks[i].shape
        top = int(rng.integers(height - self.output_size[0] + 1)) - self.margin[0]
        left = int(rng.integers(width - self.output_size[1] + 1)) - self.margin[1]
        arrays = [mirror_crop(self.images[i], top, left, self.input_size),
                  mirror_crop(self.masks[i], top, left, self.input_size)]
        if self.weights is not None:
            arrays.append(mirror_crop(self.weights[i], top, left, self.input_size))
        if self.augment is not None:
            arrays = self._augmented(arrays, rng)
        return self._to_batch_item(arrays)

    def _augmented(self, arrays, rng):
        if len(arrays) == 3:
            result = self.augment(arrays[0], arrays[1], rng, weights=arrays[2])
        else:
            result = self.augment(arrays[0], arrays[1], rng)
        if len(result) != len(arrays) or any(np.shape(r)[:2] != a.shape[:2] for r, a in zip(result, arrays)):
            raise ValueError(
                "augment must return (image, mask[, weights]) with unchanged (H, W); "
                f"got {len(result)} arrays of shapes {[np.shape(r) for r in result]}."
            )
        return list(result)

    def _to_batch_item(self, arrays):
        image = arrays[0]
        x = image.astype(np.float32) / np.float32(_full_scale(image))
        if x.ndim == 2:
            x = x[..., None]
        mask = tiling.center_crop(arrays[1], self.output_size)
        y = (mask > 0).astype(np.float32)[..., None] if self.binary else mask.astype(np.int32)
        item = [x, y]
        if len(arrays) == 3:
            item.append(tiling.center_crop(arrays[2], self.output_size).astype(np.float32))
        return item


def _random_transform_params(image, mask, rng, weights=None, params=None):
    return random_transform(image, mask, rng, weights=weights, **dataclasses.asdict(params))


def _as_list(arrays, name, ndims):
    if isinstance(arrays, np.ndarray):
        if arrays.ndim - 1 not in ndims:
            raise ValueError(f"{name} as one array must have shape (N, H, W{', C' if 3 in ndims else ''}), "
                             f"got {arrays.shape}.")
        arrays = list(arrays)
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError(f"{name} is empty.")
    for i, a in enumerate(arrays):
        if a.ndim not in ndims:
            raise ValueError(f"{name}[{i}] must have {' or '.join(f'{n}' for n in ndims)} dimensions, "
                             f"got shape {a.shape}.")
    return arrays


# --------------------------------------------------------------------------- keras.layers.RandomElasticTransform
def _keras_elastic_layer(seed, **kwargs):
    return keras.layers.RandomElasticTransform(
        factor=(1.0, 1.0), scale=(1.0, 1.0), value_range=(0.0, 1.0), seed=seed, **kwargs)


def keras_elastic_agreement(mask, seed, how="dict"):
    """Fraction of pixels where Keras' elastic transform keeps image and mask aligned.

    Feeds ``keras.layers.RandomElasticTransform`` (factor 1, scale 1) an image
    that is a float copy of the binary ``mask`` and the mask itself, then
    compares ``image > 0.5`` with ``mask > 0.5`` pixel by pixel. With our
    ``random_transform`` this is 100 % when the image is resampled with nearest
    interpolation too, and about 99.5 % with a cubic image on ISBI labels (the rest
    are edge pixels of thin membranes where cubic and nearest round differently).

    Parameters
    ----------
    mask : ndarray, (H, W)
        Binary mask (non-zero = foreground).
    seed : int
        Seed of the Keras layer(s).
    how : {"dict", "same_layer", "two_layers"}
        "dict": one call with ``{"images": ..., "segmentation_masks": ...}``,
        Keras' documented way to transform both. "same_layer": one layer
        called on the image, then on the mask. "two_layers": two layers
        built with the same seed, one per array.

    Returns
    -------
    float
        Agreement in [0, 1].

    Notes
    -----
    Measured with Keras 3.15 (TensorFlow backend) on ISBI labels: "dict" and
    "same_layer" give 70-80 %, because the layer's seed generator advances
    between the two resamplings, so image and mask get different fields;
    "two_layers" shares one field (over 99 %; the rest is bilinear vs nearest
    at label edges). Every variant draws the row and column displacements
    from the same seed, so they are equal (see ``keras_elastic_displacement``):
    pixels only move along the diagonal. The same holds on JAX. On PyTorch (Keras
    3.15.1, torch 2.13) the seed does not fix the field: "two_layers" misaligns too,
    and the row and column shifts are independent.

    Taught in chapter 2 (Augmentation).
    """
    binary = (np.asarray(mask) > 0).astype(np.float32)
    if binary.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {binary.shape}.")
    image = binary[None, ..., None].copy()
    labels = binary[None, ..., None].copy()
    if how == "dict":
        out = _keras_elastic_layer(seed)({"images": image, "segmentation_masks": labels})
        warped_image, warped_mask = out["images"], out["segmentation_masks"]
    elif how == "same_layer":
        layer = _keras_elastic_layer(seed)
        warped_image, warped_mask = layer(image), layer(labels)
    elif how == "two_layers":
        warped_image = _keras_elastic_layer(seed)(image)
        warped_mask = _keras_elastic_layer(seed, interpolation="nearest")(labels)
    else:
        raise ValueError(f"how must be 'dict', 'same_layer' or 'two_layers', got {how!r}.")
    warped_image = keras.ops.convert_to_numpy(warped_image)[0, ..., 0]
    warped_mask = keras.ops.convert_to_numpy(warped_mask)[0, ..., 0]
    return float(np.mean((warped_image > 0.5) == (warped_mask > 0.5)))


def keras_elastic_displacement(shape, seed):
    """Displacement field (dy, dx) that ``keras.layers.RandomElasticTransform`` applies.

    Warps images of the row and column coordinates with the layer (factor 1,
    scale 1, ``fill_mode="nearest"``) and subtracts the originals, so the
    chapter can draw the Keras field next to ``displacement_field``.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image.
    seed : int
        Seed of the layer.

    Returns
    -------
    dy, dx : ndarray of float32, shape (H, W)
        Away from the border (where ``nearest`` clamps) dy equals dx on the
        TensorFlow and JAX backends; on PyTorch they differ, and so does every call.

    Notes
    -----
    Taught in chapter 2 (Augmentation).
    """
    height, width = _check_shape(shape)
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    layer = keras.layers.RandomElasticTransform(
        factor=(1.0, 1.0), scale=(1.0, 1.0), value_range=(-1e9, 1e9), fill_mode="nearest", seed=seed)
    warped = keras.ops.convert_to_numpy(layer(np.stack([rows, cols], axis=-1)[None]))[0]
    return warped[..., 0] - rows, warped[..., 1] - cols

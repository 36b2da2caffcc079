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

#: The parameters of ``random_transform`` and their defaults, which change nothing.
#: Geometric ranges use the units of the legacy Keras ``ImageDataGenerator``.
DEFAULT_PARAMS = MappingProxyType(dict(
    rotation_range=0.0,      # angle drawn from [-r, r] degrees
    width_shift_range=0.0,   # column shift from [-s, s]: a fraction of the width if s < 1, else pixels
    height_shift_range=0.0,  # row shift, likewise (the legacy generator swaps width and height)
    shear_range=0.0,         # shear angle drawn from [-s, s] degrees
    zoom_range=0.0,          # z or (lo, hi): row and column factors from [1-z, 1+z]; > 1 zooms out
    horizontal_flip=False,   # flip left-right with probability 1/2
    vertical_flip=False,     # flip up-down with probability 1/2
    rot90=False,             # k quarter turns, k from {0, 1, 2, 3} ({0, 2} if not square)
    elastic=False,           # the paper's elastic deformation (see displacement_field)
    elastic_grid=3,          # control points per axis of the coarse grid (paper: 3)
    elastic_sigma=10.0,      # standard deviation of the node displacements in pixels (paper: 10)
    brightness=0.0,          # grey-value shift from [-b, b], a fraction of the full range
    contrast=0.0,            # contrast factor from [1-c, 1+c], around the image mean; c < 1
    gamma=0.0,               # gamma exponent from [1-g, 1+g]; g < 1
    fill_mode="mirror",      # beyond the border, one of FILL_MODES ("constant" fills with 0)
    image_order=3,           # spline order of the image: 3 cubic, 1 linear; masks 0, weights 1
))

#: The recipe of the popular zhixuhao/unet Keras tutorial; image_order=1 is the legacy
#: generator's linear interpolation. Use as ``random_transform(img, mask, rng, **LEGACY_PARAMS)``.
LEGACY_PARAMS = MappingProxyType(dict(
    rotation_range=0.2, width_shift_range=0.05, height_shift_range=0.05, shear_range=0.05,
    zoom_range=0.05, horizontal_flip=True, fill_mode="nearest", image_order=1,
))

#: The paper's recipe: flips, 90-degree rotations, elastic deformation on a 3x3 grid
#: with 10-pixel displacements, mirrored borders and small grey-value changes.
PAPER_PARAMS = MappingProxyType(dict(
    horizontal_flip=True, vertical_flip=True, rot90=True, elastic=True, elastic_grid=3,
    elastic_sigma=10.0, brightness=0.05, contrast=0.1, gamma=0.1, fill_mode="mirror", image_order=3,
))


def _check_params(params):
    """``DEFAULT_PARAMS`` updated with ``params``, after checking the names and the likely mistakes."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise TypeError(f"Unknown augmentation parameter(s) {unknown}; "
                        f"valid names: {', '.join(DEFAULT_PARAMS)}.")
    p = {**DEFAULT_PARAMS, **params}
    for name in ("contrast", "gamma"):
        if not 0 <= p[name] < 1:
            raise ValueError(f"{name} must lie in [0, 1) (factors from [1-r, 1+r]), got {p[name]!r}.")
    zoom = p["zoom_range"]
    p["zoom_range"] = (1.0 - zoom, 1.0 + zoom) if np.isscalar(zoom) else tuple(map(float, zoom))
    if not (len(p["zoom_range"]) == 2 and 0 < p["zoom_range"][0] <= p["zoom_range"][1]):
        raise ValueError(f"zoom_range must be a number in [0, 1) or a pair (lo, hi) with 0 < lo <= hi, "
                         f"got {zoom!r}.")
    _check_mode(p["fill_mode"])
    return p


def _check_mode(mode):
    if mode not in FILL_MODES:
        raise ValueError(f"fill mode must be one of {FILL_MODES}, got {mode!r}.")


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), got "
                        f"{type(rng).__name__}; one Generator makes a seed reproduce a batch.")


def _check_arrays(image, mask, weights):
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}.")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} must equal the image's (H, W) = {image.shape[:2]}; "
                         "masks are 2-D label images without a channel axis (use mask[..., 0]).")
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != mask.shape:
            raise ValueError(f"weights shape {weights.shape} must equal the mask shape {mask.shape}.")
    return image, mask, weights


# --------------------------------------------------------------------------- elastic deformation
@functools.lru_cache(maxsize=32)  # 3 ms a call at 572 px; training crops share a few sizes
def _spline_upsampler(n_out, grid):
    """(n_out, grid) matrix U whose column j is the bicubic zoom of unit vector j (read-only).

    ``ndimage.zoom`` is linear and separable, so ``U_rows @ coarse @ U_cols.T`` is the 2-D zoom.
    """
    columns = [ndimage.zoom(np.eye(grid)[j], n_out / grid, order=3, mode="mirror") for j in range(grid)]
    matrix = np.stack(columns, axis=1)
    matrix.setflags(write=False)
    return matrix


def _outer_sum(left, right):
    """``left @ right`` for a tiny inner dimension as a sum of outer products (no BLAS threads)."""
    out = np.multiply.outer(left[:, 0], right[0])
    for k in range(1, left.shape[1]):
        out += np.multiply.outer(left[:, k], right[k])
    return out


def displacement_field(shape, rng, grid=3, sigma=10.0):
    """Random smooth displacement field of the U-Net paper's elastic deformation.

    Draws a (row, col) displacement from N(0, sigma**2) pixels for each node of a
    ``grid`` x ``grid`` lattice spanning the image corner to corner, then interpolates
    each component bicubically to every pixel: ``ndimage.zoom(nodes, (H / grid, W / grid),
    order=3, mode="mirror")``, computed as two small matrix products. Taught in chapter 2
    (Augmentation).

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image.
    rng : numpy.random.Generator
    grid : int
        Control points per axis (paper: 3).
    sigma : float
        Standard deviation of the node displacements in pixels (paper: 10).

    Returns
    -------
    dy, dx : ndarray of float64, shape (H, W)
        Output pixel p is read from input position p + (dy, dx)[p].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fields = np.array([displacement_field((5, 7), rng) for _ in range(500)])  # 500 x (dy, dx)
    >>> fields.shape[2:], bool(abs(fields.mean()) < 0.5)  # (H, W), mean zero
    ((5, 7), True)
    """
    _check_rng(rng)
    height, width = (int(n) for n in shape)
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    rows = _spline_upsampler(height, grid)
    cols_t = np.ascontiguousarray(_spline_upsampler(width, grid).T)  # contiguous rows: faster outer products
    return _outer_sum(rows @ coarse[0], cols_t), _outer_sum(rows @ coarse[1], cols_t)


# --------------------------------------------------------------------------- resampling
def _affine_matrix(shape, theta=0.0, shift=(0.0, 0.0), shear=0.0, zoom=(1.0, 1.0)):
    """3x3 homogeneous (row, col) matrix mapping output to input coordinates.

    The legacy ``apply_affine_transform``'s rotation @ shift @ shear @ zoom about the centre, in
    (col, row) order; ``shift`` moves the content by +shift pixels (the legacy tx, ty by -t).
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
    """Input (row, col) of every output pixel p: ``matrix @ (p + field(p))``."""
    coords = np.empty((2, *shape))
    rows = np.add(np.arange(shape[0], dtype=np.float64)[:, None], field[0], out=coords[0])
    cols = np.add(np.arange(shape[1], dtype=np.float64)[None, :], field[1], out=coords[1])
    if matrix is not None:
        new_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2]
        coords[1] = matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2]
        coords[0] = new_rows
    return coords


def _warp(image, mask, weights, matrix, field, order, mode):
    """Resample image (spline ``order``), mask (nearest), weights (linear) by ``matrix`` and/or ``field``."""
    arrays = (image, mask) if weights is None else (image, mask, weights)
    if matrix is None and field is None:
        return tuple(array.copy() for array in arrays)
    coords = None if field is None else _coordinates(mask.shape, matrix, field)

    def resample(array, order, output=np.float64):
        if coords is None:
            return ndimage.affine_transform(array, matrix[:2, :2], matrix[:2, 2], order=order, mode=mode,
                                            output=output)
        return ndimage.map_coordinates(array, coords, order=order, mode=mode, output=output)

    if image.ndim == 2:
        warped = resample(image, order)
    else:
        warped = np.stack([resample(image[..., c], order) for c in range(image.shape[2])], axis=-1)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        warped = np.clip(np.rint(warped), info.min, info.max)
    elif order > 1 and image.size:  # cubic splines overshoot at edges: stay in the input's range
        warped = np.clip(warped, image.min(), image.max())
    result = [warped.astype(image.dtype, copy=False)]
    labels = mask.view(np.uint8) if mask.dtype == bool else mask  # nearest copies labels: none are new
    result.append(resample(labels, 0, output=labels.dtype).astype(mask.dtype))
    if weights is not None:
        dtype = weights.dtype if np.issubdtype(weights.dtype, np.floating) else np.float32
        result.append(resample(weights, 1).astype(dtype, copy=False))
    return tuple(result)


def apply_affine(image, mask, theta=0.0, shift=(0.0, 0.0), shear=0.0, zoom=(1.0, 1.0),
                 weights=None, order=3, mode="mirror"):
    """Apply one given affine transform, about the image centre, to image, mask and weights.

    The deterministic counterpart of ``random_transform``, to show each transform alone.

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Integer or float image.
    mask : ndarray, (H, W)
        Labels, resampled with nearest neighbour so no new labels appear.
    theta : float
        Rotation in degrees, counter-clockwise as displayed (90 equals ``np.rot90``).
    shift : (float, float)
        (rows, cols) in pixels; the content moves down/right by this much.
    shear : float
        Shear angle in degrees (legacy ``ImageDataGenerator`` convention).
    zoom : (float, float)
        (rows, cols) scale of the sampling grid; above 1 the content shrinks.
    weights : ndarray, (H, W), optional
        Weight map, resampled linearly.
    order : int
        Spline order for the image (3 cubic, 1 linear).
    mode : {"mirror", "reflect", "nearest", "constant", "wrap"}
        Border handling ("constant" fills with 0).

    Returns
    -------
    tuple
        (image, mask) or (image, mask, weights), same shapes and dtypes.

    Examples
    --------
    The default parameters are the identity:

    >>> image = np.arange(9.0).reshape(3, 3)
    >>> mask = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]], np.uint8)
    >>> out_image, out_mask = apply_affine(image, mask)
    >>> np.array_equal(out_image, image), np.array_equal(out_mask, mask)
    (True, True)

    A quarter turn moves the top-left label to the bottom left, as ``np.rot90`` does:

    >>> apply_affine(image, mask, theta=90)[1]
    array([[0, 0, 0],
           [0, 0, 0],
           [1, 0, 0]], dtype=uint8)
    """
    image, mask, weights = _check_arrays(image, mask, weights)
    _check_mode(mode)
    matrix = _affine_matrix(mask.shape, theta, shift, shear, zoom)
    return _warp(image, mask, weights, None if np.allclose(matrix, np.eye(3)) else matrix, None,
                 order, mode)


def elastic_deform(image, mask, rng, grid=3, sigma=10.0, order=3, mode="mirror", weights=None):
    """The U-Net paper's elastic deformation, identical for image, mask and weights.

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Integer or float image.
    mask : ndarray, (H, W)
        Labels, resampled with nearest neighbour (labels stay labels).
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same deformation.
    grid, sigma
        As in ``displacement_field`` (paper: 3 nodes per axis, 10 pixels).
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

    Examples
    --------
    Interpolation invents no grey values in a flat image:

    >>> flat = np.full((6, 6), 7, np.uint8)
    >>> out_image, out_mask = elastic_deform(flat, flat > 0, np.random.default_rng(0))
    >>> np.unique(out_image), out_mask.dtype
    (array([7], dtype=uint8), dtype('bool'))
    """
    _check_rng(rng)
    image, mask, weights = _check_arrays(image, mask, weights)
    _check_mode(mode)
    field = displacement_field(mask.shape, rng, grid, sigma)
    return _warp(image, mask, weights, None, None if sigma == 0 else field, order, mode)


# --------------------------------------------------------------------------- random_transform
def _draw_affine(p, shape, rng):
    """Draw rotation, shift, shear and zoom; None when every affine range is zero."""
    theta = rng.uniform(-p["rotation_range"], p["rotation_range"]) if p["rotation_range"] else 0.0
    shift = (_draw_shift(p["height_shift_range"], shape[0], rng),
             _draw_shift(p["width_shift_range"], shape[1], rng))
    shear = rng.uniform(-p["shear_range"], p["shear_range"]) if p["shear_range"] else 0.0
    low, high = p["zoom_range"]
    zoom = tuple(rng.uniform(low, high, size=2)) if (low, high) != (1.0, 1.0) else (1.0, 1.0)
    if theta == 0 and shift == (0, 0) and shear == 0 and zoom == (1.0, 1.0):
        return None
    return _affine_matrix(shape, theta, shift, shear, zoom)


def _draw_shift(fraction_or_pixels, size, rng):
    if not fraction_or_pixels:
        return 0.0
    shift = rng.uniform(-fraction_or_pixels, fraction_or_pixels)
    return shift * size if fraction_or_pixels < 1 else shift


def _flip_and_rotate(arrays, p, rng):
    """Exact flips and quarter turns, the same for every array."""
    flip_lr = p["horizontal_flip"] and rng.random() < 0.5
    flip_ud = p["vertical_flip"] and rng.random() < 0.5
    turns = 0
    if p["rot90"]:
        height, width = arrays[1].shape
        turns = int(rng.integers(4)) if height == width else 2 * int(rng.integers(2))
    result = []
    for array in arrays:
        array = np.flip(array, axis=1) if flip_lr else array
        array = np.flip(array, axis=0) if flip_ud else array
        result.append(np.ascontiguousarray(np.rot90(array, turns, axes=(0, 1)) if turns else array))
    return result


def _change_grey_values(image, p, rng):
    """Random contrast, brightness and gamma on a [0, 1] scale."""
    contrast = rng.uniform(1 - p["contrast"], 1 + p["contrast"]) if p["contrast"] else 1.0
    brightness = rng.uniform(-p["brightness"], p["brightness"]) if p["brightness"] else 0.0
    gamma = rng.uniform(1 - p["gamma"], 1 + p["gamma"]) if p["gamma"] else 1.0
    integer = np.issubdtype(image.dtype, np.integer)
    full = np.float32(np.iinfo(image.dtype).max if integer else 1.0)
    values = image.astype(np.float32) / full
    mean = values.mean()
    values = (values - mean) * np.float32(contrast) + np.float32(mean + brightness)
    np.clip(values, 0.0, 1.0, out=values)
    if gamma != 1.0:
        np.power(values, np.float32(gamma), out=values)
    return np.rint(values * full).astype(image.dtype) if integer else values.astype(image.dtype)


def random_transform(image, mask, rng, weights=None, **params):
    """Random augmentation, the same geometry for image, mask and weights.

    One resampling for the affine part (rotation, shift, shear, zoom) and the elastic
    field together, then exact flips and quarter turns, then grey-value changes of the
    image only. Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Integer or float image (floats in [0, 1] if grey values change).
    mask : ndarray, (H, W)
        Labels, resampled with nearest neighbour.
    rng : numpy.random.Generator
        Source of every random number: a seed reproduces the result.
    weights : ndarray, (H, W), optional
        Weight map, resampled linearly.
    **params
        Names of ``DEFAULT_PARAMS`` (e.g. ``**PAPER_PARAMS``); the others keep their default.

    Returns
    -------
    tuple
        (image, mask) or (image, mask, weights), same shapes and dtypes.

    Examples
    --------
    >>> image = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    >>> flipped = random_transform(image, image > 4, np.random.default_rng(2), horizontal_flip=True)
    >>> [array.tolist() for array in flipped]  # seed 2 flips, image and mask together
    [[[3, 2, 1], [6, 5, 4]], [[False, False, False], [True, True, False]]]
    """
    _check_rng(rng)
    p = _check_params(params)
    image, mask, weights = _check_arrays(image, mask, weights)
    grey = p["brightness"] or p["contrast"] or p["gamma"]
    if grey and np.issubdtype(image.dtype, np.floating) and (image.min() < 0 or image.max() > 1):
        raise ValueError(f"Grey-value changes expect float images in [0, 1], got values in "
                         f"[{image.min():.3g}, {image.max():.3g}]; rescale the image or set "
                         "brightness=contrast=gamma=0.")
    matrix = _draw_affine(p, mask.shape, rng)
    elastic = p["elastic"] and p["elastic_sigma"] > 0
    field = displacement_field(mask.shape, rng, p["elastic_grid"], p["elastic_sigma"]) if elastic else None
    arrays = _warp(image, mask, weights, matrix, field, p["image_order"], p["fill_mode"])
    arrays = _flip_and_rotate(arrays, p, rng)
    if grey:
        arrays[0] = _change_grey_values(arrays[0], p, rng)
    return tuple(arrays)


# --------------------------------------------------------------------------- Keras' elastic layer
def _keras_elastic_layer(seed, **kwargs):
    return keras.layers.RandomElasticTransform(
        factor=(1.0, 1.0), scale=(1.0, 1.0), value_range=(0.0, 1.0), seed=seed, **kwargs)


def keras_elastic_agreement(mask, seed, how="dict"):
    """Fraction of pixels where Keras' elastic transform keeps image and mask aligned.

    Feeds ``keras.layers.RandomElasticTransform`` (factor 1, scale 1) an image that is a
    float copy of the binary ``mask`` and the mask itself, then compares ``image > 0.5``
    with ``mask > 0.5`` pixel by pixel. ``random_transform`` gives 100 % with a nearest
    image and about 99.5 % with a cubic one on ISBI labels (edge pixels of thin membranes).

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    mask : ndarray, (H, W)
        Binary mask (non-zero = foreground).
    seed : int
        Seed of the Keras layer(s).
    how : {"dict", "same_layer", "two_layers"}
        "dict": one call with ``{"images": ..., "segmentation_masks": ...}``, Keras'
        documented way. "same_layer": one layer called on the image, then on the mask.
        "two_layers": two layers built with the same seed, one per array.

    Returns
    -------
    float
        Agreement in [0, 1].

    Notes
    -----
    Measured with Keras 3.15 (TensorFlow backend) on ISBI labels: "dict" and
    "same_layer" give 70-80 %, because the layer's seed generator advances between the
    two resamplings; "two_layers" shares one field (over 99 %). Every variant draws the
    row and column displacements from the same seed, so they are equal (see
    ``keras_elastic_displacement``): pixels only move along the diagonal. The same holds
    on JAX. On PyTorch (Keras 3.15.1, torch 2.13) the seed does not fix the field:
    "two_layers" misaligns too, and the row and column shifts are independent.
    """
    binary = (np.asarray(mask) > 0).astype(np.float32)
    if binary.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {binary.shape}.")
    image, labels = binary[None, ..., None].copy(), binary[None, ..., None].copy()
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

    Warps images of the row and column coordinates with the layer (factor 1, scale 1,
    ``fill_mode="nearest"``) and subtracts the originals, so the chapter can draw the
    Keras field next to ``displacement_field``.

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image.
    seed : int
        Seed of the layer.

    Returns
    -------
    dy, dx : ndarray of float32, shape (H, W)
        Away from the border (where ``nearest`` clamps) dy equals dx on the TensorFlow
        and JAX backends; on PyTorch they differ, and so does every call.
    """
    height, width = (int(n) for n in shape)
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32),
                             indexing="ij")
    layer = keras.layers.RandomElasticTransform(
        factor=(1.0, 1.0), scale=(1.0, 1.0), value_range=(-1e9, 1e9), fill_mode="nearest", seed=seed)
    warped = keras.ops.convert_to_numpy(layer(np.stack([rows, cols], axis=-1)[None]))[0]
    return warped[..., 0] - rows, warped[..., 1] - cols

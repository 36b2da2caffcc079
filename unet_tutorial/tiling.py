"""Overlap-tile prediction and test-time augmentation.

Taught in chapter 6 (Overlap-tile on Colab GPUs).

A valid U-Net loses a fixed border (its *context*: 92 pixels per side at depth 4). The
paper mirrors the image at its borders, cuts input tiles whose outputs cover the image
and stitches the outputs; the result equals one pass over the whole mirrored image when
the output tiles start on the *pooling grid* (multiples of ``2**depth``). A 'same' U-Net
keeps the size; its tiles overlap by a *margin* that is thrown away.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from unet_tutorial import data

__all__ = [
    "TilePlan",
    "center_crop",
    "mirror_pad",
    "mirror_window",
    "plan_tiles",
    "predict_tiled",
    "naive_tiled",
    "dihedral_transforms",
]

_PAD_MODES = ("symmetric", "reflect")
_PAPER_OUTPUT = 388  # the paper's output tile (572 in, at depth 4)
_SAME_TILE = 512


# --------------------------------------------------------------- sizes and centre crops


def _pair(size, name):
    """``n`` or ``(h, w)`` as a pair of positive ints; ``name`` goes into the error message."""
    if isinstance(size, numbers.Integral):
        size = (size, size)
    pair = isinstance(size, (tuple, list)) and len(size) == 2
    if not pair or not all(isinstance(v, numbers.Integral) and v >= 1 for v in size):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of them, got {size!r}.")
    return int(size[0]), int(size[1])


def center_crop(array, size):
    """Crop the centre ``size`` window of the first two axes (where a valid U-Net's output sits).

    Taught in chapter 2 (Augmentation), for the valid network of chapter 4 (The full U-Net).

    Parameters
    ----------
    array : ndarray, (H, W, ...)
    size : int or (int, int)
        Target (height, width), smaller by an even number of pixels on each axis.

    Returns
    -------
    ndarray
        A view of the centre window.

    Examples
    --------
    >>> a = np.arange(16).reshape(4, 4)
    >>> center_crop(a, 2)
    array([[ 5,  6],
           [ 9, 10]])
    """
    array = np.asarray(array)
    height, width = _pair(size, "size")
    extra_rows, extra_cols = array.shape[0] - height, array.shape[1] - width
    if extra_rows < 0 or extra_cols < 0 or extra_rows % 2 or extra_cols % 2:
        raise ValueError(
            f"cannot centre-crop shape {array.shape[:2]} to {(height, width)}: the size must be smaller "
            "by an even number of pixels on each axis (a valid U-Net loses equal margins on both sides)."
        )
    top, left = extra_rows // 2, extra_cols // 2
    return array[top : top + height, left : left + width]


# ---------------------------------------------------------------------------- mirroring


def _mirror_indices(length, start, stop, pad_mode):
    """Source index of positions ``start..stop-1`` of an axis of ``length``, mirrored forever."""
    positions = np.arange(start, stop)
    if pad_mode == "symmetric":  # period 2n: 0 1 .. n-1 n-1 .. 1 0
        period = 2 * length
        folded = positions % period
        return np.where(folded < length, folded, period - 1 - folded)
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * length - 2  # reflect, period 2n - 2: 0 1 .. n-1 n-2 .. 1
    folded = positions % period
    return np.where(folded < length, folded, period - folded)


def mirror_window(image, top, left, height, width, pad_mode="symmetric"):
    """Cut the ``height`` x ``width`` window at (``top``, ``left``) of the endlessly mirrored image.

    The window may reach beyond the image by any amount; only the window is built.
    Training crops use it (:class:`unet_tutorial.dataset.SegmentationDataset`).

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
    top, left : int
        Position of the window's first pixel; may be negative.
    height, width : int
    pad_mode : {"symmetric", "reflect"}
        As in ``np.pad``: "symmetric" repeats the border pixel (``b a | a b``), "reflect"
        does not (``c b | a b c``).

    Returns
    -------
    ndarray
        ``(height, width[, C])``, a new array.

    Examples
    --------
    >>> mirror_window(np.array([[1, 2, 3]]), 0, -2, 1, 4)
    array([[2, 1, 1, 2]])
    """
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"mirroring needs a non-empty (H, W) or (H, W, C) array, got shape {image.shape}")
    if height < 0 or width < 0:
        raise ValueError(f"window size must be non-negative, got {height} x {width}")
    rows = _mirror_indices(image.shape[0], top, top + height, pad_mode)
    cols = _mirror_indices(image.shape[1], left, left + width, pad_mode)
    return image[rows[:, None], cols[None, :]]


def mirror_pad(image, top, bottom, left, right, pad_mode="symmetric"):
    """Mirror an image outwards by the given number of pixels on each side.

    The same as ``np.pad(image, ((top, bottom), (left, right), ...), mode=pad_mode)``, also
    for pads wider than the image (the mirror folds back and forth).

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
    top, bottom, left, right : int
        Non-negative pad widths.
    pad_mode : {"symmetric", "reflect"}
        As in :func:`mirror_window`.

    Returns
    -------
    ndarray
        ``(H + top + bottom, W + left + right[, C])``, a new array.

    Examples
    --------
    >>> row = np.array([[1, 2, 3]])
    >>> mirror_pad(row, 0, 0, 2, 4)
    array([[2, 1, 1, 2, 3, 3, 2, 1, 1]])
    >>> mirror_pad(row, 0, 0, 2, 4, pad_mode="reflect")
    array([[3, 2, 1, 2, 3, 2, 1, 2, 3]])
    >>> np.array_equal(mirror_pad(row, 0, 0, 2, 4, "reflect"), np.pad(row, ((0, 0), (2, 4)), "reflect"))
    True
    """
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad widths must be non-negative, got {(top, bottom, left, right)}")
    height, width = np.shape(image)[:2]
    return mirror_window(image, -top, -left, height + top + bottom, width + left + right, pad_mode)


# --------------------------------------------------------- what the model does to sizes


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """What tiling needs to know about a model: the context lost per side (0: 'same'), the
    pooling grid (``2**depth``), its smallest input side (larger ones step by the grid), the
    margin 'same' tiles drop, its input channels and its one input size (or None)."""

    context: int
    grid: int
    smallest: int
    margin: int
    channels: int
    fixed_size: tuple | None


def _same_margin(depth):
    """Overlap that 'same' tiles drop: the first grid multiple above the valid context (a
    pixel's reach is that context plus part of a pooling cell). Exact for this book's
    U-Nets at depths 2 to 4 (24, 48, 96 pixels); one grid step less is not."""
    from unet_tutorial import models

    grid = 2**depth
    return (models.context(depth) // grid + 1) * grid


def _geometry(model):
    """The geometry of a U-Net of :mod:`unet_tutorial.models`, read from its layer names;
    other models are measured by :mod:`unet_tutorial.probing`."""
    from unet_tutorial import models, probing  # (Keras is loaded anyway once there is a model)

    known = models._depth_and_padding(model)
    if known is None:
        return probing.geometry(model)
    depth, padding = known
    valid = padding == "valid"
    shape = tuple(model.inputs[0].shape)
    return _Geometry(
        context=models.context(depth) if valid else 0,
        grid=2**depth,
        smallest=models.valid_input_size(1, depth) if valid else 2**depth,
        margin=0 if valid else _same_margin(depth),
        channels=int(shape[3]),
        fixed_size=None if None in shape[1:3] else (int(shape[1]), int(shape[2])),
    )


def _smallest_fit(geometry, at_least):
    """The smallest input side the model takes that is at least ``at_least``."""
    steps = max(0, math.ceil((at_least - geometry.smallest) / geometry.grid))
    return geometry.smallest + steps * geometry.grid


# ------------------------------------------------------------------- where the tiles go


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where the tiles of an overlap-tile prediction go.

    Taught in chapter 6 (Overlap-tile on Colab GPUs), which draws a plan.

    Attributes
    ----------
    tile_size, output_size : (int, int)
        Input and output tile (height, width).
    context, margin : int
        Mirrored border per side (valid models); pixels dropped at inner tile borders ('same').
    row_tiles, col_tiles : tuple of (int, int, int)
        ``(start, keep_start, keep_stop)`` along each axis; every pair is one tile. Its
        output pixel ``j`` is image pixel ``start + j``; it fills ``keep_start:keep_stop``.
    """

    tile_size: tuple
    output_size: tuple
    context: int
    margin: int
    row_tiles: tuple
    col_tiles: tuple

    @property
    def n_tiles(self):
        return len(self.row_tiles) * len(self.col_tiles)


def _valid_axis(length, output_tile, grid):
    """Output tiles along one axis: starts on the grid, spaced as widely as the output allows.

    Examples
    --------
    >>> _valid_axis(1000, 388, 16)  # stride 384; the last start, 624, reaches 1012 >= 1000
    ((0, 0, 384), (384, 384, 624), (624, 624, 1000))
    """
    if output_tile >= length:
        return ((0, 0, length),)
    stride = output_tile // grid * grid
    if stride == 0:
        raise ValueError(
            f"Output tiles of {output_tile} pixels are smaller than the pooling grid ({grid}); "
            "use a larger tile_size"
        )
    last = math.ceil((length - output_tile) / grid) * grid
    starts = list(range(0, last, stride)) + [last]
    stops = starts[1:] + [length]
    return tuple((s, s, min(stop, s + output_tile)) for s, stop in zip(starts, stops))


def _same_axis(padded, tile, margin, grid):
    """'Same' tiles over ``padded`` pixels that drop ``margin`` pixels at inner tile borders.

    Examples
    --------
    >>> _same_axis(40, 16, 4, 4)
    ((0, 0, 12), (8, 12, 20), (16, 20, 28), (24, 28, 40))
    """
    if tile >= padded:
        return ((0, 0, padded),)
    stride = (tile - 2 * margin) // grid * grid
    if stride <= 0:
        raise ValueError(
            f"tile_size {tile} leaves nothing after discarding a margin of {margin} pixels on "
            f"both sides (and aligning to {grid}); use a tile larger than {2 * margin + grid}"
        )
    starts = list(range(0, padded - tile, stride)) + [padded - tile]
    tiles = []
    for start in starts:
        low = start if start == 0 else start + margin
        high = start + tile if start + tile == padded else start + tile - margin
        tiles.append((start, low, high))
    return tuple(tiles)


def _tile_sides(geometry, tile_size, default):
    if tile_size is None:
        return geometry.fixed_size or (default, default)
    tile = _pair(tile_size, "tile_size")
    if geometry.fixed_size is not None:
        if tile != geometry.fixed_size:
            raise ValueError(f"This model takes {geometry.fixed_size} inputs only, not tile_size {tile}")
        return tile
    for side in tile:
        above = _smallest_fit(geometry, side)
        if above != side:
            below = above - geometry.grid
            nearest = f"{below} or {above}" if below >= geometry.smallest else f"{above}"
            mode = "valid" if geometry.context else "same"
            raise ValueError(f"tile_size {side} does not fit this {mode!r} model; nearest: {nearest}")
    return tile


def _plan(geometry, image_shape, tile_size):
    height, width = (int(side) for side in image_shape[:2])
    if height < 1 or width < 1:
        raise ValueError(f"Cannot tile an empty image of shape {tuple(image_shape)}")
    grid, c = geometry.grid, geometry.context
    if c:  # valid: the paper's 388-pixel outputs, or one tile for a smaller image
        tile = _tile_sides(geometry, tile_size, _smallest_fit(geometry, _PAPER_OUTPUT + 2 * c))
        if tile_size is None and geometry.fixed_size is None:
            covers = (_smallest_fit(geometry, height + 2 * c), _smallest_fit(geometry, width + 2 * c))
            tile = (min(tile[0], covers[0]), min(tile[1], covers[1]))
        out = (tile[0] - 2 * c, tile[1] - 2 * c)
        return TilePlan(tile, out, c, 0, _valid_axis(height, out[0], grid), _valid_axis(width, out[1], grid))
    margin = geometry.margin
    tile = _tile_sides(geometry, tile_size, max(_SAME_TILE, math.ceil(4 * margin / grid) * grid))
    if geometry.fixed_size is not None:
        # the tile cannot grow: keep at least one pooling cell of every tile (not exact then)
        margin = min(margin, (min(tile) - grid) // 2 // grid * grid)
    padded = [math.ceil(side / grid) * grid for side in (height, width)]
    if geometry.fixed_size is None:
        tile = tuple(min(t, p) for t, p in zip(tile, padded))
    padded = [max(p, t) for p, t in zip(padded, tile)]
    rows, cols = _same_axis(padded[0], tile[0], margin, grid), _same_axis(padded[1], tile[1], margin, grid)
    return TilePlan(tile, tile, 0, margin, rows, cols)


def plan_tiles(model, image_shape, tile_size=None):
    """Plan an overlap-tile prediction: the tile size and every tile's place.

    Taught in chapter 6 (Overlap-tile on Colab GPUs), which draws the plan.

    Parameters
    ----------
    model : keras.Model
    image_shape : tuple of int
        ``(height, width)`` or ``(height, width, channels)``.
    tile_size : int or (int, int), optional
        Input tile side(s). Default: the model's fixed input size; else, for a valid model,
        the input of the paper's 388-pixel output (572 at depth 4), and for a 'same' model
        512 (or four margins, if more); shrunk to one tile that covers a smaller image.

    Returns
    -------
    TilePlan
    """
    return _plan(_geometry(model), image_shape, tile_size)


# --------------------------------------------------------------------------- prediction


def _as_image(image, channels):
    """``image`` as float32 ``(H, W, C)`` (scaled by :func:`unet_tutorial.data.to_float`)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        hint = "; predict one image at a time, e.g. in a loop over the stack" if image.ndim == 4 else ""
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got {image.shape}{hint}")
    image = data.to_float(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] != channels:
        raise ValueError(
            f"the model expects {channels} channel(s) but the image has shape {image.shape} "
            "(read as height, width, channels); channels go last"
        )
    return image


def _predict_batches(model, windows, batch_size):
    """The model's output for each window, as float32, ``batch_size`` windows per call."""
    for first in range(0, len(windows), batch_size):
        batch = np.stack(windows[first : first + batch_size])
        yield from np.asarray(model.predict_on_batch(batch), dtype=np.float32)


def _predict_plan(model, image, plan, batch_size, pad_mode):
    """Mirror-pad ``image`` for ``plan``, run the model tile by tile and stitch the kept parts."""
    height, width = image.shape[:2]
    c, (tile_h, tile_w) = plan.context, plan.tile_size
    last_row, last_col = plan.row_tiles[-1][0], plan.col_tiles[-1][0]
    # padded pixel (i, j) is image pixel (i - c, j - c): tile (r, q) starts at padded[r, q]
    padded = mirror_pad(image, c, last_row + tile_h - c - height, c, last_col + tile_w - c - width, pad_mode)
    tiles = [(row, col) for row in plan.row_tiles for col in plan.col_tiles]
    windows = [padded[r : r + tile_h, q : q + tile_w] for (r, _, _), (q, _, _) in tiles]
    predictions = _predict_batches(model, windows, batch_size)
    result = np.zeros((height, width, model.outputs[0].shape[-1]), np.float32)
    for ((r, top, bottom), (q, left, right)), prob in zip(tiles, predictions):
        bottom, right = min(bottom, height), min(right, width)  # 'same' tiles reach into the padding
        result[top:bottom, left:right] = prob[top - r : bottom - r, left - q : right - q]
    return result


def _tta(predict, image):
    """Test-time augmentation: the mean of ``predict`` over the 8 views, each mapped back."""
    total = 0
    for forward, inverse in dihedral_transforms():
        total = total + inverse(predict(forward(image)))
    return total / 8


def predict_tiled(model, image, tile_size=None, batch_size=4, tta=False, *, pad_mode="symmetric"):
    """Predict the probability map of an image of any size, tile by tile, without seams.

    The paper's overlap-tile strategy: plan the tiles (:func:`plan_tiles`), mirror-pad the
    image, run the model on ``batch_size`` tiles at a time, stitch the outputs. For a valid
    model the result equals one pass over the whole mirrored image.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model : keras.Model
        A segmentation model with one image input and a sigmoid or softmax output.
    image : ndarray, (H, W) or (H, W, C)
        Any size. Integers are scaled by :func:`unet_tutorial.data.to_float` (uint8 by
        255, uint16 by 65535); floats are used as they are.
    tile_size : int or (int, int), optional
        Input tile side(s); see :func:`plan_tiles` for the default.
    batch_size : int
        Tiles per model call: more is faster on a GPU until memory runs out.
    tta : bool
        Test-time augmentation: average the predictions of the 8 flips and rotations of the
        image, each mapped back (:func:`dihedral_transforms`); 8 times the work.
    pad_mode : {"symmetric", "reflect"}
        How the image is mirrored beyond its borders.

    Returns
    -------
    ndarray
        float32 ``(H, W)`` for a one-channel (sigmoid) model, ``(H, W, K)`` for a K-class
        softmax model.
    """
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    geometry = _geometry(model)
    image = _as_image(image, geometry.channels)

    def predict(view):
        return _predict_plan(model, view, _plan(geometry, view.shape, tile_size), batch_size, pad_mode)

    result = _tta(predict, image) if tta else predict(image)
    return result[..., 0] if result.shape[-1] == 1 else result


def naive_tiled(model, image, tile_size=None, pad_mode="constant", batch_size=4):
    """Tile an image without context, to show the seams that overlap-tile avoids.

    Blocks the size of an output tile are padded on their own to an input tile (with
    zeros, or mirrored), predicted and put back: pixels near block borders lose their context.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model, image, tile_size, batch_size
        As in :func:`predict_tiled`.
    pad_mode : {"constant", "symmetric", "reflect"}

    Returns
    -------
    ndarray
        Shaped as by :func:`predict_tiled`.
    """
    if pad_mode not in ("constant",) + _PAD_MODES:
        raise ValueError(f'pad_mode must be "constant", "symmetric" or "reflect", got {pad_mode!r}')
    geometry = _geometry(model)
    image = _as_image(image, geometry.channels)
    plan = _plan(geometry, image.shape, tile_size)
    (tile_h, tile_w), (out_h, out_w), c = plan.tile_size, plan.output_size, plan.context
    height, width = image.shape[:2]
    corners = [(r, q) for r in range(0, height, out_h) for q in range(0, width, out_w)]
    blocks = [image[r : r + out_h, q : q + out_w] for r, q in corners]
    canvases = [np.pad(b, ((c, tile_h - c - len(b)), (c, tile_w - c - b.shape[1]), (0, 0)), pad_mode)
                for b in blocks]
    result = np.zeros((height, width, model.outputs[0].shape[-1]), np.float32)
    for (r, q), block, prob in zip(corners, blocks, _predict_batches(model, canvases, batch_size)):
        result[r : r + block.shape[0], q : q + block.shape[1]] = prob[: block.shape[0], : block.shape[1]]
    return result[..., 0] if result.shape[-1] == 1 else result


# --------------------------------------------------------------- test-time augmentation


def _dihedral(quarter_turns, flip):
    def forward(x):
        x = np.flip(x, axis=1) if flip else x
        return np.rot90(x, quarter_turns, axes=(0, 1))

    def inverse(y):
        y = np.rot90(y, -quarter_turns, axes=(0, 1))
        return np.flip(y, axis=1) if flip else y

    return forward, inverse


def dihedral_transforms():
    """The 8 flips and rotations of a square, each as a ``(forward, inverse)`` pair.

    ``forward`` mirrors left-right (the last four) and then turns by 0, 90, 180 or 270
    degrees; ``inverse`` undoes it. They act on the first two axes; the identity is first.

    Taught in chapter 6 (Overlap-tile on Colab GPUs), for test-time augmentation.

    Returns
    -------
    list of (callable, callable)

    Examples
    --------
    >>> x = np.array([[1, 2], [3, 4]])
    >>> forward, inverse = dihedral_transforms()[1]
    >>> forward(x)
    array([[2, 4],
           [1, 3]])
    """
    return [_dihedral(turns, flip) for flip in (False, True) for turns in range(4)]

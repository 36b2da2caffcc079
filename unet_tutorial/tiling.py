"""Overlap-tile prediction and test-time augmentation.

Taught in chapter 7 (Overlap-tile on Colab GPUs).

A valid U-Net loses a fixed border, its *context* (92 pixels per side at depth 4). The
paper mirrors the image at its borders, cuts input tiles whose outputs cover the image
and stitches the outputs. When the output tiles start on the *pooling grid* (multiples
of ``2**depth``) the result equals one pass over the whole mirrored image. A 'same'
U-Net keeps the size; its tiles overlap, and each drops a *margin* at inner tile
borders: the first grid multiple above the valid context (24, 48, 96 pixels at depths
2, 3, 4), which is exact for this book's U-Nets; one grid step less is not.

Along each axis, tiles start on the grid as far apart as their kept output allows, the
last one where it just reaches the end of the image; every tile keeps its pixels up to
where the next one takes over. The book's U-Nets carry their depth and padding in their
layer names (:func:`unet_tutorial.models._depth_and_padding`); any other model is
measured by the tooling module :mod:`unet_tutorial.probing`.
"""

from __future__ import annotations

import collections
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


def _pair(size, name):
    """``n`` or ``(h, w)`` as a pair of positive ints; ``name`` goes into the error message."""
    pair = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of them, got {size!r}.")
    return int(pair[0]), int(pair[1])


def center_crop(array, size):
    """Crop the centre ``size`` (int or (height, width)) of the first two axes: a valid U-Net's output.

    Taught in chapter 2 (Augmentation).

    Examples
    --------
    >>> center_crop(np.arange(12).reshape(3, 4), (1, 2))
    array([[5, 6]])
    """
    array = np.asarray(array)
    height, width = _pair(size, "size")
    rows, cols = array.shape[0] - height, array.shape[1] - width
    if rows < 0 or cols < 0 or rows % 2 or cols % 2:
        raise ValueError(f"cannot centre-crop {array.shape[:2]} to {size}: crop an even number per axis")
    return array[rows // 2 : rows // 2 + height, cols // 2 : cols // 2 + width]


def _mirror_indices(length, start, stop, pad_mode):
    """Source indices of positions ``start..stop-1`` of an axis mirrored forever (``np.pad``'s modes)."""
    repeat = 1 if pad_mode == "symmetric" else 0  # symmetric: 0 1 2 2 1 0 0 1 ..; reflect: 0 1 2 1 0 1 ..
    period = max(2 * length - 2 + 2 * repeat, 1)
    folded = np.arange(start, stop) % period
    return np.minimum(folded, period - repeat - folded)


def mirror_window(image, top, left, height, width, pad_mode="symmetric"):
    """The ``height`` x ``width`` window at (``top``, ``left``) of the endlessly mirrored image.

    Only the window is built, wherever it lies. ``pad_mode`` as in ``np.pad``: "symmetric" repeats the
    border pixel (``b a | a b``), "reflect" does not (``c b | a b c``). Taught in chapter 2 (Augmentation).

    Examples
    --------
    >>> mirror_window(np.array([[1, 2, 3]]), 0, -2, 1, 4)
    array([[2, 1, 1, 2]])
    """
    if pad_mode not in ("symmetric", "reflect"):
        raise ValueError(f'pad_mode must be "symmetric" or "reflect", got {pad_mode!r}')
    image = np.asarray(image)
    rows = _mirror_indices(image.shape[0], top, top + height, pad_mode)
    return image[rows[:, None], _mirror_indices(image.shape[1], left, left + width, pad_mode)[None, :]]


def mirror_pad(image, top, bottom, left, right, pad_mode="symmetric"):
    """Mirror an image outwards, as ``np.pad(image, ((top, bottom), (left, right)), pad_mode)`` does.

    Taught in chapter 7 (Overlap-tile on Colab GPUs).

    Examples
    --------
    >>> mirror_pad(np.array([[1, 2, 3]]), 0, 0, 2, 4)
    array([[2, 1, 1, 2, 3, 3, 2, 1, 1]])
    """
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad widths must be non-negative, got {(top, bottom, left, right)}")
    height, width = np.shape(image)[:2]
    return mirror_window(image, -top, -left, height + top + bottom, width + left + right, pad_mode)


# What tiling needs to know of a model: its context per side (0: 'same'), pooling grid, smallest
# input side (larger ones step by the grid), the margin 'same' tiles drop, and its one input size or None.
_Geometry = collections.namedtuple("_Geometry", "context grid smallest margin fixed_size")


def _same_margin(context, grid):
    """The margin 'same' tiles drop: the first grid multiple above the valid U-Net's context."""
    return (context // grid + 1) * grid


def _geometry(model):
    """The geometry of a U-Net of :mod:`unet_tutorial.models`, from its layer names; else probed."""
    from unet_tutorial import models, probing  # (Keras is loaded anyway once there is a model)

    if models._depth_and_padding(model) is None:
        return probing.geometry(model)
    (depth, padding), shape = models._depth_and_padding(model), tuple(model.inputs[0].shape)
    grid, context, fixed = 2**depth, models.context(depth), None if None in shape[1:3] else shape[1:3]
    if padding == "same":
        return _Geometry(0, grid, grid, _same_margin(context, grid), fixed)
    return _Geometry(context, grid, models.valid_input_size(1, depth), 0, fixed)


def _smallest_fit(geometry, at_least):
    """The smallest input side the model takes that is at least ``at_least``."""
    steps = max(0, math.ceil((at_least - geometry.smallest) / geometry.grid))
    return geometry.smallest + steps * geometry.grid


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where the tiles go: per tile along each axis, ``(start, keep_start, keep_stop)``.

    Output pixel ``j`` of a tile is image pixel ``start + j``; the tile fills ``keep_start:keep_stop``.
    Taught in chapter 7 (Overlap-tile on Colab GPUs), which draws a plan.
    """

    tile_size: tuple  # input (height, width)
    output_size: tuple
    context: int  # input tiles start this much earlier (valid models)
    margin: int  # dropped at inner tile borders ('same' models)
    row_tiles: tuple
    col_tiles: tuple

    @property
    def n_tiles(self):
        return len(self.row_tiles) * len(self.col_tiles)


def _axis_tiles(length, output, grid, margin):
    """Tiles on the grid as far apart as their kept output allows; each keeps up to where the next takes over.

    Examples
    --------
    >>> _axis_tiles(1000, 388, 16, 0)  # valid 572-pixel tiles: stride 384, the last reaches 1012
    ((0, 0, 384), (384, 384, 624), (624, 624, 1000))
    """
    if output >= length:
        return ((0, 0, length),)
    stride = (output - 2 * margin) // grid * grid
    if stride <= 0:
        raise ValueError(
            f"tiles of {output} px keep less than the pooling grid ({grid} px); use a larger tile_size"
        )
    last = math.ceil((length - output) / grid) * grid  # the last tile just reaches the end
    starts = list(range(0, last, stride)) + [last]
    keep = [0] + [start + margin for start in starts[1:]] + [length]
    return tuple(zip(starts, keep[:-1], keep[1:]))


def _plan(geometry, image_shape, tile_size):
    """:func:`plan_tiles` for a model's :class:`_Geometry`."""
    (height, width), grid, c, margin = image_shape[:2], geometry.grid, geometry.context, geometry.margin
    if tile_size is not None:
        tile = _pair(tile_size, "tile_size")
        fits = geometry.fixed_size or tuple(_smallest_fit(geometry, side) for side in tile)
        if tile != fits:
            raise ValueError(f"tile_size {tile} does not fit this model; use {fits}")
    elif geometry.fixed_size:
        tile = geometry.fixed_size
    elif c:  # the paper's 388-pixel output tiles (572 in at depth 4), or one tile over a smaller image
        tile = tuple(_smallest_fit(geometry, min(388, side) + 2 * c) for side in (height, width))
    else:  # 'same': 512 pixels, or four margins if more
        tile = (max(512, math.ceil(4 * margin / grid) * grid),) * 2
    if geometry.fixed_size:  # the tile cannot grow: keep at least one pooling cell (not exact then)
        margin = min(margin, (min(tile) - grid) // 2 // grid * grid)
    elif not c:  # at most the image padded to the grid
        tile = tuple(min(t, math.ceil(side / grid) * grid) for t, side in zip(tile, (height, width)))
    out = (tile[0] - 2 * c, tile[1] - 2 * c)
    rows, cols = _axis_tiles(height, out[0], grid, margin), _axis_tiles(width, out[1], grid, margin)
    return TilePlan(tile, out, c, margin, rows, cols)


def plan_tiles(model, image_shape, tile_size=None):
    """Plan an overlap-tile prediction of an image of ``image_shape``: tile size and every tile's place.

    The default ``tile_size`` (int or (height, width)) is the model's fixed input size; else, for a
    valid model, the input of the paper's 388-pixel output (572 at depth 4), for a 'same' one 512;
    one tile covers a smaller image.
    Taught in chapter 7 (Overlap-tile on Colab GPUs), which draws the plan.
    """
    return _plan(_geometry(model), image_shape, tile_size)


def _as_image(image, channels):
    """``image`` as float32 (H, W, C), scaled by :func:`unet_tutorial.data.to_float`."""
    image = data.to_float(image)
    image = image[..., None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"need an (H, W) or (H, W, {channels}) image, not {image.shape}; loop over stacks")
    return image


def _predict_batches(model, windows, batch_size):
    """The model's output for each window, as float32, ``batch_size`` windows per call."""
    for i in range(0, len(windows), batch_size):
        yield from np.asarray(model.predict_on_batch(np.stack(windows[i : i + batch_size])), np.float32)


def predict_tiled(model, image, tile_size=None, batch_size=4, tta=False, *, pad_mode="symmetric"):
    """Predict the probability map of an image of any size, tile by tile, without seams.

    The paper's overlap-tile strategy: plan the tiles, cut them from the mirrored image, predict
    ``batch_size`` per call and stitch. A valid model's result equals one pass over the mirrored image.
    Returns float32 (H, W) for a sigmoid model, (H, W, K) for a K-class softmax.
    Taught in chapter 7 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model : keras.Model with one image input and a sigmoid or softmax output
    image : (H, W) or (H, W, C) array; integers are scaled by :func:`unet_tutorial.data.to_float`
    tile_size, pad_mode : as in :func:`plan_tiles` and :func:`mirror_window`
    tta : bool, the mean over the 8 views of :func:`dihedral_transforms` (test-time augmentation)
    """
    geometry = _geometry(model)
    image = _as_image(image, model.inputs[0].shape[-1])

    def predict(view):  # cut the plan's tiles from the mirrored view, predict, stitch the kept parts
        plan = _plan(geometry, view.shape, tile_size)
        (h, w), c = plan.tile_size, plan.context
        tiles = [(row, col) for row in plan.row_tiles for col in plan.col_tiles]
        windows = [mirror_window(view, r - c, q - c, h, w, pad_mode) for (r, _, _), (q, _, _) in tiles]
        probs = _predict_batches(model, windows, batch_size)
        result = np.zeros((*view.shape[:2], model.outputs[0].shape[-1]), np.float32)
        for ((r, top, bottom), (q, left, right)), prob in zip(tiles, probs):
            result[top:bottom, left:right] = prob[top - r : bottom - r, left - q : right - q]
        return result

    views = dihedral_transforms() if tta else dihedral_transforms()[:1]  # [:1]: the identity
    result = sum(inverse(predict(forward(image))) for forward, inverse in views) / len(views)
    return result[..., 0] if result.shape[-1] == 1 else result


def naive_tiled(model, image, tile_size=None, pad_mode="constant", batch_size=4):
    """Tile an image without context, to show the seams that overlap-tile avoids.

    Output-sized blocks are padded on their own to an input tile (``np.pad``: zeros, or mirrored),
    predicted and put back. Arguments and result as in :func:`predict_tiled`.
    Taught in chapter 7 (Overlap-tile on Colab GPUs).
    """
    plan = plan_tiles(model, np.shape(image), tile_size)
    image = _as_image(image, model.inputs[0].shape[-1])
    (h, w), (out_h, out_w), c = plan.tile_size, plan.output_size, plan.context
    corners = [(r, q) for r in range(0, image.shape[0], out_h) for q in range(0, image.shape[1], out_w)]
    blocks = [image[r : r + out_h, q : q + out_w] for r, q in corners]
    canvases = [np.pad(b, ((c, h - c - len(b)), (c, w - c - b.shape[1]), (0, 0)), pad_mode) for b in blocks]
    result = np.zeros((*image.shape[:2], model.outputs[0].shape[-1]), np.float32)
    for (r, q), b, prob in zip(corners, blocks, _predict_batches(model, canvases, batch_size)):
        result[r : r + len(b), q : q + b.shape[1]] = prob[: len(b), : b.shape[1]]
    return result[..., 0] if result.shape[-1] == 1 else result


def _dihedral(turns, flip):
    """One view (mirror left-right if ``flip``, then turn) and the map that undoes it."""

    def forward(x):
        return np.rot90(np.flip(x, axis=1) if flip else x, turns, axes=(0, 1))

    def inverse(y):
        return np.flip(np.rot90(y, -turns, axes=(0, 1)), axis=1) if flip else np.rot90(y, -turns, axes=(0, 1))

    return forward, inverse


def dihedral_transforms():
    """The 8 flips and rotations of a square, as ``(forward, inverse)`` pairs on the first two axes.

    ``forward`` mirrors left-right (the last four) and then turns by 0, 90, 180 or 270 degrees;
    ``inverse`` undoes it. The identity comes first. Taught in chapter 7 (Overlap-tile on Colab GPUs).

    Examples
    --------
    >>> forward, inverse = dihedral_transforms()[1]
    >>> forward(np.array([[1, 2], [3, 4]]))
    array([[2, 4],
           [1, 3]])
    """
    return [_dihedral(turns, flip) for flip in (False, True) for turns in range(4)]

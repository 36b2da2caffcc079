"""Overlap-tile prediction, test-time augmentation and a GPU memory estimate.

Taught in chapter 6 (Overlap-tile on Colab GPUs).

A valid-padding U-Net eats a fixed border (its *context*: 92 pixels per side at depth 4),
so its output tile is smaller than its input tile. To predict a whole image, the paper
mirrors the image at its borders, cuts input tiles whose output tiles cover the image,
and stitches the outputs. Done right, the stitched map is exactly the map that one pass
over the whole (mirrored) image would give: no seams.

Two details make it exact here:

* **Mirroring.** Missing context is filled with ``np.pad(..., mode="symmetric")``
  (the border pixel is repeated: ``c b a | a b c``) by default; ``pad_mode="reflect"``
  (``c b | a b c``) is available. Both are mirrors; symmetric keeps the mirror axis on
  the image border. Pads wider than the image keep mirroring back and forth, as
  ``np.pad`` does.
* **The pooling grid.** A U-Net of depth ``d`` pools ``d`` times by 2, so moving its
  input by ``s`` pixels moves its output by ``s`` pixels only when ``s`` is a multiple
  of ``2**d`` (the *alignment*). Output tiles are therefore placed at multiples of the
  alignment: the stride is the largest multiple of it that fits in an output tile, and
  the last tile is pulled back to the smallest aligned offset that still reaches the
  image's end (it may overlap its neighbour; overlapping pixels are equal).

A 'same'-padding U-Net keeps the size, but its zero padding at every tile border
changes the pixels near that border. Tiles then overlap by a *margin* on each side
that is thrown away; when the margin covers the network's reach, interior pixels are
exactly those of one pass over the whole image. Tile borders that lie on the image's
border are kept, since a one-pass prediction sees the same zero padding there.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import weakref

import numpy as np

__all__ = [
    "ModelGeometry",
    "TilePlan",
    "model_geometry",
    "plan_tiles",
    "mirror_pad",
    "mirror_window",
    "predict_tiled",
    "naive_tiled",
    "dihedral_transforms",
    "activation_memory",
    "center_crop",
]

_PAD_MODES = ("symmetric", "reflect")
_DEFAULT_VALID_OUTPUT = 388  # the paper's output tile (572 in, at depth 4)
_DEFAULT_SAME_TILE = 512


# --------------------------------------------------------------------------------------
# Sizes and centre crops
# --------------------------------------------------------------------------------------


def _pair(size, name):
    """``n`` or ``(h, w)`` as a pair of positive ints; ``name`` goes into the error message."""
    if isinstance(size, numbers.Integral):
        size = (size, size)
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, numbers.Integral) and v >= 1 for v in size)
    ):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of them, got {size!r}.")
    return int(size[0]), int(size[1])


def center_crop(array, size):
    """Crop the centre ``size`` window of the first two axes.

    A valid-padding U-Net's output sits at the centre of its input, so labels, weights
    and images are compared with its output after this crop.

    Parameters
    ----------
    array : ndarray, (H, W, ...)
        The first two axes are cropped; further axes are kept.
    size : int or (int, int)
        Target (height, width); it must be smaller than ``array`` by an even number
        of pixels on each axis (equal margins on both sides).

    Returns
    -------
    ndarray
        A view of the centre window.

    Notes
    -----
    Taught in chapter 2 (Augmentation), for the valid network of chapter 4 (The full U-Net).

    Examples
    --------
    >>> a = np.arange(16).reshape(4, 4)
    >>> center_crop(a, 2)
    array([[ 5,  6],
           [ 9, 10]])
    >>> center_crop(a, (2, 4)).shape
    (2, 4)
    """
    array = np.asarray(array)
    height, width = _pair(size, "size")
    extra_rows, extra_cols = array.shape[0] - height, array.shape[1] - width
    if extra_rows < 0 or extra_cols < 0 or extra_rows % 2 or extra_cols % 2:
        raise ValueError(
            f"cannot centre-crop shape {array.shape[:2]} to {(height, width)}: the size must be "
            "smaller by an even number of pixels on each axis (a valid U-Net loses the same "
            "margin on both sides)."
        )
    top, left = extra_rows // 2, extra_cols // 2
    return array[top : top + height, left : left + width]


# --------------------------------------------------------------------------------------
# What the model does to sizes
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelGeometry:
    """How a segmentation model changes image sizes, as far as tiling needs to know.

    Attributes
    ----------
    mode : {"valid", "same"}
        "valid" when the output is smaller than the input.
    context : int
        Pixels lost on each side (0 for "same").
    alignment : int
        Product of the strides of the down-sampling layers (``2**depth`` for a U-Net);
        tile offsets must be multiples of it.
    in_channels, out_channels : int
    fixed_size : tuple of int or None
        ``(height, width)`` of a model built for one input size, else None.
    sizes : tuple of int
        Some input side lengths the model accepts (found by probing), ascending.
    conv_reach : int
        Sum of the kernel half-widths of all convolutions: the reach of the receptive
        field when nothing down-samples.
    """

    mode: str
    context: int
    alignment: int
    in_channels: int
    out_channels: int
    fixed_size: tuple | None
    sizes: tuple
    conv_reach: int

    def fits(self, size):
        """Whether the model accepts an input side of ``size`` pixels."""
        if self.fixed_size is not None:
            return size in self.fixed_size
        smallest = self.sizes[0]
        return size >= smallest and (size - smallest) % self.alignment == 0

    def smallest_fit(self, at_least):
        """The smallest accepted input side that is at least ``at_least``."""
        smallest = self.sizes[0]
        if at_least <= smallest:
            return smallest
        return smallest + math.ceil((at_least - smallest) / self.alignment) * self.alignment


def _walk_layers(model):
    """Every layer of ``model``, descending into nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


def _downsampling_factor(model):
    """Product of the strides of pooling and strided layers along the image's height.

    For an encoder-decoder this is the total down-sampling (16 for a U-Net of depth 4).
    """
    factor = 1
    for layer in _walk_layers(model):
        strides = getattr(layer, "strides", None)
        if strides is None or "Transpose" in type(layer).__name__:
            continue  # up-sampling layers do not move the pooling grid
        strides = strides if isinstance(strides, (tuple, list)) else (strides,)
        factor *= int(strides[0])
    return factor


def _conv_reach(model):
    """Sum of the kernel half-widths of all convolutions (the reach of a plain conv stack)."""
    reach = 0
    for layer in _walk_layers(model):
        kernel = getattr(layer, "kernel_size", None)
        if kernel is not None:
            dilation = getattr(layer, "dilation_rate", (1,))
            reach += (int(kernel[0]) - 1) // 2 * int(dilation[0])
    return reach


def _shape_probe(model):
    """A function ``size -> output side or None``, using shape inference only (no compute).

    Keras' shape inference does not check that the two inputs of a ``Concatenate`` agree,
    so the probe also returns every merge layer's inputs and checks them itself.
    """
    import keras

    merge_inputs = []
    for layer in model.layers:
        try:
            inputs = layer.input
        except (AttributeError, ValueError):  # layer used more than once: skip it
            continue
        if isinstance(inputs, (list, tuple)) and len(inputs) > 1:
            merge_inputs.append(list(inputs))
    probe = keras.Model(model.inputs, [model.outputs[0]] + [t for group in merge_inputs for t in group])
    channels = model.inputs[0].shape[-1]

    def output_side(size):
        try:
            specs = probe.compute_output_spec(keras.KerasTensor((1, size, size, channels)))
        except Exception:  # noqa: BLE001 - any shape error means "does not fit"
            return None
        shapes = [tuple(spec.shape) for spec in specs]
        position = 1
        for group in merge_inputs:
            spatial = {shape[1:3] for shape in shapes[position : position + len(group)]}
            position += len(group)
            if len(spatial) > 1:
                return None
        side = shapes[0][1]
        return side if side is not None and side > 0 else None

    return output_side


_GEOMETRY_CACHE = weakref.WeakKeyDictionary()


def model_geometry(model):
    """Find out how ``model`` changes sizes: valid or same, context, alignment, channels.

    Detection uses shape arithmetic only (nothing is computed): the output side for a
    probe input side tells "valid" (smaller output; ``context = (input - output) / 2``)
    from "same" (equal sizes). Models built for one fixed size are read from their input
    and output shapes. The alignment is the product of the strides of the pooling and
    strided-convolution layers.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model : keras.Model
        A functional or sequential model with one image input ``(None, H, W, C)`` and
        one output ``(None, h, w, K)``.

    Returns
    -------
    ModelGeometry
        Cached per model, so predicting many images probes once.

    Raises
    ------
    TypeError
        If the model does not have one 4-D input and one 4-D output.
    ValueError
        If no input size fits, or the output is larger than the input.
    """
    try:
        return _GEOMETRY_CACHE[model]
    except (KeyError, TypeError):
        pass
    geometry = _measure_geometry(model)
    try:
        _GEOMETRY_CACHE[model] = geometry
    except TypeError:  # not weakly referenceable: just do not cache
        pass
    return geometry


def _measure_geometry(model):
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):  # not a model, or a Sequential never built
        inputs = outputs = None
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise TypeError(
            "Tiling needs a built Keras model with one image input and one output "
            "(e.g. keras.Model(inputs, outputs) or unet_tutorial.models.unet()); got "
            f"{type(model).__name__}"
        )
    in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(in_shape) != 4 or len(out_shape) != 4:
        raise TypeError(
            f"Tiling needs image input and output shapes (batch, height, width, channels); "
            f"got input {in_shape} and output {out_shape}"
        )
    alignment = _downsampling_factor(model)
    height, width = in_shape[1:3]
    fixed = None if height is None or width is None else (int(height), int(width))
    if fixed is not None:
        sizes = tuple(sorted(set(fixed)))
        context_h, context_w = (height - out_shape[1]) / 2, (width - out_shape[2]) / 2
        if context_h != context_w:
            raise ValueError(f"Output {out_shape} does not shrink the input {in_shape} evenly")
        context = context_h
    else:
        sizes, context = _probe_sizes(model, alignment)
    if context < 0 or not float(context).is_integer():
        raise ValueError(
            f"Cannot tile a model whose output side differs from its input side by "
            f"{2 * context} pixels; overlap-tile needs an output smaller by an even number or equal"
        )
    return ModelGeometry(
        mode="valid" if context > 0 else "same",
        context=int(context),
        alignment=alignment,
        in_channels=int(in_shape[3]),
        out_channels=int(out_shape[3]),
        fixed_size=fixed,
        sizes=sizes,
        conv_reach=_conv_reach(model),
    )


def _probe_sizes(model, alignment, limit=8192):
    """The smallest accepted input side, the next one, and the context they show."""
    output_side = _shape_probe(model)
    start = 8 * alignment
    while start <= limit:
        for size in range(start, start + alignment):
            out = output_side(size)
            if out is None:
                continue
            while size - alignment > 0 and output_side(size - alignment) is not None:
                size -= alignment  # walk down to the smallest accepted side
            return (size, size + alignment), (size - output_side(size)) / 2
        start *= 2
    raise ValueError(
        f"No input side up to {limit} pixels fits this model; is it a segmentation network "
        "whose output has an image's height and width?"
    )


# --------------------------------------------------------------------------------------
# Where the tiles go
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where each tile of an overlap-tile prediction sits.

    Coordinates are image rows/columns; negative values lie in the mirrored border.
    A tile ``(start, keep_start, keep_stop)`` takes input pixels ``start - context`` to
    ``start - context + tile - 1``; its output pixel ``j`` is image pixel ``start + j``,
    and image pixels ``keep_start`` to ``keep_stop - 1`` are taken from it (those past
    the image's end, in the padding of a 'same' plan, are dropped).

    Attributes
    ----------
    mode : {"valid", "same"}
    image_shape : tuple of int
        ``(height, width)`` of the image.
    tile_size, output_size : tuple of int
        Input and output tile ``(height, width)``.
    context, alignment, margin : int
        Mirrored border per side, offset multiple, discarded overlap ('same' only).
    row_tiles, col_tiles : tuple of (int, int, int)
        ``(start, keep_start, keep_stop)`` along each axis; every pair is one tile.
    """

    mode: str
    image_shape: tuple
    tile_size: tuple
    output_size: tuple
    context: int
    alignment: int
    margin: int
    row_tiles: tuple
    col_tiles: tuple

    @property
    def n_tiles(self):
        return len(self.row_tiles) * len(self.col_tiles)


def _valid_axis(length, output_tile, alignment):
    """Aligned output offsets that cover ``length`` pixels; see the module docstring."""
    if output_tile >= length:
        return ((0, 0, length),)
    stride = output_tile // alignment * alignment
    if stride == 0:
        raise ValueError(
            f"Output tiles of {output_tile} pixels are smaller than the pooling grid "
            f"({alignment}); use a larger tile_size"
        )
    last = math.ceil((length - output_tile) / alignment) * alignment
    starts = list(range(0, last, stride)) + [last]
    stops = starts[1:] + [length]
    return tuple((s, s, min(stop, s + output_tile)) for s, stop in zip(starts, stops))


def _same_axis(padded, tile, margin, alignment):
    """Tiles over ``padded`` pixels that drop ``margin`` pixels at inner tile borders."""
    if tile >= padded:
        return ((0, 0, padded),)
    stride = (tile - 2 * margin) // alignment * alignment
    if stride <= 0:
        raise ValueError(
            f"tile_size {tile} leaves nothing after discarding a margin of {margin} pixels on "
            f"both sides (and aligning to {alignment}); use a tile larger than {2 * margin + alignment} "
            "or a smaller margin"
        )
    starts = list(range(0, padded - tile, stride)) + [padded - tile]
    tiles = []
    for start in starts:
        low = start if start == 0 else start + margin
        high = start + tile if start + tile == padded else start + tile - margin
        tiles.append((start, low, high))
    return tuple(tiles)


def _default_margin(geometry):
    """Discarded overlap of 'same' tiles: the smallest multiple of the alignment above the
    valid context of the same depth.

    A pixel's receptive field reaches the context (92 pixels at depth 4) plus part of a
    pooling cell; for this book's U-Nets (two 3x3 convolutions per level) this margin
    was checked to give exact results at depths 2 to 4 (96 pixels at depth 4, 48 at 3,
    24 at 2; one alignment step less is not exact). For other networks it is an
    estimate: pass ``margin=`` to choose.
    """
    alignment = geometry.alignment
    if alignment == 1:
        return geometry.conv_reach
    depth = round(math.log2(alignment))
    if 2**depth != alignment:
        raise ValueError(f"Cannot guess a margin for a down-sampling factor of {alignment}; pass margin=")
    from unet_tutorial import models

    return (models.context(depth) // alignment + 1) * alignment


def plan_tiles(model, image_shape, tile_size=None, mode=None, margin=None):
    """Plan an overlap-tile prediction: tile size and every tile's place.

    Taught in chapter 6 (Overlap-tile on Colab GPUs), which draws the plan.

    Parameters
    ----------
    model : keras.Model or ModelGeometry
    image_shape : tuple of int
        ``(height, width)`` or ``(height, width, channels)`` of the image.
    tile_size : int or (int, int), optional
        Input tile side(s). Defaults to the model's fixed input size; else, for a valid
        model, the input that gives the paper's 388-pixel output at its depth (572 at
        depth 4), and for a same model 512 (or four margins, if more); in both cases
        shrunk to the smallest tile that covers a small image.
    mode : {None, "valid", "same"}
        None detects it from the model; a value is checked against the model.
    margin : int, optional
        'same' models only: pixels dropped at each inner tile border. Default: the
        smallest multiple of the alignment above the valid context of the same depth
        (96 at depth 4), which makes this book's U-Nets exact; for a model with a fixed
        input size too small for that, the largest margin that leaves the tile a stride.

    Returns
    -------
    TilePlan
    """
    geometry = model if isinstance(model, ModelGeometry) else model_geometry(model)
    if mode not in (None, "valid", "same"):
        raise ValueError(f'mode must be None, "valid" or "same", got {mode!r}')
    if mode is not None and mode != geometry.mode:
        raise ValueError(f"mode={mode!r} but the model is a {geometry.mode!r}-padding network")
    height, width = (int(side) for side in image_shape[:2])
    if height < 1 or width < 1:
        raise ValueError(f"Cannot tile an empty image of shape {tuple(image_shape)}")
    if geometry.mode == "valid":
        if margin is not None:
            raise ValueError("margin is for 'same' models; a valid model's tiles never overlap wrongly")
        return _plan_valid(geometry, height, width, tile_size)
    return _plan_same(geometry, height, width, tile_size, margin)


def _tile_sides(geometry, tile_size, defaults):
    if tile_size is None:
        return geometry.fixed_size or defaults
    tile = _pair(tile_size, "tile_size")
    if geometry.fixed_size is not None and tile != geometry.fixed_size:
        raise ValueError(f"This model takes {geometry.fixed_size} inputs only, not tile_size {tile}")
    for side in tile:
        if not geometry.fits(side):
            below = geometry.smallest_fit(side) - geometry.alignment
            below = f"{below} or " if below >= geometry.sizes[0] else ""
            raise ValueError(
                f"tile_size {side} does not fit this {geometry.mode!r} model; nearest: "
                f"{below}{geometry.smallest_fit(side)}"
            )
    return tile


def _plan_valid(geometry, height, width, tile_size):
    c = geometry.context
    default = geometry.smallest_fit(_DEFAULT_VALID_OUTPUT + 2 * c)
    tile = _tile_sides(geometry, tile_size, (default, default))
    if tile_size is None and geometry.fixed_size is None:
        # a small image gets the smallest tile whose output covers it
        tile = tuple(min(t, geometry.smallest_fit(side + 2 * c)) for t, side in zip(tile, (height, width)))
    out = (tile[0] - 2 * c, tile[1] - 2 * c)
    return TilePlan(
        mode="valid",
        image_shape=(height, width),
        tile_size=tile,
        output_size=out,
        context=c,
        alignment=geometry.alignment,
        margin=0,
        row_tiles=_valid_axis(height, out[0], geometry.alignment),
        col_tiles=_valid_axis(width, out[1], geometry.alignment),
    )


def _plan_same(geometry, height, width, tile_size, margin):
    alignment = geometry.alignment
    chosen = margin
    margin = _default_margin(geometry) if margin is None else margin
    if not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"margin must be a non-negative int, got {margin!r}")
    default = max(_DEFAULT_SAME_TILE, math.ceil(4 * margin / alignment) * alignment)
    tile = _tile_sides(geometry, tile_size, (default, default))
    if chosen is None and geometry.fixed_size is not None:
        # the tile cannot grow: keep at least one pooling cell of every tile (not exact then)
        margin = min(margin, (min(tile) - alignment) // 2 // alignment * alignment)
    padded = [math.ceil(side / alignment) * alignment for side in (height, width)]
    if geometry.fixed_size is None:
        tile = tuple(min(t, p) for t, p in zip(tile, padded))
    padded = [max(p, t) for p, t in zip(padded, tile)]
    return TilePlan(
        mode="same",
        image_shape=(height, width),
        tile_size=tile,
        output_size=tile,
        context=0,
        alignment=alignment,
        margin=int(margin),
        row_tiles=_same_axis(padded[0], tile[0], margin, alignment),
        col_tiles=_same_axis(padded[1], tile[1], margin, alignment),
    )


# --------------------------------------------------------------------------------------
# Mirroring and prediction
# --------------------------------------------------------------------------------------


def _mirror_indices(length, start, stop, pad_mode):
    """Source index of positions ``start..stop-1`` of an axis of ``length``, mirrored forever."""
    positions = np.arange(start, stop)
    if pad_mode == "symmetric":
        period = 2 * length
        folded = positions % period
        return np.where(folded < length, folded, period - 1 - folded)
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * length - 2
    folded = positions % period
    return np.where(folded < length, folded, period - folded)


def _check_pad_mode(pad_mode):
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")


def mirror_window(image, top, left, height, width, pad_mode="symmetric"):
    """Cut a ``height`` x ``width`` window whose corner is at (``top``, ``left``), mirroring the image beyond its border.

    The window may reach outside the image by any amount; nothing is padded but the
    window itself. :func:`unet_tutorial.augment.mirror_crop` cuts training inputs with it.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` or ``(H, W, C)``, not empty.
    top, left : int
        Position of the window's first pixel; may be negative.
    height, width : int
        Window size.
    pad_mode : {"symmetric", "reflect"}
        As in ``np.pad``.

    Returns
    -------
    np.ndarray
        ``(height, width[, C])``, a new array.
    """
    _check_pad_mode(pad_mode)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"mirror_window needs a non-empty (H, W) or (H, W, C) array, got shape {image.shape}")
    if height < 0 or width < 0:
        raise ValueError(f"window size must be non-negative, got {height} x {width}")
    return _window(image, top, top + height, left, left + width, pad_mode)


def mirror_pad(image, top, bottom, left, right, pad_mode="symmetric"):
    """Mirror an image outwards by the given number of pixels on each side.

    Same result as ``np.pad(image, ((top, bottom), (left, right), ...), mode=pad_mode)``,
    computed by indexing, so any window of a large pad can be cut without padding
    the whole image.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` or ``(H, W, C)``.
    top, bottom, left, right : int
        Non-negative pad widths; they may exceed the image size.
    pad_mode : {"symmetric", "reflect"}

    Returns
    -------
    np.ndarray
        ``(H + top + bottom, W + left + right[, C])``.
    """
    _check_pad_mode(pad_mode)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"mirror_pad needs a non-empty (H, W) or (H, W, C) array, got shape {image.shape}")
    if min(top, bottom, left, right) < 0:
        raise ValueError("pad widths must be non-negative")
    height, width = image.shape[:2]
    return _window(image, -top, height + bottom, -left, width + right, pad_mode)


def _window(image, row_start, row_stop, col_start, col_stop, pad_mode):
    rows = _mirror_indices(image.shape[0], row_start, row_stop, pad_mode)
    cols = _mirror_indices(image.shape[1], col_start, col_stop, pad_mode)
    return image[rows[:, None], cols[None, :]]


def _as_model_input(image, in_channels):
    """Check an image and return it as float32 ``(H, W, C)``."""
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.ndim == 4:
        raise ValueError(
            f"predict one image at a time: got a 4-D array {image.shape}; loop over the stack, "
            "e.g. [predict_tiled(model, s) for s in stack]"
        )
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] != in_channels:
        raise ValueError(
            f"the model expects {in_channels} channel(s) but the image has shape {image.shape} "
            f"(read as height, width, channels); channels go last"
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"image dtype {image.dtype} is not supported: pass uint8 (scaled to [0, 1]) or "
            "float (used as is, e.g. already scaled to [0, 1])"
        )
    return image.astype(np.float32, copy=False)


def _run_tiles(model, image, plan, batch_size, pad_mode):
    """Predict every tile of ``plan`` in batches and stitch the kept parts."""
    height, width = plan.image_shape
    c = plan.context
    tile_h, tile_w = plan.tile_size
    if plan.mode == "same":
        # pad to the plan's size once; its tiles then lie inside the padded image
        padded_h = plan.row_tiles[-1][0] + tile_h
        padded_w = plan.col_tiles[-1][0] + tile_w
        image = _window(image, 0, padded_h, 0, padded_w, pad_mode)
    tiles = [(row, col) for row in plan.row_tiles for col in plan.col_tiles]
    result = None
    for first in range(0, len(tiles), batch_size):
        group = tiles[first : first + batch_size]
        batch = np.stack(
            [_window(image, r[0] - c, r[0] - c + tile_h, q[0] - c, q[0] - c + tile_w, pad_mode) for r, q in group]
        )
        predictions = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        if result is None:
            result = np.zeros((height, width, predictions.shape[-1]), np.float32)
        for (row, col), prediction in zip(group, predictions):
            (r0, r_lo, r_hi), (c0, c_lo, c_hi) = row, col
            r_hi, c_hi = min(r_hi, height), min(c_hi, width)
            result[r_lo:r_hi, c_lo:c_hi] = prediction[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
    return result


def predict_tiled(
    model,
    image,
    tile_size=None,
    batch_size=4,
    tta=False,
    mode=None,
    *,
    margin=None,
    pad_mode="symmetric",
):
    """Predict a probability map of any-sized image, tile by tile, without seams.

    A valid-padding model gets the paper's overlap-tile strategy: the image is
    mirrored by the model's context, tiles are cut so that their outputs cover the
    image on the pooling grid, and the outputs are stitched. The result equals one pass
    of the model over the whole mirrored image (to float rounding). A same-padding model
    gets overlapping tiles whose inner margins are dropped (see the module docstring).

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model : keras.Model
        A segmentation model with one image input and a sigmoid or softmax output.
    image : np.ndarray
        ``(H, W)`` or ``(H, W, C)``, any size. uint8 is scaled to [0, 1]; floats are
        used as they are.
    tile_size : int or (int, int), optional
        Input tile side(s); see :func:`plan_tiles` for the default.
    batch_size : int
        Tiles per model call: more is faster on a GPU until memory runs out.
    tta : bool
        Average the predictions of the 8 flips and rotations of the image (the
        dihedral group; the paper averaged rotated versions on ISBI 2012), each mapped
        back before averaging. 8 times the work.
    mode : {None, "valid", "same"}
        Tiling scheme; None detects it from the model (see :func:`model_geometry`).
    margin : int, optional
        Same models: pixels dropped at inner tile borders.
    pad_mode : {"symmetric", "reflect"}
        How the image is mirrored beyond its borders.

    Returns
    -------
    np.ndarray
        float32 ``(H, W)`` for a one-channel (sigmoid) model, ``(H, W, K)`` for a
        K-class softmax model.

    Raises
    ------
    ValueError
        For an empty, 1-D or 4-D image, a channel count the model does not take, or a
        tile size that does not fit the model (the message names the nearest ones).
    TypeError
        For an image that is neither uint8 nor float.
    """
    _check_pad_mode(pad_mode)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    geometry = model_geometry(model)
    image = _as_model_input(image, geometry.in_channels)
    transforms = dihedral_transforms() if tta else dihedral_transforms()[:1]
    total = None
    for forward, inverse in transforms:
        view = forward(image)
        plan = plan_tiles(geometry, view.shape, tile_size, mode, margin)
        prediction = inverse(_run_tiles(model, view, plan, batch_size, pad_mode))
        total = prediction if total is None else total + prediction
    total /= len(transforms)
    return total[..., 0] if total.shape[-1] == 1 else total


def naive_tiled(model, image, tile_size=None, pad_mode="constant", batch_size=4):
    """Tile an image without context, to show the seams that overlap-tile avoids.

    The image is cut into non-overlapping blocks the size of an output tile. Each block
    is padded on its own (with zeros by default, or mirrored with
    ``pad_mode="symmetric"``) to an input tile, as if it were a whole image, predicted,
    and put back. Pixels near block borders lose their true context.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model : keras.Model
    image : np.ndarray
        ``(H, W)`` or ``(H, W, C)``; uint8 is scaled to [0, 1].
    tile_size : int or (int, int), optional
        Input tile side(s), as in :func:`predict_tiled`.
    pad_mode : {"constant", "symmetric", "reflect"}
    batch_size : int

    Returns
    -------
    np.ndarray
        Same shapes as :func:`predict_tiled`.
    """
    if pad_mode not in ("constant",) + _PAD_MODES:
        raise ValueError(f'pad_mode must be "constant", "symmetric" or "reflect", got {pad_mode!r}')
    geometry = model_geometry(model)
    image = _as_model_input(image, geometry.in_channels)
    plan = plan_tiles(geometry, image.shape, tile_size)
    (tile_h, tile_w), (out_h, out_w), c = plan.tile_size, plan.output_size, plan.context
    height, width = image.shape[:2]
    blocks = [(r, q) for r in range(0, height, out_h) for q in range(0, width, out_w)]
    result = None
    for first in range(0, len(blocks), batch_size):
        group = blocks[first : first + batch_size]
        canvases = []
        for r, q in group:
            block = image[r : r + out_h, q : q + out_w]
            pads = (c, tile_h - c - block.shape[0], c, tile_w - c - block.shape[1])
            if pad_mode == "constant":
                canvases.append(np.pad(block, ((pads[0], pads[1]), (pads[2], pads[3]), (0, 0))))
            else:
                canvases.append(mirror_pad(block, *pads, pad_mode=pad_mode))
        predictions = np.asarray(model.predict_on_batch(np.stack(canvases)), dtype=np.float32)
        if result is None:
            result = np.zeros((height, width, predictions.shape[-1]), np.float32)
        for (r, q), prediction in zip(group, predictions):
            block_h, block_w = min(out_h, height - r), min(out_w, width - q)
            result[r : r + block_h, q : q + block_w] = prediction[:block_h, :block_w]
    return result[..., 0] if result.shape[-1] == 1 else result


# --------------------------------------------------------------------------------------
# Test-time augmentation
# --------------------------------------------------------------------------------------


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

    ``forward`` mirrors left-right (for the last four) and then turns by 0, 90, 180 or
    270 degrees; ``inverse`` undoes it, so ``inverse(forward(x))`` is ``x``. They act on
    the first two axes of ``(H, W)`` or ``(H, W, C)`` arrays. The identity comes first.

    Taught in chapter 6 (Overlap-tile on Colab GPUs), for test-time augmentation.

    Returns
    -------
    list of (callable, callable)
    """
    return [_dihedral(turns, flip) for flip in (False, True) for turns in range(4)]


# --------------------------------------------------------------------------------------
# GPU memory
# --------------------------------------------------------------------------------------


def _layer_output_elements(model):
    """Elements (per image) of every layer output, descending into nested models."""
    total = 0
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if hasattr(layer, "layers") and getattr(layer, "inputs", None):
            total += _layer_output_elements(layer)
            continue
        for output in layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]:
            dims = tuple(output.shape)[1:]
            if any(d is None for d in dims):
                raise ValueError(f"layer {layer.name} has an unknown output shape {output.shape}")
            total += math.prod(dims)
    return total


def _fixed_size_model(model_or_kwargs, tile):
    import keras

    if isinstance(model_or_kwargs, dict):
        from unet_tutorial import models

        kwargs = dict(model_or_kwargs)
        channels = kwargs.pop("input_shape", (None, None, 1))[-1]
        return models.unet(input_shape=(*tile, channels), **kwargs)
    model = model_or_kwargs
    shape = tuple(model.inputs[0].shape)
    if shape[1:3] == tile:
        return model
    return keras.models.clone_model(model, input_tensors=keras.Input((*tile, shape[3])))


def activation_memory(model_or_kwargs, tile_size, batch_size, dtype_bytes=4, training=True):
    """Estimate the GPU memory of a model: activations plus parameters.

    Rule of thumb, counted layer by layer (convolution and ReLU are separate layers
    here, as the framework keeps both):

    * activations = sum of every layer's output elements x batch x ``dtype_bytes``,
      times 2 for training (the forward maps are kept for the backward pass, and the
      backward pass makes gradients of the same size); at inference this sum is an upper
      bound, since maps no longer needed are freed;
    * parameters: 4 bytes each (float32, also under mixed precision, whose master
      weights stay float32), times 4 for training with Adam (weights, gradients and two
      moment estimates).

    Frameworks add workspace for convolution algorithms and lose some memory to
    fragmentation, so treat the total as a lower bound of what the GPU must hold.

    Taught in chapter 6 (Overlap-tile on Colab GPUs): for the paper's U-Net at 572x572
    in float32 training, activations are about 2.4 GiB per image, so batch 4 needs at
    least 10 GiB and batch 8 at least 19.5 GiB, beyond a T4's 15 GB; mixed precision
    halves the activations. The paper preferred large tiles with batch 1 instead.

    Parameters
    ----------
    model_or_kwargs : keras.Model or dict
        A model (rebuilt for ``tile_size`` when its input size differs), or keyword
        arguments of :func:`unet_tutorial.models.unet` (``input_shape`` gives only the
        channels).
    tile_size : int or (int, int)
        Input tile side(s).
    batch_size : int
    dtype_bytes : int
        4 for float32, 2 for mixed precision (float16 or bfloat16 activations).
    training : bool

    Returns
    -------
    dict
        ``activation_elements`` (per image), ``parameters`` (count),
        ``activation_bytes``, ``parameter_bytes`` and ``total_bytes``.
    """
    tile = _pair(tile_size, "tile_size")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if dtype_bytes not in (1, 2, 4, 8):
        raise ValueError(f"dtype_bytes must be 1, 2, 4 or 8, got {dtype_bytes!r}")
    model = _fixed_size_model(model_or_kwargs, tile)
    elements = _layer_output_elements(model)
    parameters = int(model.count_params())
    activation_bytes = elements * batch_size * dtype_bytes * (2 if training else 1)
    parameter_bytes = parameters * 4 * (4 if training else 1)
    return {
        "activation_elements": int(elements),
        "parameters": parameters,
        "activation_bytes": int(activation_bytes),
        "parameter_bytes": int(parameter_bytes),
        "total_bytes": int(activation_bytes + parameter_bytes),
    }

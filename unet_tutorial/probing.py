"""Tooling: the tiling geometry of a Keras model this package did not build, found by probing.

The U-Nets of :mod:`unet_tutorial.models` carry their depth and padding in their layer
names, and :mod:`unet_tutorial.tiling` reads their context and pooling grid from those.
Any other model is measured here without computing anything: Keras' shape inference
runs on dummy inputs of several sizes, the output size for an input size tells the
context, and the strides of the down-sampling layers give the pooling grid. Nothing is
cached: tiling probes once per prediction.
"""

from __future__ import annotations

import math

import keras

from unet_tutorial import models
from unet_tutorial.tiling import _Geometry, _same_margin

__all__ = ["geometry"]


def _walk_layers(model):
    """Every layer of ``model``, descending into nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


def _downsampling_factor(model):
    """Product of the strides of pooling and strided layers along the height (16 for a depth-4 U-Net)."""
    factor = 1
    for layer in _walk_layers(model):
        strides = getattr(layer, "strides", None)
        if strides is None or "Transpose" in type(layer).__name__:
            continue  # up-sampling layers do not move the pooling grid
        strides = strides if isinstance(strides, (tuple, list)) else (strides,)
        factor *= int(strides[0])
    return factor


def _conv_reach(model):
    """Sum of the kernel half-widths of all convolutions: the reach of a stack without pooling."""
    reach = 0
    for layer in _walk_layers(model):
        kernel = getattr(layer, "kernel_size", None)
        if kernel is not None:
            dilation = getattr(layer, "dilation_rate", (1,))
            reach += (int(kernel[0]) - 1) // 2 * int(dilation[0])
    return reach


def _shape_probe(model):
    """A function ``size -> output side or None``, by shape inference only (no compute).

    Keras' shape inference does not check that the two inputs of a ``Concatenate`` agree,
    so the probe also returns every merge layer's inputs and checks them itself.
    """
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


def _probe_smallest(model, grid, limit=8192):
    """The smallest input side the model accepts, and the context it shows."""
    output_side = _shape_probe(model)
    start = 8 * grid
    while start <= limit:
        for size in range(start, start + grid):
            if output_side(size) is None:
                continue
            while size - grid > 0 and output_side(size - grid) is not None:
                size -= grid  # walk down to the smallest accepted side
            return size, (size - output_side(size)) / 2
        start *= 2
    raise ValueError(
        f"No input side up to {limit} pixels fits this model; is it a segmentation network "
        "whose output has an image's height and width?"
    )


def geometry(model):
    """Measure how ``model`` changes image sizes, as :mod:`unet_tutorial.tiling` needs it.

    Parameters
    ----------
    model : keras.Model
        A built functional or sequential model with one image input ``(None, H, W, C)``
        and one output ``(None, h, w, K)``.

    Returns
    -------
    tiling._Geometry

    Raises
    ------
    TypeError
        If the model does not have one 4-D input and one 4-D output.
    ValueError
        If no input size fits, or the output is larger than the input.
    """
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
            "Tiling needs image input and output shapes (batch, height, width, channels); "
            f"got input {in_shape} and output {out_shape}"
        )
    grid = _downsampling_factor(model)
    height, width = in_shape[1:3]
    fixed = None if height is None or width is None else (int(height), int(width))
    if fixed is not None:
        smallest = min(fixed)
        context = (height - out_shape[1]) / 2
        if context != (width - out_shape[2]) / 2:
            raise ValueError(f"Output {out_shape} does not shrink the input {in_shape} evenly")
    else:
        smallest, context = _probe_smallest(model, grid)
    if context < 0 or not float(context).is_integer():
        raise ValueError(
            f"Cannot tile a model whose output side differs from its input side by {2 * context} "
            "pixels; overlap-tile needs an output smaller by an even number, or equal"
        )
    return _Geometry(
        context=int(context),
        grid=grid,
        smallest=smallest,
        margin=0 if context else _margin(model, grid),
        fixed_size=fixed,
    )


def _margin(model, grid):
    """'Same' tiles' discarded overlap: the U-Net rule of :func:`tiling._same_margin` for a
    U-Net of the same depth, or the convolutions' reach when nothing down-samples."""
    if grid == 1:
        return _conv_reach(model)
    depth = round(math.log2(grid))
    if 2**depth != grid:
        raise ValueError(
            f"Cannot choose a tile margin for a down-sampling factor of {grid} (not a power of 2); "
            "predict the whole image in one pass instead"
        )
    return _same_margin(models.context(depth), grid)

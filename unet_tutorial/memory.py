"""How much GPU memory a model needs: an estimate from its layers' output sizes.

Taught in chapter 6 (Overlap-tile on Colab GPUs), which chooses tile and batch sizes that
fit a Colab GPU.
"""

from __future__ import annotations

import math
import numbers

import keras

from unet_tutorial.tiling import _pair

__all__ = ["activation_memory"]


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


def activation_memory(model, tile_size, batch_size, dtype_bytes=4, training=True):
    """Estimate the GPU memory of a model: activations plus parameters (a lower bound).

    Activations: every layer's output elements x batch x ``dtype_bytes``, twice for
    training (kept for the backward pass, which makes gradients of the same size).
    Parameters: 4 bytes each, four times for training with Adam (weights, gradients,
    two moments). Convolution workspace and fragmentation come on top.

    Taught in chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    model : keras.Model
        Rebuilt for ``tile_size`` when its input size differs.
    tile_size : int or (int, int)
    batch_size : int
    dtype_bytes : int
        4 for float32, 2 for mixed precision (float16 or bfloat16 activations).
    training : bool

    Returns
    -------
    dict
        ``activation_elements`` (per image), ``parameters`` (count), ``activation_bytes``,
        ``parameter_bytes`` and ``total_bytes``.
    """
    tile = _pair(tile_size, "tile_size")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if dtype_bytes not in (1, 2, 4, 8):
        raise ValueError(f"dtype_bytes must be 1, 2, 4 or 8, got {dtype_bytes!r}")
    shape = tuple(model.inputs[0].shape)
    if shape[1:3] != tile:
        model = keras.models.clone_model(model, input_tensors=keras.Input((*tile, shape[3])))
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

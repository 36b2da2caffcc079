"""How much GPU memory a model needs: an estimate from its layers' output sizes.

Taught in chapter 7 (Overlap-tile on Colab GPUs), which chooses tile and batch sizes that
fit a Colab GPU. The estimate is a lower bound: convolution workspace and memory
fragmentation come on top.
"""

from __future__ import annotations

import math

import keras

from unet_tutorial.tiling import _pair

__all__ = ["activation_memory"]


def _output_elements(model):
    """Elements per image of all layer outputs, nested models included (the input is not an output)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _output_elements(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
            total += sum(math.prod(output.shape[1:]) for output in outputs)
    return total


def activation_memory(model, tile_size, batch_size, dtype_bytes=4, training=True):
    """Estimate the GPU memory of ``batch_size`` tiles of ``tile_size`` (int or (h, w)) in a model.

    Activations: all layer outputs x ``dtype_bytes`` (4: float32, 2: mixed precision), twice for
    training (kept for the backward pass, whose gradients are as large). Parameters: 4 bytes each,
    four times for training with Adam (weights, gradients, two moments).
    Taught in chapter 7 (Overlap-tile on Colab GPUs).

    Returns
    -------
    dict of activation_elements (per image), parameters, activation_bytes, parameter_bytes, total_bytes
    """
    tile, shape = _pair(tile_size, "tile_size"), tuple(model.inputs[0].shape)
    if shape[1:3] != tile:  # the same model for the tile size
        model = keras.models.clone_model(model, input_tensors=keras.Input((*tile, shape[3])))
    elements = _output_elements(model)
    estimate = {"activation_elements": elements, "parameters": model.count_params()}
    estimate["activation_bytes"] = elements * batch_size * dtype_bytes * (2 if training else 1)
    estimate["parameter_bytes"] = estimate["parameters"] * 4 * (4 if training else 1)
    estimate["total_bytes"] = estimate["activation_bytes"] + estimate["parameter_bytes"]
    return estimate

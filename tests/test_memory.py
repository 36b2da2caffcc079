"""Tests of unet_tutorial.memory: the GPU memory estimate, counted by hand."""

import keras

from unet_tutorial import memory, models


def test_activation_memory_of_one_convolution_by_hand():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3)(inputs))  # 6 x 6 x 3 out, 3*9+3 weights
    estimate = memory.activation_memory(model, 8, batch_size=2)
    assert estimate["activation_elements"] == 108 and estimate["parameters"] == 30
    assert estimate["activation_bytes"] == 108 * 2 * 4 * 2
    assert estimate["parameter_bytes"] == 30 * 4 * 4
    assert estimate["total_bytes"] == 1728 + 480
    inference = memory.activation_memory(model, 8, batch_size=2, dtype_bytes=2, training=False)
    assert (inference["activation_bytes"], inference["parameter_bytes"]) == (108 * 2 * 2, 30 * 4)


def test_activation_memory_rebuilds_a_model_for_the_tile_size():
    inputs = keras.Input((None, None, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.MaxPooling2D(2)(x))
    estimate = memory.activation_memory(model, (10, 12), batch_size=1, training=False)
    assert estimate["activation_elements"] == 10 * 12 * 4 + 5 * 6 * 4
    assert estimate["parameters"] == 2 * 9 * 4 + 4


def test_activation_memory_of_the_papers_unet():
    paper = models.unet()
    one = memory.activation_memory(paper, 572, batch_size=1)
    four = memory.activation_memory(paper, 572, batch_size=4)
    assert one["parameters"] == 31_030_593
    assert four["activation_bytes"] == 4 * one["activation_bytes"]
    # the first level alone holds 2 convolutions x (conv + ReLU) maps of 64 x ~570^2
    assert one["activation_elements"] > 4 * 64 * 568**2

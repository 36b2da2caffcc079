"""Tests of unet_tutorial.models: tile arithmetic, shapes, parameter counts, seeds."""

import numpy as np
import pytest

from unet_tutorial import models

# ---- tile arithmetic ---------------------------------------------------------------


@pytest.mark.parametrize("size, out", [(572, 388), (700, 516), (188, 4), (684, 500)])
def test_output_size_matches_paper_and_hand_arithmetic(size, out):
    assert models.output_size(size) == out


def _output_by_hand(size, depth):
    """Walk the network level by level, independent of models._valid_output."""
    sizes = [size]
    for _ in range(depth):
        sizes.append((sizes[-1] - 4) / 2)
    size = sizes[-1] - 4
    for _ in range(depth):
        size = size * 2 - 4
    ok = all(float(s).is_integer() and s > 0 for s in sizes) and size > 0
    return int(size) if ok else None


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_valid_sizes_follow_the_mod_rule(depth):
    valid = [s for s in range(1, 400) if _output_by_hand(s, depth)]
    assert valid, "some size must fit"
    step = 2**depth
    assert all(s % step == valid[0] % step for s in valid)
    assert valid == list(range(valid[0], 400, step))
    if depth == 4:
        assert valid[0] % 16 == 12
    for s in valid:
        assert models.output_size(s, depth) == _output_by_hand(s, depth)


def test_same_padding_output_equals_input():
    assert models.output_size(512, padding="same") == 512
    with pytest.raises(ValueError, match="multiple of 16"):
        models.output_size(500, padding="same")


def test_wrong_size_error_names_nearest_valid_sizes():
    with pytest.raises(ValueError, match="556 or 572"):
        models.output_size(570)
    with pytest.raises(ValueError, match="188"):
        models.output_size(100)
    assert models.nearest_valid_sizes(40) == (None, 188)  # far below the smallest size
    assert models.nearest_valid_sizes(573) == (572, 588)


def test_valid_input_size_is_smallest_with_enough_output():
    assert models.valid_input_size(388) == 572
    assert models.valid_input_size(389) == 588
    assert models.valid_input_size(1) == 188
    for want in (1, 50, 388, 500):
        size = models.valid_input_size(want)
        assert models.output_size(size) >= want
        assert _output_by_hand(size - 16, 4) is None or _output_by_hand(size - 16, 4) < want


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: models.unet((None, None, 1), depth=3, base_filters=2), (3, "valid")),
        (lambda: models.unet((None, None, 2), padding="same", depth=2), (2, "same")),
        (lambda: models.mini_unet((None, None, 1), base_filters=2), (2, "same")),
        (lambda: models.pretrained_unet((32, 32, 1), weights=None), (5, "same")),
    ],
    ids=["unet", "same unet", "mini_unet", "pretrained_unet"],
)
def test_depth_and_padding_survive_save_and_load(tmp_path, build, expected):
    import keras

    model = build()
    assert models._depth_and_padding(model) == expected
    model.save(tmp_path / "model.keras")
    assert models._depth_and_padding(keras.saving.load_model(tmp_path / "model.keras")) == expected


def test_depth_and_padding_of_a_model_built_elsewhere_is_none():
    import keras

    inputs = keras.Input((None, None, 1))
    assert models._depth_and_padding(keras.Model(inputs, keras.layers.Conv2D(1, 3)(inputs))) is None


def test_context_and_skip_crops():
    assert models.context(4) == 92 == (572 - 388) // 2
    assert models.context(2) == 20
    assert models.skip_crops(4) == [88, 40, 16, 4]


# ---- the networks ------------------------------------------------------------------


def test_valid_unet_receptive_field_is_188_to_204_pixels_and_never_less_than_the_context():
    """Chapter 4's claim, measured: poke one input pixel at a time and see which outputs move.

    With positive kernels, zero biases and an input of zeros, the poked pixel's signal
    stays positive through every ReLU and max-pool, and no other pixel contributes: an
    output is non-zero exactly when the pixel lies in its receptive field. (Poking an input
    of ones instead would lose the far edges of the field to rounding.)
    """
    import keras

    size = 220  # the second valid size: 36 outputs, two 16-pixel grid periods and a bit
    net = models.unet((size, size, 1), base_filters=1, dropout=0.0, seed=0)
    for layer in net.layers:
        if layer.get_weights():
            kernel, bias = layer.get_weights()
            mean = np.full_like(kernel, 1.0 / (kernel.shape[0] * kernel.shape[1]))
            layer.set_weights([mean, np.zeros_like(bias)])
    row = size // 2
    poked = np.zeros((size, size, size, 1), np.float32)  # image k has input pixel (row, k) set
    poked[np.arange(size), row, np.arange(size), 0] = 1e10
    scores = keras.Model(net.inputs, net.get_layer("classifier").output)  # before the sigmoid
    out = scores.predict(poked, batch_size=55, verbose=0)[..., 0]
    changed = out[:, row - models.context(), :] > 0  # (input column, output column)
    widths, lefts, rights = [], [], []
    for j in range(changed.shape[1]):
        cols = np.flatnonzero(changed[:, j])
        assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1)), "the window has holes"
        centre = j + models.context()
        widths.append(cols.size)
        lefts.append(centre - cols[0])
        rights.append(cols[-1] - centre)
    assert set(widths) == {188, 204}
    assert min(lefts) == min(rights) == models.context() == 92
    assert widths[:16] == [188] * 4 + [204] * 12  # the pattern repeats with the 16-pixel grid
    assert widths[16:32] == widths[:16]


def test_paper_unet_has_31_030_593_parameters_and_388_output():
    net = models.unet((572, 572, 1))
    assert net.count_params() == 31_030_593
    assert net.output_shape == (None, 388, 388, 1)
    # the paper's crop: 568 -> 392 at the top level
    assert net.get_layer("dec1_crop").output.shape[1] == 392


def test_upsample_conv_decoder_and_same_padding():
    net = models.unet((64, 64, 1), padding="same", base_filters=4, upsampling="upsample_conv")
    assert net.output_shape == (None, 64, 64, 1)
    assert net.get_layer("dec1_upsample") is not None


@pytest.mark.parametrize("n_classes, activation", [(1, "sigmoid"), (3, "softmax")])
def test_output_activation_and_range(n_classes, activation):
    net = models.unet((None, None, 1), n_classes=n_classes, depth=2, base_filters=2, seed=0)
    x = np.random.default_rng(0).random((2, 92, 92, 1)).astype("float32")
    y = np.asarray(net.predict(x, verbose=0))
    assert y.shape == (2, models.output_size(92, 2), models.output_size(92, 2), n_classes)
    assert net.layers[-1].name == f"output_{activation}"
    assert y.min() >= 0 and y.max() <= 1
    if n_classes > 1:
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_fully_convolutional_valid_unet_accepts_any_valid_size():
    net = models.unet((None, None, 1), depth=2, base_filters=2, seed=0)
    for size in (44, 60, 300):
        out = net.predict(np.zeros((1, size, size, 1), "float32"), verbose=0)
        assert out.shape[1] == models.output_size(size, 2)


BUILDERS = {
    "unet": lambda seed: models.unet((None, None, 1), depth=2, base_filters=4, seed=seed),
    "unet_upsample_conv": lambda seed: models.unet(
        (None, None, 1), depth=2, base_filters=4, upsampling="upsample_conv", seed=seed
    ),
    "mini_unet": lambda seed: models.mini_unet((32, 32, 1), base_filters=4, seed=seed),
}


def _decoder_weights(model):
    return [w for layer in model.layers if layer.name.startswith("dec") for w in layer.get_weights()]


def test_pretrained_unet_seed_fixes_the_decoder():
    a, b, c = (models.pretrained_unet((32, 32, 1), weights=None, seed=s) for s in (7, 7, 8))
    assert len(_decoder_weights(a)) > 10
    for wa, wb in zip(_decoder_weights(a), _decoder_weights(b)):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(_decoder_weights(a), _decoder_weights(c)))


@pytest.mark.parametrize("builder", BUILDERS.values(), ids=BUILDERS.keys())
def test_same_seed_same_weights_different_seed_different(builder):
    import keras

    keras.utils.set_random_seed(1)
    a = builder(7)
    keras.utils.set_random_seed(2)  # the global seed must not matter, only ours
    b = builder(7)
    c = builder(8)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


def test_readable_names():
    net = models.unet((None, None, 1), depth=3, base_filters=2)
    assert net.name == "unet_valid_d3_f2"
    names = {layer.name for layer in net.layers}
    assert {"enc1_conv1", "bottleneck_conv2", "dec1_crop", "dec3_upconv", "classifier"} <= names


def test_dropout_sits_at_end_of_contracting_path():
    net = models.unet((None, None, 1), depth=3, base_filters=2, dropout=0.5)
    drops = [layer.name for layer in net.layers if layer.__class__.__name__ == "Dropout"]
    assert drops == ["enc3_dropout", "bottleneck_dropout"]
    plain = models.unet((None, None, 1), depth=2, base_filters=2, dropout=0)
    assert not any("Dropout" in layer.__class__.__name__ for layer in plain.layers)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="padding"):
        models.unet((572, 572, 1), padding="full")
    with pytest.raises(ValueError, match="Nearest valid sizes"):
        models.unet((570, 572, 1))
    with pytest.raises(ValueError, match="upsampling"):
        models.unet((None, None, 1), upsampling="bilinear")


def test_mini_unet_shapes_and_parameter_count():
    net = models.mini_unet((128, 128, 1), n_classes=1, base_filters=16)
    assert net.output_shape == (None, 128, 128, 1)
    f = 16  # count by hand: 3x3 convs (k*k*cin+1)*cout, 2x2 transposed convs, 1x1 classifier
    conv = lambda cin, cout, k=3: (k * k * cin + 1) * cout  # noqa: E731
    # fmt: off
    expected = (
        conv(1, f) + conv(f, f)
        + conv(f, 2 * f) + conv(2 * f, 2 * f)
        + conv(2 * f, 4 * f) + conv(4 * f, 4 * f)
        + conv(4 * f, 2 * f, 2) + conv(4 * f, 2 * f) + conv(2 * f, 2 * f)
        + conv(2 * f, f, 2) + conv(2 * f, f) + conv(f, f)
        + conv(f, 1, 1)
    )
    # fmt: on
    assert net.count_params() == expected
    with pytest.raises(ValueError, match="multiple of 4"):
        models.mini_unet((130, 130, 1))


def test_pretrained_unet_offline_and_clear_error(monkeypatch):
    net = models.pretrained_unet((64, 64, 1), n_classes=3, weights=None)
    y = net.predict(np.zeros((1, 64, 64, 1), "float32"), verbose=0)
    assert y.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)

    import keras

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(RuntimeError, match="weights=None"):
        models.pretrained_unet((64, 64, 3), weights="imagenet")
    with pytest.raises(ValueError, match="multiples of 32"):
        models.pretrained_unet((100, 100, 3), weights=None)


def test_pretrained_encoder_frozen_then_unfrozen_through_the_unet_layer():
    net = models.pretrained_unet((64, 64, 3), weights=None, freeze_encoder=True)
    encoder = net.get_layer("mobilenet_v2_features")
    frozen = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    assert not encoder.trainable and encoder.count_params() > 0
    others = sum(
        int(np.prod(w.shape)) for layer in net.layers if layer is not encoder for w in layer.trainable_weights
    )
    assert frozen == others  # nothing of the encoder trains
    encoder.trainable = True
    thawed = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    encoder_trainable = sum(int(np.prod(w.shape)) for w in encoder.trainable_weights)
    assert thawed - frozen == encoder_trainable > 1_500_000  # MobileNetV2's weights train again

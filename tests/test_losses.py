"""Tests for unet_tutorial.losses: every value is checked against NumPy by hand."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from unet_tutorial import losses  # noqa: E402

RNG = np.random.default_rng(1234)
B, H, W = 2, 3, 4


def sigmoid_batch(rng=RNG):
    prob = rng.uniform(0.05, 0.95, (B, H, W, 1)).astype("float32")
    labels = rng.integers(0, 2, (B, H, W))
    weights = rng.uniform(0.0, 5.0, (B, H, W)).astype("float32")
    return prob, labels, weights


def softmax_batch(n_classes=3, rng=RNG):
    logits = rng.normal(size=(B, H, W, n_classes)).astype("float32")
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, n_classes, (B, H, W))
    return logits, prob.astype("float32"), labels


def np_binary_ce(prob, labels):
    p = prob[..., 0].astype(np.float64)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def np_categorical_ce(prob, labels):
    picked = np.take_along_axis(prob.astype(np.float64), labels[..., None], axis=-1)[..., 0]
    return -np.log(picked)


def value(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


# ------------------------------------------------------------ pixel losses
def test_pixel_cross_entropy_sigmoid_matches_numpy_for_both_label_shapes():
    prob, labels, _ = sigmoid_batch()
    expected = np_binary_ce(prob, labels)
    np.testing.assert_allclose(value(losses.pixel_cross_entropy(labels, prob)), expected, rtol=1e-5)
    np.testing.assert_allclose(
        value(losses.pixel_cross_entropy(labels[..., None], prob)), expected, rtol=1e-5
    )


def test_pixel_cross_entropy_sigmoid_from_logits_matches_numpy():
    logits = RNG.normal(scale=3.0, size=(B, H, W, 1)).astype("float32")
    labels = RNG.integers(0, 2, (B, H, W))
    prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected = np_binary_ce(prob, labels)
    got = value(losses.pixel_cross_entropy(labels, logits, from_logits=True))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_pixel_cross_entropy_softmax_sparse_onehot_and_logits_agree_with_numpy():
    logits, prob, labels = softmax_batch()
    expected = np_categorical_ce(prob, labels)
    one_hot = np.eye(3, dtype="float32")[labels]
    np.testing.assert_allclose(value(losses.pixel_cross_entropy(labels, prob)), expected, rtol=1e-5)
    np.testing.assert_allclose(value(losses.pixel_cross_entropy(one_hot, prob)), expected, rtol=1e-5)
    np.testing.assert_allclose(
        value(losses.pixel_cross_entropy(labels, logits, from_logits=True)), expected, rtol=1e-4
    )


def test_bad_label_shape_is_refused():
    prob, labels, _ = sigmoid_batch()
    with pytest.raises(ValueError, match="does not fit"):
        losses.pixel_cross_entropy(labels[:, None], prob)  # (B, 1, H, W)


# ------------------------------------------------ weighted normalisations
@pytest.mark.parametrize("n_classes", [1, 3])
def test_two_normalisations_match_their_numpy_formulas(n_classes):
    if n_classes == 1:
        prob, labels, weights = sigmoid_batch()
        pixel_losses = np_binary_ce(prob, labels)
    else:
        _, prob, labels = softmax_batch(n_classes)
        weights = RNG.uniform(0.0, 5.0, (B, H, W)).astype("float32")
        pixel_losses = np_categorical_ce(prob, labels)
    by_pixels = float(losses.PixelCrossEntropy("pixels")(labels, prob, sample_weight=weights))
    by_weights = float(losses.PixelCrossEntropy("weights")(labels, prob, sample_weight=weights))
    np.testing.assert_allclose(by_pixels, (weights * pixel_losses).sum() / pixel_losses.size, rtol=1e-5)
    np.testing.assert_allclose(by_weights, (weights * pixel_losses).sum() / weights.sum(), rtol=1e-5)
    assert abs(by_pixels - by_weights) > 1e-3  # the test can tell the two apart


def test_uniform_weights_equal_the_unweighted_mean_and_scaling_acts_as_documented():
    prob, labels, weights = sigmoid_batch()
    mean_loss = np_binary_ce(prob, labels).mean()
    ones = np.ones((B, H, W), "float32")
    for normalization in ("pixels", "weights"):
        loss = losses.PixelCrossEntropy(normalization)
        np.testing.assert_allclose(float(loss(labels, prob)), mean_loss, rtol=1e-5)
        np.testing.assert_allclose(float(loss(labels, prob, sample_weight=ones)), mean_loss, rtol=1e-5)
    pixels, weighted = losses.PixelCrossEntropy("pixels"), losses.PixelCrossEntropy("weights")
    np.testing.assert_allclose(
        float(pixels(labels, prob, sample_weight=3 * weights)),
        3 * float(pixels(labels, prob, sample_weight=weights)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        float(weighted(labels, prob, sample_weight=3 * weights)),
        float(weighted(labels, prob, sample_weight=weights)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("normalization", ["pixels", "weights"])
def test_zero_weight_pixels_contribute_nothing(normalization):
    prob, labels, weights = sigmoid_batch()
    weights[:, 0, :] = 0.0
    changed = prob.copy()
    changed[:, 0, :, 0] = 1.0 - changed[:, 0, :, 0]  # very different there
    loss = losses.PixelCrossEntropy(normalization)
    before = float(loss(labels, prob, sample_weight=weights))
    after = float(loss(labels, changed, sample_weight=weights))
    assert after == pytest.approx(before, rel=1e-6)
    assert float(loss(labels, changed)) != pytest.approx(float(loss(labels, prob)), rel=1e-3)


def test_per_image_weights_and_channel_weight_maps_broadcast_over_pixels():
    prob, labels, weights = sigmoid_batch()
    per_image = np.array([1.0, 3.0], "float32")
    spread = np.broadcast_to(per_image[:, None, None], (B, H, W))
    for normalization in ("pixels", "weights"):
        loss = losses.PixelCrossEntropy(normalization)
        assert float(loss(labels, prob, sample_weight=per_image)) == pytest.approx(
            float(loss(labels, prob, sample_weight=spread)), rel=1e-6
        )
        assert float(loss(labels, prob, sample_weight=weights[..., None])) == pytest.approx(
            float(loss(labels, prob, sample_weight=weights)), rel=1e-6
        )


def test_all_zero_weights_give_zero_loss_with_weight_normalisation():
    prob, labels, _ = sigmoid_batch()
    zeros = np.zeros((B, H, W), "float32")
    assert float(losses.PixelCrossEntropy("weights")(labels, prob, sample_weight=zeros)) == 0.0


def test_bad_arguments_raise_clear_errors():
    prob, labels, _ = sigmoid_batch()
    with pytest.raises(ValueError, match="normalization"):
        losses.PixelCrossEntropy("mean")
    with pytest.raises(ValueError, match="sample_weight"):
        losses.PixelCrossEntropy()(labels, prob, sample_weight=np.ones((B, H), "float32"))


# ----------------------------------------------------- inside Keras models
def one_by_one_model(n_classes=1):
    activation = "sigmoid" if n_classes == 1 else "softmax"
    inputs = keras.Input((H, W, 2))
    outputs = keras.layers.Conv2D(n_classes, 1, activation=activation)(inputs)
    return keras.Model(inputs, outputs)


def data(n_images=4, n_classes=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_images, H, W, 2)).astype("float32")
    y = rng.integers(0, max(n_classes, 2), (n_images, H, W))
    w = rng.uniform(0.0, 4.0, (n_images, H, W)).astype("float32")
    return x, y, w


def np_loss(pixel_losses, w, normalization):
    total = (w * pixel_losses).sum()
    return total / (pixel_losses.size if normalization == "pixels" else w.sum())


@pytest.mark.parametrize("normalization", ["pixels", "weights"])
@pytest.mark.parametrize("n_classes", [1, 3])
def test_evaluate_reports_the_numpy_loss_for_one_batch(normalization, n_classes):
    model = one_by_one_model(n_classes)
    model.compile(loss=losses.PixelCrossEntropy(normalization))
    x, y, w = data(n_classes=n_classes)
    prob = model.predict(x, verbose=0)
    pixel_losses = np_binary_ce(prob, y) if n_classes == 1 else np_categorical_ce(prob, y)
    got = model.evaluate(x, y, sample_weight=w, batch_size=len(x), verbose=0)
    assert got == pytest.approx(np_loss(pixel_losses, w, normalization), rel=1e-5)
    unweighted = model.evaluate(x, y, batch_size=len(x), verbose=0)
    assert unweighted == pytest.approx(pixel_losses.mean(), rel=1e-5)


def test_evaluate_averages_batches_so_weights_normalise_per_batch():
    model = one_by_one_model()
    model.compile(loss=losses.PixelCrossEntropy("weights"))
    x, y, w = data(n_images=4)
    pixel_losses = np_binary_ce(model.predict(x, verbose=0), y)
    per_batch = [np_loss(pixel_losses[i : i + 2], w[i : i + 2], "weights") for i in (0, 2)]
    got = model.evaluate(x, y, sample_weight=w, batch_size=2, verbose=0)
    assert got == pytest.approx(np.mean(per_batch), rel=1e-5)
    assert got != pytest.approx(np_loss(pixel_losses, w, "weights"), rel=1e-4)


class WeightedBatches(keras.utils.PyDataset):
    def __init__(self, x, y, w, batch_size):
        super().__init__()
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part], self.w[part]


def test_pydataset_yielding_weight_maps_gives_the_same_loss_as_arrays():
    model = one_by_one_model()
    model.compile(loss=losses.PixelCrossEntropy("pixels"))
    x, y, w = data(n_images=4)
    from_arrays = model.evaluate(x, y, sample_weight=w, batch_size=2, verbose=0)
    from_dataset = model.evaluate(WeightedBatches(x, y, w, 2), verbose=0)
    assert from_dataset == pytest.approx(from_arrays, rel=1e-6)


@pytest.mark.parametrize("normalization", ["pixels", "weights"])
def test_fit_with_all_zero_weights_leaves_the_model_unchanged(normalization):
    model = one_by_one_model()
    loss = losses.PixelCrossEntropy(normalization)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss)
    x, y, _ = data(n_images=4)
    before = [v.copy() for v in model.get_weights()]
    model.fit(x, y, sample_weight=np.zeros((4, H, W), "float32"), batch_size=4, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    model.fit(x, y, sample_weight=np.ones((4, H, W), "float32"), batch_size=4, epochs=1, verbose=0)
    assert any(not np.array_equal(old, new) for old, new in zip(before, model.get_weights()))


@pytest.mark.filterwarnings("ignore:Skipping variable loading")
def test_models_compiled_with_these_losses_save_and_load(tmp_path):
    model = one_by_one_model()
    model.compile(loss=losses.PixelCrossEntropy("weights", from_logits=True))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, losses.PixelCrossEntropy)
    assert loaded.loss.get_config()["normalization"] == "weights"
    assert loaded.loss.from_logits is True

"""Tests of unet_tutorial.callbacks: cell probability, live preview, the challenge's score per epoch."""

import math

import numpy as np
import pytest

from unet_tutorial import callbacks, challenge, models, training
from unet_tutorial.dataset import SegmentationDataset


def tiny_model():
    model = models.unet((None, None, 1), padding="same", depth=1, base_filters=2, dropout=0.0, seed=0)
    model.compile(optimizer="adam", loss="binary_crossentropy", run_eagerly=True)
    return model


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16)).astype("float32")
    return x, (x > 0.5).astype("uint8")


def fit(arrays, run_dir, epochs, watchers, **kwargs):
    x, y = arrays
    data = SegmentationDataset(x, y, 16, batch_size=2, steps_per_epoch=1)
    return training.train(
        tiny_model(), data, run_dir=run_dir, epochs=epochs, callbacks=watchers, verbose=0, **kwargs
    )


# --------------------------------------------------------------------------- cell probability


def test_cell_probability_of_sigmoid_and_softmax_outputs():
    rng = np.random.default_rng(1)
    plain = rng.random((5, 6))
    np.testing.assert_array_equal(callbacks.cell_probability(plain), plain)
    np.testing.assert_array_equal(callbacks.cell_probability(plain[..., None]), plain)
    two = np.stack([1 - plain, plain], axis=-1)
    np.testing.assert_array_equal(callbacks.cell_probability(two), plain)  # class 1, exactly
    logits = rng.normal(size=(5, 6, 4))
    four = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(callbacks.cell_probability(four), 1 - four[..., 0])
    with pytest.raises(ValueError, match="one image's prediction"):
        callbacks.cell_probability(np.zeros((1, 5, 6, 1)))


# --------------------------------------------------------------------------- live preview


class CountingPredict:
    def __init__(self, value=0.25):
        self.calls, self.value = 0, value

    def __call__(self, model, image):
        self.calls += 1
        return np.full(image.shape[:2], self.value, dtype=np.float32)


def test_live_preview_writes_and_replaces_a_png(tmp_path, arrays, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(callbacks, "_in_notebook", lambda: False)
    x, y = arrays
    predict = CountingPredict()
    path = tmp_path / "preview.png"
    preview = callbacks.LivePreview(x[0], y[0], every=2, path=path, predict=predict)
    fit(arrays, tmp_path / "run", 3, [preview])
    assert predict.calls == 2  # epoch 2 and the last epoch
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 2 * image.height  # panels side by side
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview.png", "run"]


def test_live_preview_does_nothing_without_a_place_to_show(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(callbacks, "_in_notebook", lambda: False)
    predict = CountingPredict()
    fit(arrays, tmp_path, 1, [callbacks.LivePreview(arrays[0][0], predict=predict)])
    assert predict.calls == 0


def test_live_preview_updates_one_notebook_display(tmp_path, arrays, monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj.data))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj.data))
        assert display_id is True
        return Handle()

    monkeypatch.setattr(callbacks, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    preview = callbacks.LivePreview(arrays[0][0], arrays[1][0], predict=CountingPredict())
    fit(arrays, tmp_path, 3, [preview])
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(data.startswith(b"\x89PNG") for _, data in shown)


def test_live_preview_crops_to_a_smaller_output_and_uses_tiling_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "_in_notebook", lambda: False)
    image = np.random.default_rng(1).random((40, 40)).astype("float32")
    smaller = callbacks.LivePreview(
        image, image > 0.5, path=tmp_path / "a.png", predict=lambda m, im: np.zeros((20, 20, 1))
    )
    default = callbacks.LivePreview(image, image > 0.5, path=tmp_path / "b.png")
    for preview in (smaller, default):
        preview.set_model(tiny_model())
        preview.set_params({"epochs": 1})
        preview.on_epoch_end(0)
    assert all((tmp_path / name).read_bytes().startswith(b"\x89PNG") for name in ("a.png", "b.png"))
    with pytest.raises(ValueError, match="does not match"):
        callbacks.LivePreview(image, np.zeros((3, 3)))


# --------------------------------------------------------------------------- validation scores


def test_validation_scores_log_v_rand_every_few_epochs(tmp_path, arrays):
    rng = np.random.default_rng(2)
    masks = [(rng.random((24, 24)) > 0.3).astype(np.uint8) for _ in range(2)]
    images = [m.astype("float32") for m in masks]
    perfect = callbacks.ValidationScores(images, masks, predict=lambda model, image: image)
    history = fit(arrays, tmp_path / "a", 1, [perfect], monitor="val_v_rand")
    assert history.history["val_v_rand"] == [1.0]
    assert training.read_state(tmp_path / "a")["best"] == 1.0

    blank = callbacks.ValidationScores(masks, masks, every=2, predict=lambda m, im: np.full(im.shape, 0.6))
    history = fit(arrays, tmp_path / "b", 3, [blank])
    expected = challenge.isbi_scores([np.full(m.shape, 0.6) for m in masks], masks)["v_rand"]
    scores = history.history["val_v_rand"]
    assert math.isnan(scores[0]) and scores[1:] == pytest.approx([expected, expected])
    csv_scores = training.read_history(tmp_path / "b")["val_v_rand"]
    assert math.isnan(csv_scores[0]) and csv_scores[1] == pytest.approx(expected)


def test_validation_scores_use_one_threshold_for_the_stack():
    # Two cells split by a membrane column. Slice a separates them for thresholds in
    # [0.65, 0.9), slice b in [0.2, 0.5): each slice alone scores 1, the stack cannot.
    mask = np.ones((6, 7), np.uint8)
    mask[:, 3] = 0
    a = np.where(mask == 1, 0.9, 0.65)
    b = np.where(mask == 1, 0.5, 0.2)
    scorer = callbacks.ValidationScores([a, b], [mask, mask], predict=lambda model, image: image)
    scorer.set_model(tiny_model())
    per_slice_best = np.mean([challenge.isbi_scores(p, mask)["v_rand"] for p in (a, b)])
    stack = challenge.isbi_scores([a, b], [mask, mask])
    assert per_slice_best == 1.0 and stack["v_rand"] < 1.0
    assert scorer.scores() == {"val_v_rand": stack["v_rand"], "val_v_info": stack["v_info"]}


def test_validation_scores_default_predictor_runs_a_real_model():
    mask = (np.random.default_rng(3).random((20, 20)) > 0.5).astype(np.uint8)
    scorer = callbacks.ValidationScores([mask.astype("float32")], [mask])
    scorer.set_model(tiny_model())
    values = scorer.scores()
    assert set(values) == set(callbacks.ValidationScores.KEYS)
    assert all(0.0 <= value <= 1.0 for value in values.values())
    with pytest.raises(ValueError, match="one mask per image"):
        callbacks.ValidationScores([mask], [])


def test_keras_fit_without_train_gets_the_scores_too(arrays):
    x, y = arrays
    scorer = callbacks.ValidationScores(list(x[:2]), list(y[:2]), predict=lambda model, image: image)
    model = tiny_model()
    history = model.fit(x[..., None], y[..., None].astype("float32"), epochs=1, verbose=0, callbacks=[scorer])
    expected = challenge.isbi_scores(list(x[:2]), list(y[:2]))["v_rand"]
    assert history.history["val_v_rand"][0] == pytest.approx(expected)

"""Tests of unet_tutorial.training: checkpoints, resume, history, callbacks, checked loading."""

import csv
import json
import math
import warnings

import keras
import numpy as np
import pytest

from unet_tutorial import metrics, models, training

STEPS = 2  # batches per epoch of the tiny data below (4 samples, batch 2)


def tiny_model(padding="same", base_filters=2, depth=1, optimizer="adam", seed=0):
    model = models.unet((None, None, 1), padding=padding, depth=depth, base_filters=base_filters,
                        dropout=0.0, seed=seed)
    opt = keras.optimizers.Adam(1e-2) if optimizer == "adam" else keras.optimizers.SGD(1e-2, momentum=0.9)
    model.compile(optimizer=opt, loss="binary_crossentropy", run_eagerly=True)  # no tracing: fast tests
    return model


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    return x, y


def fit(model, arrays, run_dir, epochs, **kwargs):
    x, y = arrays
    kwargs.setdefault("val_data", (x, y))
    return training.train(model, (x, y), run_dir=run_dir, epochs=epochs, batch_size=2, verbose=0, **kwargs)


def history_rows(run_dir):
    with open(run_dir / training.HISTORY, newline="") as file:
        return list(csv.DictReader(file))


def saved_weights(path):
    return keras.models.load_model(path, compile=False).get_weights()


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


class InjectScore(keras.callbacks.Callback):
    """Puts a scripted value into the logs and remembers the weights of each epoch."""

    def __init__(self, values, key="val_score"):
        super().__init__()
        self.values, self.key, self.weights = list(values), key, {}

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values.pop(0)
        self.weights[epoch + 1] = self.model.get_weights()


# --------------------------------------------------------------------------- train / resume


def test_train_writes_run_files_matching_the_model(tmp_path, arrays):
    model = tiny_model()
    history = fit(model, arrays, tmp_path, epochs=2)
    for name in (training.LAST, training.BEST, training.HISTORY, training.STATE):
        assert (tmp_path / name).is_file()
    assert not list(tmp_path.glob(".*partial*")), "temporary files must be renamed away"
    state = json.loads((tmp_path / training.STATE).read_text())
    assert state["epoch"] == 2 and state["monitor"] == "val_loss" and state["mode"] == "min"
    assert [row["epoch"] for row in history_rows(tmp_path)] == ["0", "1"]
    assert same_weights(saved_weights(tmp_path / training.LAST), model.get_weights())
    # best.keras belongs to the epoch with the lowest val_loss
    best_epoch = int(np.argmin(history.history["val_loss"])) + 1
    assert state["best_epoch"] == best_epoch
    assert state["best"] == pytest.approx(min(history.history["val_loss"]))


def test_resume_continues_epoch_count_and_optimizer_state(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=2)
    saved = saved_weights(tmp_path / training.LAST)

    finished = tiny_model(seed=1)  # fresh weights: resume must replace them
    history = fit(finished, arrays, tmp_path, epochs=2)
    assert history.epoch == [] and history.history == {}
    assert same_weights(finished.get_weights(), saved)
    assert int(finished.optimizer.iterations) == 2 * STEPS

    resumed = tiny_model(seed=1)
    history = fit(resumed, arrays, tmp_path, epochs=3)
    assert history.epoch == [2]
    assert int(resumed.optimizer.iterations) == 3 * STEPS  # 2 epochs restored + 1 trained
    assert [row["epoch"] for row in history_rows(tmp_path)] == ["0", "1", "2"]
    assert training.read_state(tmp_path)["epoch"] == 3


def test_resume_sets_the_epoch_of_an_epoch_counting_dataset(tmp_path, arrays):
    x, y = arrays

    class CountingData(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch, self.seen = 0, []

        def __len__(self):
            return 1

        def __getitem__(self, index):
            self.seen.append(self.epoch)
            return x[:2], y[:2]

        def on_epoch_end(self):
            self.epoch += 1

    training.train(tiny_model(), CountingData(), run_dir=tmp_path, epochs=1, verbose=0)
    data = CountingData()
    training.train(tiny_model(), data, run_dir=tmp_path, epochs=2, verbose=0)
    assert data.seen and min(data.seen) == 1  # epoch 0's crops are not drawn again


def test_existing_run_is_never_replaced_silently(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1)
    before = {name: (tmp_path / name).read_bytes() for name in (training.LAST, training.HISTORY)}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fit(tiny_model(), arrays, tmp_path, epochs=1, resume=False)
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())

    fit(tiny_model(), arrays, tmp_path, epochs=1, resume=False, overwrite=True)
    assert len(history_rows(tmp_path)) == 1  # a fresh history, not appended


def test_folder_without_last_checkpoint_is_refused_and_other_files_are_left(tmp_path, arrays):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    fit(tiny_model(), arrays, tmp_path, epochs=1)  # unrelated files do not block a run
    assert notes.read_text() == "mine"
    (tmp_path / training.LAST).unlink()
    with pytest.raises(FileExistsError, match="no last.keras"):
        fit(tiny_model(), arrays, tmp_path, epochs=2)


def test_best_checkpoint_follows_monitor_across_resume(tmp_path, arrays):
    first = InjectScore([0.5, 0.9])
    fit(tiny_model(), arrays, tmp_path, epochs=2, callbacks=[first], monitor="val_score")
    state = training.read_state(tmp_path)
    assert state["mode"] == "max" and state["best"] == 0.9 and state["best_epoch"] == 2
    assert same_weights(saved_weights(tmp_path / training.BEST), first.weights[2])

    # a worse score after resuming must not replace best.keras (a fresh ModelCheckpoint would)
    second = InjectScore([0.7])
    fit(tiny_model(), arrays, tmp_path, epochs=3, callbacks=[second], monitor="val_score")
    assert training.read_state(tmp_path)["best_epoch"] == 2
    assert same_weights(saved_weights(tmp_path / training.BEST), first.weights[2])

    third = InjectScore([0.95])
    fit(tiny_model(), arrays, tmp_path, epochs=4, callbacks=[third], monitor="val_score")
    assert training.read_state(tmp_path)["best_epoch"] == 4
    assert same_weights(saved_weights(tmp_path / training.BEST), third.weights[4])


def test_nan_score_never_counts_as_best(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=2, callbacks=[InjectScore([math.nan, 0.3])], monitor="val_score")
    assert training.read_state(tmp_path)["best_epoch"] == 2


def test_monitor_without_validation_data_falls_back_to_loss(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1, val_data=None)
    state = training.read_state(tmp_path)
    assert state["monitor"] == "loss" and state["best_epoch"] == 1


def test_missing_monitor_warns_and_writes_no_best(tmp_path, arrays):
    with pytest.warns(UserWarning, match="not in the training logs"):
        fit(tiny_model(), arrays, tmp_path, epochs=1, monitor="val_nothing")
    assert not (tmp_path / training.BEST).exists()


def test_train_needs_a_compiled_model_and_valid_arguments(tmp_path, arrays):
    model = models.unet((None, None, 1), padding="same", depth=2, base_filters=2)
    with pytest.raises(ValueError, match="Compile"):
        fit(model, arrays, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        fit(tiny_model(), arrays, tmp_path, epochs=0)
    with pytest.raises(ValueError, match="sample_weight"):
        training.train(tiny_model(), (arrays[0],), run_dir=tmp_path, epochs=1)


def test_resume_into_other_architecture_explains(tmp_path, arrays):
    fit(tiny_model(base_filters=2), arrays, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="Cannot resume.*base_filters: file has 2, model has 4"):
        fit(tiny_model(base_filters=4), arrays, tmp_path, epochs=2)


def test_history_rows_after_crash_are_trimmed(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=2)
    # as if the session died after the CSV row of epoch 2 but before its checkpoint
    state = training.read_state(tmp_path)
    state["epoch"] = 1
    (tmp_path / training.STATE).write_text(json.dumps(state))
    fit(tiny_model(), arrays, tmp_path, epochs=2)
    assert [row["epoch"] for row in history_rows(tmp_path)] == ["0", "1"]


def test_history_logger_keeps_columns_when_logs_change(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1, callbacks=[InjectScore([0.1], key="alpha")])
    history = fit(tiny_model(), arrays, tmp_path, epochs=2, callbacks=[InjectScore([0.2], key="beta")])
    rows = history_rows(tmp_path)
    assert list(rows[0]) == list(rows[1]) and "beta" not in rows[1]
    assert rows[1]["alpha"] == "NA"
    assert float(rows[1]["loss"]) == pytest.approx(history.history["loss"][0])


# --------------------------------------------------------------------------- history & curves


def test_read_history_from_every_source(tmp_path, arrays):
    history = fit(tiny_model(), arrays, tmp_path, epochs=2)
    from_csv = training.read_history(tmp_path / training.HISTORY)
    assert from_csv["epoch"] == [1, 2]
    np.testing.assert_allclose(from_csv["loss"], history.history["loss"], rtol=1e-6)
    assert training.read_history(tmp_path)["loss"] == from_csv["loss"]
    from_object = training.read_history(history)
    assert from_object["epoch"] == [1, 2] and from_object["loss"] == history.history["loss"]
    parsed = training.read_history({"loss": [1, "NA"]})
    assert parsed["epoch"] == [1, 2] and parsed["loss"][0] == 1.0 and math.isnan(parsed["loss"][1])
    with pytest.raises(FileNotFoundError, match="No history"):
        training.read_history(tmp_path / "elsewhere")


def test_plot_learning_curves_draws_the_history():
    import matplotlib.pyplot as plt

    history = {"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6], "accuracy": [0.5, 0.7, 0.8],
               "val_accuracy": ["NA", "NA", "NA"]}
    figure = training.plot_learning_curves(history)
    try:
        axes = figure.axes
        assert [a.get_title() for a in axes] == ["accuracy", "loss"]
        loss_lines = {line.get_label(): line.get_ydata().tolist() for line in axes[1].lines}
        assert loss_lines == {"training": [0.9, 0.5, 0.4], "validation": [1.0, 0.7, 0.6]}
        assert len(axes[0].lines) == 1  # validation accuracy has no values
    finally:
        plt.close(figure)
    with pytest.raises(ValueError, match="empty"):
        training.plot_learning_curves({})
    with pytest.raises(ValueError, match="No values"):
        training.plot_learning_curves(history, keys=["dice"])


# --------------------------------------------------------------------------- callbacks


class CountingPredict:
    def __init__(self, value=0.25):
        self.calls, self.value = 0, value

    def __call__(self, model, image):
        self.calls += 1
        return np.full(image.shape[:2], self.value, dtype=np.float32)


def test_live_preview_writes_and_replaces_a_png(tmp_path, arrays):
    from PIL import Image

    x, y = arrays
    predict = CountingPredict()
    path = tmp_path / "preview.png"
    preview = training.LivePreview(x[0, ..., 0], y[0, ..., 0], every=2, path=path, predict=predict)
    fit(tiny_model(), arrays, tmp_path / "run", epochs=3, callbacks=[preview])
    assert predict.calls == 2  # epoch 2 and the last epoch
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 2 * image.height  # three panels side by side
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview.png", "run"]


def test_live_preview_does_nothing_without_a_place_to_show(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(training, "_in_notebook", lambda: False)
    predict = CountingPredict()
    preview = training.LivePreview(arrays[0][0], every=1, predict=predict)
    fit(tiny_model(), arrays, tmp_path, epochs=1, callbacks=[preview])
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

    monkeypatch.setattr(training, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    preview = training.LivePreview(arrays[0][0, ..., 0], arrays[1][0, ..., 0], predict=CountingPredict())
    fit(tiny_model(), arrays, tmp_path, epochs=3, callbacks=[preview])
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(data.startswith(b"\x89PNG") for _, data in shown)


def test_live_preview_crops_to_a_smaller_output_and_uses_tiling_by_default(tmp_path, arrays):
    image = np.random.default_rng(1).random((40, 40)).astype("float32")
    preview = training.LivePreview(image, image > 0.5, predict=lambda m, im: np.zeros((20, 20)))
    preview.set_model(tiny_model())
    assert preview.render(1).startswith(b"\x89PNG")
    default = training.LivePreview(image, image > 0.5)
    default.set_model(tiny_model())
    assert default.render(1).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="does not match"):
        training.LivePreview(image, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="every"):
        training.LivePreview(image, every=0)


def test_validation_scores_log_v_rand(tmp_path, arrays):
    rng = np.random.default_rng(2)
    masks = [(rng.random((24, 24)) > 0.3).astype(np.uint8) for _ in range(2)]
    images = [m.astype("float32") for m in masks]
    perfect = training.ValidationScores(images, masks, predict=lambda model, image: image)
    history = fit(tiny_model(), arrays, tmp_path / "a", epochs=1, callbacks=[perfect], monitor="val_v_rand")
    assert history.history["val_v_rand"] == [1.0]
    assert training.read_state(tmp_path / "a")["mode"] == "max"

    blank = training.ValidationScores(images, masks, every=2, predict=lambda model, image: np.full(image.shape, 0.6))
    history = fit(tiny_model(), arrays, tmp_path / "b", epochs=3, callbacks=[blank])
    expected = np.mean([metrics.isbi_scores(np.full(m.shape, 0.6), m)["v_rand"] for m in masks])
    scores = history.history["val_v_rand"]
    assert math.isnan(scores[0]) and scores[1] == pytest.approx(expected) and scores[2] == pytest.approx(expected)
    csv_scores = training.read_history(tmp_path / "b")["val_v_rand"]
    assert math.isnan(csv_scores[0]) and csv_scores[1] == pytest.approx(expected)


def test_validation_scores_default_predictor_runs_a_real_model(arrays):
    model = tiny_model()
    mask = (np.random.default_rng(3).random((20, 20)) > 0.5).astype(np.uint8)
    scorer = training.ValidationScores([mask.astype("float32")], [mask])
    scorer.set_model(model)
    values = scorer.scores()
    assert 0.0 <= values["v_rand"] <= 1.0 and 0.0 <= values["v_info"] <= 1.0
    with pytest.raises(ValueError, match="same, non-zero number"):
        training.ValidationScores([mask], [])


# --------------------------------------------------------------------------- checked loading


@pytest.fixture(scope="module")
def saved_valid(tmp_path_factory):
    model = tiny_model(padding="valid", base_filters=2, depth=2)
    path = tmp_path_factory.mktemp("saved") / "valid.keras"
    model.save(path)
    return path, model


def test_describe_architecture_of_model_and_file_agree(saved_valid):
    path, model = saved_valid
    described = training.describe_architecture(model)
    assert described == {**training.describe_architecture(path), "n_params": model.count_params()}
    assert {k: described[k] for k in ("channels", "n_classes", "base_filters", "depth", "padding")} == {
        "channels": 1, "n_classes": 1, "base_filters": 2, "depth": 2, "padding": "valid"}
    mini = models.mini_unet((None, None, 3), n_classes=3, base_filters=8)
    assert training.describe_architecture(mini)["depth"] == 2
    assert training.describe_architecture(mini)["n_classes"] == 3
    assert training.describe_architecture(mini)["channels"] == 3


def test_load_weights_checked_loads_matching_weights(saved_valid):
    path, model = saved_valid
    other = tiny_model(padding="valid", base_filters=2, depth=2, seed=5)
    assert not same_weights(other.get_weights(), model.get_weights())
    training.load_weights_checked(other, path)
    assert same_weights(other.get_weights(), model.get_weights())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(padding="same"), "padding: file has 'valid', model has 'same'"),
        (dict(base_filters=4), "base_filters: file has 2, model has 4"),
        (dict(depth=3), "depth: file has 2, model has 3"),
    ],
)
def test_load_weights_checked_names_the_difference(saved_valid, kwargs, message):
    path, _ = saved_valid
    settings = dict(padding="valid", base_filters=2, depth=2) | kwargs
    with pytest.raises(ValueError, match=message) as error:
        training.load_weights_checked(tiny_model(**settings), path)
    assert "Build the model with the saved settings" in str(error.value)


def test_load_weights_checked_wraps_keras_errors_for_weight_files(tmp_path):
    path = tmp_path / "model.weights.h5"
    tiny_model(base_filters=2).save_weights(path)
    with pytest.raises(ValueError, match="(?s)do not fit model.*Keras said"):
        training.load_weights_checked(tiny_model(base_filters=4), path)


def test_load_weights_checked_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        training.load_weights_checked(tiny_model(), tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="is a folder"):
        training.load_weights_checked(tiny_model(), tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .keras"):
        training.load_weights_checked(tiny_model(), tmp_path / "notes.txt")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .keras"):
        training.load_weights_checked(tiny_model(), tmp_path / "broken.keras")


def test_other_optimizer_state_gives_a_clear_warning(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1)
    sgd = tiny_model(optimizer="sgd")
    sgd.optimizer.build(sgd.trainable_variables)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        training.load_weights_checked(sgd, tmp_path / training.LAST)
    assert any("fresh optimizer state" in str(w.message) for w in caught)
    assert same_weights(sgd.get_weights(), saved_weights(tmp_path / training.LAST))


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # saved before any training step
def test_load_model_checked(tmp_path, saved_valid):
    from unet_tutorial import losses

    path, model = saved_valid
    loaded = training.load_model_checked(path, expected={"padding": "valid", "base_filters": 2})
    assert same_weights(loaded.get_weights(), model.get_weights())
    with pytest.raises(ValueError, match="base_filters: file has 2, expected has 8"):
        training.load_model_checked(path, expected={"base_filters": 8})
    with pytest.raises(ValueError, match="padding"):
        training.load_model_checked(path, expected=tiny_model(padding="same"))
    with pytest.raises(ValueError, match="unknown keys"):
        training.load_model_checked(path, expected={"filters": 2})
    with pytest.raises(FileNotFoundError):
        training.load_model_checked(tmp_path / "nothing.keras")

    custom = tiny_model()
    custom.compile(optimizer="adam", loss=losses.PixelCrossEntropy(normalization="weights"))
    custom.save(tmp_path / "custom.keras")
    restored = training.load_model_checked(tmp_path / "custom.keras")
    assert restored.loss.normalization == "weights"

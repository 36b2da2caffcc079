"""Tests of unet_tutorial.training: checkpoints, resume, history, the monitor's mode."""

import csv
import json
import math

import keras
import numpy as np
import pytest

from unet_tutorial import callbacks, metrics, models, training
from unet_tutorial.dataset import SegmentationDataset

STEPS = 2  # batches per epoch of the crops below


def tiny_model(base_filters=2, seed=0, metrics_=()):
    model = models.unet(
        (None, None, 1), padding="same", depth=1, base_filters=base_filters, dropout=0.0, seed=seed
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="binary_crossentropy",
        metrics=list(metrics_),
        run_eagerly=True,
    )  # no tracing: fast tests
    return model


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16)).astype("float32")
    return x, (x > 0.5).astype("uint8")


def crops(arrays, dataset_class=SegmentationDataset):
    x, y = arrays
    return dataset_class(x, y, 16, batch_size=2, steps_per_epoch=STEPS)


def fit(model, arrays, run_dir, epochs, **kwargs):
    x, y = arrays
    kwargs.setdefault("val_data", (x[..., None], y[..., None].astype("float32")))
    return training.train(model, crops(arrays), run_dir=run_dir, epochs=epochs, verbose=0, **kwargs)


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


# --------------------------------------------------------------------------- the monitor's mode


def test_every_name_the_package_logs_has_its_mode():
    names = {"loss"} | {metric.name for n_classes in (1, 3) for metric in metrics.training_metrics(n_classes)}
    assert names == {"loss", "accuracy", "iou_cell", "mean_iou", "dice_cell"}
    for name in names:
        expected = "min" if name == "loss" else "max"
        assert training._monitor_mode(name) == training._monitor_mode(f"val_{name}") == expected
    for key in callbacks.ValidationScores.KEYS:
        assert training._monitor_mode(key) == "max"
    assert training._monitor_mode("val_dice_cell") == "max"  # "auto" guessed "min" from the name


def test_unknown_monitor_needs_an_explicit_mode():
    with pytest.raises(ValueError, match='mode="max" or mode="min"'):
        training._monitor_mode("val_iou_loss")
    assert training._monitor_mode("val_iou_loss", mode="min") == "min"
    with pytest.raises(ValueError, match='mode="max" or mode="min"'):
        training._monitor_mode("val_loss", mode="auto")  # Keras' "auto" guesses; the book does not


def test_a_real_run_logs_only_names_with_a_mode(tmp_path, arrays):
    x, y = arrays
    scores = callbacks.ValidationScores(list(x[:1]), list(y[:1]), predict=lambda model, image: image)
    model = tiny_model(metrics_=metrics.training_metrics(1))
    history = fit(model, arrays, tmp_path, epochs=1, callbacks=[scores], monitor="val_dice_cell")
    for key in history.history:
        assert training._monitor_mode(key) in ("min", "max")
    assert training.read_state(tmp_path)["mode"] == "max"


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
    assert state["best_epoch"] == int(np.argmin(history.history["val_loss"])) + 1
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


def test_resume_draws_the_crops_of_the_next_epoch(tmp_path, arrays):
    class Recording(SegmentationDataset):
        def __getitem__(self, index):
            self.seen = getattr(self, "seen", []) + [self.epoch]
            return super().__getitem__(index)

    training.train(tiny_model(), crops(arrays), run_dir=tmp_path, epochs=1, verbose=0)
    data = crops(arrays, Recording)
    training.train(tiny_model(), data, run_dir=tmp_path, epochs=2, verbose=0)
    assert min(data.seen) == 1  # epoch 0's crops are not drawn again


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
    fit(tiny_model(), arrays, tmp_path, epochs=2, callbacks=[first], monitor="val_score", mode="max")
    state = training.read_state(tmp_path)
    assert state["mode"] == "max" and state["best"] == 0.9 and state["best_epoch"] == 2
    assert same_weights(saved_weights(tmp_path / training.BEST), first.weights[2])

    # a worse score after resuming must not replace best.keras (a fresh ModelCheckpoint would)
    second = InjectScore([0.7])
    fit(tiny_model(), arrays, tmp_path, epochs=3, callbacks=[second], monitor="val_score", mode="max")
    assert training.read_state(tmp_path)["best_epoch"] == 2
    assert same_weights(saved_weights(tmp_path / training.BEST), first.weights[2])

    third = InjectScore([0.95])
    fit(tiny_model(), arrays, tmp_path, epochs=4, callbacks=[third], monitor="val_score", mode="max")
    assert training.read_state(tmp_path)["best_epoch"] == 4
    assert same_weights(saved_weights(tmp_path / training.BEST), third.weights[4])


def test_changed_monitor_warns_and_restarts_the_best(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1)
    with pytest.warns(UserWarning, match="chosen by 'val_loss', now by 'val_score'"):
        fit(
            tiny_model(),
            arrays,
            tmp_path,
            epochs=2,
            callbacks=[InjectScore([0.1])],
            monitor="val_score",
            mode="max",
        )
    assert training.read_state(tmp_path)["best_epoch"] == 2


def test_nan_score_never_counts_as_best(tmp_path, arrays):
    scores = InjectScore([math.nan, 0.3])
    fit(tiny_model(), arrays, tmp_path, epochs=2, callbacks=[scores], monitor="val_score", mode="min")
    assert training.read_state(tmp_path)["best_epoch"] == 2


def test_monitor_without_validation_data_falls_back_to_loss(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1, val_data=None)
    state = training.read_state(tmp_path)
    assert state["monitor"] == "loss" and state["best_epoch"] == 1


def test_missing_monitor_warns_and_writes_no_best(tmp_path, arrays):
    with pytest.warns(UserWarning, match="No best.keras: 'val_v_rand' is not logged"):
        fit(tiny_model(), arrays, tmp_path, epochs=1, monitor="val_v_rand")
    assert not (tmp_path / training.BEST).exists()


def test_train_needs_a_compiled_model(tmp_path, arrays):
    model = models.unet((None, None, 1), padding="same", depth=1, base_filters=2)
    with pytest.raises(ValueError, match="Compile"):
        fit(model, arrays, tmp_path, epochs=1)


def test_resume_into_other_architecture_explains(tmp_path, arrays):
    fit(tiny_model(base_filters=2), arrays, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="last.keras .*base_filters: file has 2, model has 4"):
        fit(tiny_model(base_filters=4), arrays, tmp_path, epochs=2)


def test_history_rows_beyond_the_state_are_dropped(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=2)
    # as if Drive had synced history.csv of epoch 2 but not its state.json
    state = training.read_state(tmp_path)
    state["epoch"] = 1
    (tmp_path / training.STATE).write_text(json.dumps(state))
    fit(tiny_model(), arrays, tmp_path, epochs=2)
    assert [row["epoch"] for row in history_rows(tmp_path)] == ["0", "1"]


def test_history_keeps_its_columns_when_the_logs_change(tmp_path, arrays):
    fit(tiny_model(), arrays, tmp_path, epochs=1, callbacks=[InjectScore([0.1], key="alpha")])
    history = fit(tiny_model(), arrays, tmp_path, epochs=2, callbacks=[InjectScore([0.2], key="beta")])
    rows = history_rows(tmp_path)
    assert list(rows[0]) == list(rows[1]) and "beta" not in rows[1]
    assert rows[1]["alpha"] == "NA"
    assert float(rows[1]["loss"]) == pytest.approx(history.history["loss"][0])


def test_read_state_of_a_folder_without_a_run_is_none(tmp_path):
    assert training.read_state(tmp_path / "elsewhere") is None
    (tmp_path / training.STATE).write_text('{"epoch": 3, "monitor": "val_v_rand", "best": 0.9}')
    assert training.read_state(tmp_path)["epoch"] == 3


# --------------------------------------------------------------------------- history & curves


def test_read_history_from_every_source(tmp_path, arrays):
    history = fit(tiny_model(), arrays, tmp_path, epochs=2)
    from_csv = training.read_history(tmp_path / training.HISTORY)
    assert from_csv["epoch"] == [1, 2]
    np.testing.assert_allclose(from_csv["loss"], history.history["loss"], rtol=1e-6)
    assert training.read_history(tmp_path)["loss"] == from_csv["loss"]
    from_object = training.read_history(history)
    assert from_object["epoch"] == [1, 2] and from_object["loss"] == history.history["loss"]
    resumed = fit(tiny_model(), arrays, tmp_path, epochs=3)  # this session's epoch only, counted on
    assert training.read_history(resumed)["epoch"] == [3]
    with pytest.raises(FileNotFoundError):
        training.read_history(tmp_path / "elsewhere")


def test_read_history_reads_na_as_nan(tmp_path):
    (tmp_path / training.HISTORY).write_text("epoch,loss,val_v_rand\n0,0.5,NA\n1,0.25,0.75\n")
    history = training.read_history(tmp_path)
    assert history["epoch"] == [1, 2] and history["loss"] == [0.5, 0.25]
    assert math.isnan(history["val_v_rand"][0]) and history["val_v_rand"][1] == 0.75


def test_plot_learning_curves_draws_the_history(tmp_path):
    import matplotlib.pyplot as plt

    history = tmp_path / training.HISTORY
    history.write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,0.9,NA,1.0\n1,0.7,0.05,NA,0.7\n2,0.8,0.04,NA,0.6\n"
    )
    figure = training.plot_learning_curves(history)
    try:
        axes = figure.axes
        assert [a.get_title() for a in axes] == ["accuracy", "loss"]
        loss_lines = {line.get_label(): line.get_ydata().tolist() for line in axes[1].lines}
        assert loss_lines == {"training": [0.9, 0.05, 0.04], "validation": [1.0, 0.7, 0.6]}
        assert axes[1].get_yscale() == "log" and axes[0].get_yscale() == "linear"
        assert len(axes[0].lines) == 1  # validation accuracy has no values
    finally:
        plt.close(figure)
    empty = keras.callbacks.History()
    empty.on_train_begin()  # what train returns when there is nothing to train
    with pytest.raises(ValueError, match="empty"):
        training.plot_learning_curves(empty)
    with pytest.raises(ValueError, match="No values"):
        training.plot_learning_curves(history, keys=["dice"])

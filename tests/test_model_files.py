"""Tests of unet_tutorial.model_files: loading saved U-Nets, with the architecture checked."""

import warnings

import keras
import numpy as np
import pytest

from unet_tutorial import model_files, models


def tiny_model(padding="same", base_filters=2, depth=1, optimizer="adam", seed=0):
    model = models.unet(
        (None, None, 1), padding=padding, depth=depth, base_filters=base_filters, dropout=0.0, seed=seed
    )
    opt = keras.optimizers.Adam(1e-2) if optimizer == "adam" else keras.optimizers.SGD(1e-2, momentum=0.9)
    model.compile(optimizer=opt, loss="binary_crossentropy", run_eagerly=True)
    return model


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


@pytest.fixture(scope="module")
def saved_valid(tmp_path_factory):
    model = tiny_model(padding="valid", base_filters=2, depth=2)
    path = tmp_path_factory.mktemp("saved") / "valid.keras"
    model.save(path)
    return path, model


def test_architecture_of_model_and_file_agree(saved_valid):
    path, model = saved_valid
    described = model_files._model_architecture(model)
    assert (
        described
        == model_files._file_architecture(path)
        == {"channels": 1, "n_classes": 1, "base_filters": 2, "depth": 2, "padding": "valid"}
    )
    mini = model_files._model_architecture(models.mini_unet((None, None, 3), n_classes=3, base_filters=8))
    assert (mini["depth"], mini["n_classes"], mini["channels"]) == (2, 3, 3)


def test_load_weights_checked_loads_matching_weights(saved_valid):
    path, model = saved_valid
    other = tiny_model(padding="valid", base_filters=2, depth=2, seed=5)
    assert not same_weights(other.get_weights(), model.get_weights())
    model_files.load_weights_checked(other, path)
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
        model_files.load_weights_checked(tiny_model(**settings), path)
    assert "Build the model with the saved settings" in str(error.value)


def test_load_weights_checked_wraps_keras_errors_for_weight_files(tmp_path):
    path = tmp_path / "model.weights.h5"
    tiny_model(base_filters=2).save_weights(path)
    with pytest.raises(ValueError, match="(?s)do not fit model.*base_filters=4.*Keras said"):
        model_files.load_weights_checked(tiny_model(base_filters=4), path)


def test_load_weights_checked_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        model_files.load_weights_checked(tiny_model(), tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="is a folder"):
        model_files.load_weights_checked(tiny_model(), tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .keras"):
        model_files.load_weights_checked(tiny_model(), tmp_path / "notes.txt")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .keras"):
        model_files.load_weights_checked(tiny_model(), tmp_path / "broken.keras")


def test_other_optimizer_state_gives_a_clear_warning(tmp_path):
    adam = tiny_model()
    adam.fit(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1)), verbose=0)
    adam.save(tmp_path / "adam.keras")
    sgd = tiny_model(optimizer="sgd")
    sgd.optimizer.build(sgd.trainable_variables)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_files.load_weights_checked(sgd, tmp_path / "adam.keras")
    assert any("fresh optimizer state" in str(w.message) for w in caught)
    assert same_weights(sgd.get_weights(), adam.get_weights())


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # saved before training
def test_load_model_checked(tmp_path, saved_valid):
    from unet_tutorial import losses

    path, model = saved_valid
    loaded = model_files.load_model_checked(path, expected={"padding": "valid", "base_filters": 2})
    assert same_weights(loaded.get_weights(), model.get_weights())
    assert model_files.load_model_checked(path, expected=model, compile=False).name == model.name
    with pytest.raises(ValueError, match="base_filters: file has 2, expected has 8"):
        model_files.load_model_checked(path, expected={"base_filters": 8})
    with pytest.raises(ValueError, match="padding"):
        model_files.load_model_checked(path, expected=tiny_model(padding="same"))
    with pytest.raises(ValueError, match="unknown keys"):
        model_files.load_model_checked(path, expected={"filters": 2})
    with pytest.raises(FileNotFoundError):
        model_files.load_model_checked(tmp_path / "nothing.keras")

    custom = tiny_model()
    custom.compile(optimizer="adam", loss=losses.PixelCrossEntropy(normalization="weights"))
    custom.save(tmp_path / "custom.keras")
    restored = model_files.load_model_checked(tmp_path / "custom.keras")
    assert restored.loss.normalization == "weights"

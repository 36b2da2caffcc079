"""Tooling: loading saved U-Nets with a clear message when a file holds another architecture.

A 'same' and a 'valid' U-Net have weights of identical shapes, so Keras loads one into the
other without complaint, and the result predicts differently. These functions first read
the architecture stored in a ``.keras`` file (its ``config.json``, without building the
model) and compare what decides whether weights fit: input channels, classes, filters of
the first level, depth and padding.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import keras

__all__ = ["load_weights_checked", "load_model_checked"]

_COMPARED = ("channels", "n_classes", "base_filters", "depth", "padding")


def _architecture(layers, input_shape):
    """The :data:`_COMPARED` facts from (class name, config) pairs of a model's layers.

    Examples
    --------
    >>> layers = [("InputLayer", {}), ("Conv2D", {"filters": 16, "padding": "valid"}),
    ...           ("MaxPooling2D", {}), ("Conv2D", {"filters": 32, "padding": "valid"}),
    ...           ("Conv2D", {"filters": 1, "name": "classifier"})]
    >>> _architecture(layers, (None, None, 1))
    {'channels': 1, 'n_classes': 1, 'base_filters': 16, 'depth': 1, 'padding': 'valid'}
    """
    convs = [config for kind, config in layers if kind == "Conv2D"]
    classifiers = [config for _, config in layers if config.get("name") == "classifier"]
    last = (classifiers or convs or [{}])[-1]
    return {
        "channels": input_shape[-1] if input_shape else None,
        "n_classes": last.get("filters"),
        "base_filters": convs[0].get("filters") if convs else None,
        "depth": sum(kind == "MaxPooling2D" for kind, _ in layers),
        "padding": convs[0].get("padding") if convs else None,
    }


def _model_architecture(model):
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    return _architecture([(type(layer).__name__, layer.get_config()) for layer in model.layers], shape)


def _file_architecture(path):
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json")).get("config", {})
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not a readable .keras file ({error}); it may be damaged or only partly "
            "copied. Use another checkpoint (e.g. best.keras or last.keras)."
        ) from error
    layers = [(layer.get("class_name"), layer.get("config", {})) for layer in config.get("layers", [])]
    shape = next((config.get("batch_shape") for kind, config in layers if kind == "InputLayer"), None)
    return _architecture(layers, shape)


def _existing_file(path, suffixes):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}. Check the path (on Colab, is Google Drive mounted?).")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder; pass the checkpoint file inside it, e.g. {path / 'best.keras'}."
        )
    if not str(path).endswith(suffixes):
        raise ValueError(f"{path} is not a {' or '.join(suffixes)} file.")
    return path


def _differences(saved, wanted, other):
    """What differs between the file's facts and the wanted ones; unknown (None) values are skipped.

    Examples
    --------
    >>> _differences({"padding": "valid", "depth": 4}, {"padding": "same", "depth": None}, "model")
    ["padding: file has 'valid', model has 'same'"]
    """
    return [
        f"{key}: file has {saved[key]!r}, {other} has {wanted[key]!r}"
        for key in wanted
        if saved.get(key) is not None and wanted[key] is not None and saved[key] != wanted[key]
    ]


def load_weights_checked(model, path):
    """Load a checkpoint's weights (and optimizer state) into ``model``, or say what differs.

    Taught in chapter 5 (Training the U-Net).

    Parameters
    ----------
    model : keras.Model
        If it is compiled and its optimizer built, the optimizer state is loaded too.
    path : str or Path
        A ``.keras`` file (its architecture is compared with the model's first) or a
        ``.weights.h5`` file.

    Returns
    -------
    keras.Model
        ``model``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file holds another architecture; the message lists the differences.
    """
    path = _existing_file(path, (".keras", ".weights.h5"))
    current = _model_architecture(model)
    hint = "Build the model with the settings the weights were trained with."
    if str(path).endswith(".keras"):
        saved = _file_architecture(path)
        hint = (
            f"Build the model with the saved settings (padding={saved['padding']!r}, "
            f"depth={saved['depth']}, base_filters={saved['base_filters']}, "
            f"n_classes={saved['n_classes']}, "
            f"{saved['channels']} input channel(s)), or load the whole model with "
            "load_model_checked(path)."
        )
        differences = _differences(saved, current, "model")
        if differences:
            raise ValueError(
                f"{path} holds a different architecture than model {model.name!r}: "
                f"{'; '.join(differences)}. {hint}"
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError) as error:
            said = "\n".join(str(error).strip().splitlines()[:3])[:500]  # Keras can print pages of tensors
            facts = ", ".join(f"{key}={value!r}" for key, value in current.items())
            raise ValueError(
                f"The weights in {path} do not fit model {model.name!r} ({facts}). {hint}\nKeras said: {said}"
            ) from error
    for warning in caught:
        if "optimizer" in str(warning.message):
            warnings.warn(
                f"The optimizer state in {path} does not match this model's optimizer (another "
                "optimizer type?), so training continues with a fresh optimizer state.",
                stacklevel=2,
            )
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def load_model_checked(path, expected=None, compile=True):
    """Load a whole ``.keras`` model, optionally checking that it is the architecture expected.

    The book's losses are registered with Keras first, so models trained with them load.

    Taught in chapter 5 (Training the U-Net).

    Parameters
    ----------
    path : str or Path
        A ``.keras`` file.
    expected : keras.Model or dict, optional
        A model, or a dict with any of ``channels``, ``n_classes``, ``base_filters``,
        ``depth`` and ``padding``, that the file must match.
    compile : bool
        Restore the loss and optimizer too (needed to continue training, not to predict).

    Returns
    -------
    keras.Model

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not a readable ``.keras`` file, or differs from ``expected``.
    """
    path = _existing_file(path, (".keras",))
    if expected is not None:
        wanted = _model_architecture(expected) if isinstance(expected, keras.Model) else dict(expected)
        unknown = sorted(set(wanted) - set(_COMPARED))
        if unknown:
            raise ValueError(f"expected has unknown keys {unknown}; use some of {list(_COMPARED)}.")
        differences = _differences(_file_architecture(path), wanted, "expected")
        if differences:
            raise ValueError(
                f"{path} holds a different architecture than expected: {'; '.join(differences)}. "
                "Use the checkpoint of the right run, or change the expected settings to match."
            )
    from unet_tutorial import losses  # noqa: F401 - registers the book's losses for loading

    try:
        return keras.saving.load_model(path, compile=compile)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Could not load {path}: {error}\nIf it was trained with a custom loss or metric, "
            "import the module that defines it first, or pass compile=False to load it for "
            "prediction only."
        ) from error

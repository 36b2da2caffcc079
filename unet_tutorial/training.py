"""Training a U-Net so that it survives a lost Colab session: checkpoints, history, resume.

A run lives in one folder (``run_dir``, which may be on Google Drive) holding

* ``last.keras``  - the model after the latest epoch, optimizer state included,
* ``best.keras``  - the model at its best validation score so far,
* ``history.csv`` - one row per epoch (Keras' ``CSVLogger``), appended on resume,
* ``state.json``  - how many epochs are done and the best score, so a resumed
  run counts on from there and does not replace a better ``best.keras`` by a
  worse one.

:func:`train` runs ``model.fit`` with those callbacks; calling it again on the same
folder continues where the run stopped. :class:`LivePreview` shows input, truth
and prediction while a network learns, :class:`ValidationScores` puts the
challenge's V_Rand score into the logs so checkpoints can keep the best model by
it, and :func:`load_weights_checked` / :func:`load_model_checked` say clearly
when a file holds a different architecture.

Taught in chapter 3 (A mini U-Net: callbacks, live preview, learning curves) and
chapter 4 (The full U-Net: checkpoints and resuming on Colab).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np

__all__ = [
    "LAST",
    "BEST",
    "HISTORY",
    "STATE",
    "LivePreview",
    "ValidationScores",
    "HistoryLogger",
    "RunCheckpoints",
    "train",
    "read_state",
    "read_history",
    "plot_learning_curves",
    "describe_architecture",
    "load_weights_checked",
    "load_model_checked",
]

LAST = "last.keras"
BEST = "best.keras"
HISTORY = "history.csv"
STATE = "state.json"
_RUN_FILES = (LAST, BEST, HISTORY, STATE)

# Monitored quantities where larger is better; everything else (losses, errors) is minimised.
_HIGHER_IS_BETTER = (
    "v_rand", "v_info", "score", "accuracy", "acc", "iou", "dice_coef", "auc", "f1", "precision", "recall",
)


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _write_atomically(path, write):
    """Write via a temporary file in the same folder, then rename.

    A session killed mid-write (Colab) then leaves the old file intact, never half a file.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


def _resolve_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'mode must be "auto", "min" or "max", got {mode!r}')
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(word in name for word in _HIGHER_IS_BETTER) else "min"


def _improved(current, best, mode):
    if current is None or not math.isfinite(current):
        return False
    if best is None:
        return True
    return current > best if mode == "max" else current < best


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _float_or_nan(value):
    number = _as_float(value)
    return math.nan if number is None else number


def _default_predict(model, image):
    """Whole-image probability map by overlap-tile, so any image size works with any U-Net."""
    from unet_tutorial import tiling

    return tiling.predict_tiled(model, image)


def _foreground(prob):
    """(H, W) foreground probability from (H, W), (H, W, 1) or (H, W, K) softmax output."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim == 3:
        prob = prob[..., 0] if prob.shape[-1] == 1 else prob[..., 1:].sum(axis=-1)
    return prob


# --------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------


def _in_notebook():
    """True inside a Jupyter kernel (including Colab), where figures can be shown inline."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePreview(keras.callbacks.Callback):
    """Show input, ground truth, probability and mask side by side every few epochs.

    In a notebook the figure replaces the previous one in place (an IPython display
    handle), so a long run shows one up-to-date picture instead of a scroll of them.
    Outside notebooks it is written to ``path`` if one is given (replacing the file),
    and skipped otherwise.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C) image, scaled as the network was trained (e.g. by
        ``data.to_float``).
    mask : numpy.ndarray, optional
        (H, W) ground truth; a blank panel when None.
    every : int
        Show after every ``every``-th epoch (and after the last one).
    path : str or Path, optional
        PNG file to (over)write with the latest figure.
    predict : callable, optional
        ``predict(model, image) -> (H', W') probability map``. Default: overlap-tile
        prediction of the whole image (``tiling.predict_tiled``). A smaller output
        (a valid U-Net applied directly) is fine: image and mask are cropped to it.
    title : str
        Figure title; ``{epoch}`` is replaced by the epoch number.
    """

    def __init__(self, image, mask=None, every=1, path=None, predict=None, title="epoch {epoch}"):
        super().__init__()
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
        if mask is not None and np.shape(mask) != image.shape[:2]:
            raise ValueError(f"mask shape {np.shape(mask)} does not match image shape {image.shape[:2]}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.image = image
        self.mask = None if mask is None else np.asarray(mask)
        self.every = every
        self.path = None if path is None else Path(path)
        self.predict = predict or _default_predict
        self.title = title
        self._handle = None

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.params or {}).get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        notebook = _in_notebook()
        if not notebook and self.path is None:
            return  # nowhere to show it: do not spend a prediction
        png = self.render(epoch + 1)
        if self.path is not None:
            _write_atomically(self.path, lambda p: p.write_bytes(png))
        if notebook:
            self._show(png)

    def render(self, epoch=None):
        """The current :func:`unet_tutorial.plotting.show_prediction` figure as PNG bytes."""
        from unet_tutorial import plotting

        prob = _foreground(self.predict(self.model, self.image))
        figure = plotting.show_prediction(self.image, self.mask, prob)
        if self.title and epoch is not None:
            figure.suptitle(self.title.format(epoch=epoch))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()

    def _show(self, png):
        from IPython.display import Image, display

        if self._handle is None:
            self._handle = display(Image(data=png), display_id=True)
        else:
            self._handle.update(Image(data=png))


class ValidationScores(keras.callbacks.Callback):
    """Score whole validation slices with the challenge metrics and log ``val_v_rand``.

    Every ``every`` epochs (and after the last) each validation image is predicted
    whole, scored with ``metrics.isbi_scores`` and the means are put into the epoch's
    logs as ``val_v_rand`` and ``val_v_info``. Place it before checkpoint and CSV
    callbacks (:func:`train` does) so they see the scores; in epochs without scoring
    the values are NaN, which never counts as an improvement.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    images, masks : sequence of numpy.ndarray
        Validation images (scaled as in training) and their binary masks (1 = cell).
    every : int
        Score every ``every``-th epoch: scoring predicts whole images, which costs
        time on a CPU.
    predict : callable, optional
        ``predict(model, image) -> (H, W) probability of cell``; default overlap-tile
        prediction (``tiling.predict_tiled``).
    prefix : str
        Prefix of the log keys.
    """

    def __init__(self, images, masks, every=1, predict=None, prefix="val_"):
        super().__init__()
        if len(images) != len(masks) or len(images) == 0:
            raise ValueError(f"need the same, non-zero number of images and masks, got {len(images)} and {len(masks)}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.images = [np.asarray(image) for image in images]
        self.masks = [np.asarray(mask) for mask in masks]
        self.every = every
        self.predict = predict or _default_predict
        self.prefix = prefix

    def scores(self):
        """Mean V_Rand and V_Info of the current model over the validation images."""
        from unet_tutorial import metrics, tiling

        rows = []
        for image, mask in zip(self.images, self.masks):
            prob = _foreground(self.predict(self.model, image))
            rows.append(metrics.isbi_scores(prob, tiling.center_crop(mask, prob.shape)))
        return {name: float(np.mean([row[name] for row in rows])) for name in ("v_rand", "v_info")}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        last = epoch + 1 == (self.params or {}).get("epochs")
        if (epoch + 1) % self.every == 0 or last:
            values = self.scores()
        else:
            values = {"v_rand": float("nan"), "v_info": float("nan")}
        for name, value in values.items():
            logs[self.prefix + name] = value


class HistoryLogger(keras.callbacks.CSVLogger):
    """``keras.callbacks.CSVLogger`` that keeps the file's columns when a run is resumed.

    Plain ``CSVLogger(append=True)`` takes its columns from the first epoch of the new
    session; if they differ from the file's header (a metric added or dropped), the
    values land under the wrong names. This one reuses the existing header.

    Taught in chapter 4 (The full U-Net).
    """

    def on_train_begin(self, logs=None):
        header = _csv_header(self.filename) if self.append else None
        super().on_train_begin(logs)
        if header:
            self.keys = [key for key in header if key != "epoch"]


def _csv_header(path):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as file:
        return next(csv.reader(file), None)


class RunCheckpoints(keras.callbacks.Callback):
    """Save ``last.keras`` every epoch, ``best.keras`` on improvement, and ``state.json``.

    Files are written to a temporary name and renamed, so a session that dies while
    saving leaves the previous checkpoint usable. ``state.json`` records the epochs
    done and the best score, which lets a resumed run keep counting and keep
    comparing against the true best.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    run_dir : str or Path
    monitor : str
        Log key that decides the best model, e.g. ``"val_loss"`` or ``"val_v_rand"``.
    mode : {"auto", "min", "max"}
        "auto": maximise scores (V_Rand, "score", accuracy, IoU, Dice coefficient...), minimise the rest.
    best : float, optional
        Best value of an earlier session of this run.
    best_epoch : int, optional
        Epoch (1-based) of that value.
    """

    def __init__(self, run_dir, monitor="val_loss", mode="auto", best=None, best_epoch=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        self.best = best
        self.best_epoch = best_epoch
        self._warned = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        _write_atomically(self.run_dir / LAST, self.model.save)
        current = _as_float(logs.get(self.monitor))
        if _improved(current, self.best, self.mode):
            _write_atomically(self.run_dir / BEST, self.model.save)
            self.best, self.best_epoch = current, epoch + 1
        elif self.monitor not in logs and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.monitor!r} is not in the training logs (they hold {sorted(logs)}), so "
                f"{BEST} is not updated; monitor one of those keys.",
                stacklevel=2,
            )
        state = {
            "epoch": epoch + 1,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "model": self.model.name,
            "architecture": describe_architecture(self.model),
            "keras_version": keras.__version__,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        text = json.dumps(state, indent=2)
        _write_atomically(self.run_dir / STATE, lambda p: p.write_text(text))


# --------------------------------------------------------------------------------------
# Training with checkpoints and resume
# --------------------------------------------------------------------------------------


def read_state(run_dir):
    """The ``state.json`` of a run as a dict, or None if there is none.

    Taught in chapter 4 (The full U-Net).
    """
    path = Path(run_dir) / STATE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as error:
        raise ValueError(
            f"{path} is damaged ({error}). Delete it to resume from the epoch count in "
            f"{HISTORY}, or start a new run folder."
        ) from error


def _completed_epochs(run_dir, state):
    if state and isinstance(state.get("epoch"), int):
        return state["epoch"]
    history = read_history(run_dir) if (Path(run_dir) / HISTORY).exists() else {}
    return len(history.get("epoch", []))


def _trim_history(path, epochs_done):
    """Drop rows of epochs not covered by ``last.keras`` (written just before a crash)."""
    if not path.exists():
        return
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return
    keep = [rows[0]] + [row for row in rows[1:] if row and int(float(row[0])) < epochs_done]
    if len(keep) == len(rows):
        return

    def write(target):
        with open(target, "w", newline="") as file:
            csv.writer(file).writerows(keep)

    _write_atomically(path, write)


def _prepare_run_dir(run_dir, resume, overwrite):
    """Decide between a fresh start and a resume; never silently replace a run's files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = [name for name in _RUN_FILES if (run_dir / name).exists()]
    if not existing:
        return False
    if overwrite:
        for name in existing:
            (run_dir / name).unlink()
        return False
    if resume and (run_dir / LAST).exists():
        return True
    reason = (
        f"it has no {LAST} to resume from" if resume else "resume=False"
    )
    raise FileExistsError(
        f"{run_dir} already holds a training run ({', '.join(existing)}) and {reason}. "
        "Choose a new run folder, or pass overwrite=True to replace those files."
    )


def _fit_arguments(data):
    """``fit`` keywords for a dataset object or an ``(x, y[, sample_weight])`` tuple of arrays."""
    if isinstance(data, (tuple, list)):
        if len(data) not in (2, 3):
            raise ValueError(
                f"array data must be (x, y) or (x, y, sample_weight), got a sequence of {len(data)} items"
            )
        return dict(zip(("x", "y", "sample_weight"), data))
    return {"x": data}


def train(
    model,
    train_data,
    val_data=None,
    *,
    run_dir,
    epochs,
    steps_per_epoch=None,
    validation_steps=None,
    callbacks=(),
    monitor="val_loss",
    mode="auto",
    resume=True,
    overwrite=False,
    batch_size=None,
    verbose="auto",
):
    """Fit a compiled model with checkpoints, a CSV history and resume.

    If ``run_dir`` holds ``last.keras`` and ``resume`` is True, its weights and
    optimizer state are loaded into ``model`` and training continues at the next
    epoch (``epochs`` is the total, as in Keras: a run stopped after 7 of 10
    epochs trains 3 more; a finished run trains none). The history is appended to,
    and the best score so far is remembered. A folder that holds a run is never
    replaced silently: without ``resume`` it is an error unless ``overwrite=True``.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    model : keras.Model
        Compiled (``model.compile(optimizer=..., loss=...)``); trained in place.
    train_data
        A ``keras.utils.PyDataset`` (e.g. ``augment.SegmentationDataset``), a
        ``tf.data.Dataset``, or a tuple ``(x, y)`` / ``(x, y, sample_weight)`` of arrays.
    val_data : optional
        The same kinds, passed to ``fit`` as ``validation_data``.
    run_dir : str or Path
        Folder of the run (created if missing), e.g. ``runtime.checkpoint_dir("full_unet")``.
    epochs : int
        Total number of epochs of the run.
    steps_per_epoch, validation_steps, batch_size : int, optional
        Passed to ``fit``.
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks (e.g. :class:`LivePreview`, :class:`ValidationScores`); they
        run before the checkpoint and history callbacks, so keys they add to the
        logs are saved and can be monitored.
    monitor : str
        Key that selects ``best.keras``. Without ``val_data`` the default
        ``"val_loss"`` falls back to ``"loss"``.
    mode : {"auto", "min", "max"}
    resume : bool
        Continue a run found in ``run_dir``.
    overwrite : bool
        Delete the run files found in ``run_dir`` (only ``last.keras``,
        ``best.keras``, ``history.csv``, ``state.json``) and start afresh.
    verbose : "auto", 0, 1 or 2
        Keras' progress display.

    Returns
    -------
    keras.callbacks.History
        This session's epochs (empty if the run was already complete); the whole
        run's history is in ``history.csv`` (:func:`read_history`,
        :func:`plot_learning_curves`).

    Raises
    ------
    FileExistsError
        ``run_dir`` holds a run and neither ``resume`` (with a ``last.keras``) nor
        ``overwrite`` allows using it.
    ValueError
        The model is not compiled, or ``last.keras`` holds another architecture.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError(
            "Compile the model before training, e.g. "
            "model.compile(optimizer=keras.optimizers.Adam(1e-4), loss='binary_crossentropy')."
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if val_data is None and monitor == "val_loss":
        monitor = "loss"
    run_dir = Path(run_dir)
    resuming = _prepare_run_dir(run_dir, resume, overwrite)

    initial_epoch, best, best_epoch = 0, None, None
    mode = _resolve_mode(monitor, mode)
    if resuming:
        state = read_state(run_dir)
        initial_epoch = _completed_epochs(run_dir, state)
        if state and state.get("monitor") == monitor and state.get("mode") == mode:
            best, best_epoch = state.get("best"), state.get("best_epoch")
        elif state:
            warnings.warn(
                f"This run chose {BEST} by {state.get('monitor')!r} before and now by {monitor!r}; "
                f"the first epoch of this session will replace {BEST}.",
                stacklevel=2,
            )
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            load_weights_checked(model, run_dir / LAST)
        except ValueError as error:
            raise ValueError(
                f"Cannot resume {run_dir}: {error}\nResume with the settings the run was started with, "
                "or train into a new run folder (or pass overwrite=True to replace this run)."
            ) from error
        _trim_history(run_dir / HISTORY, initial_epoch)
        if initial_epoch >= epochs:
            print(
                f"{run_dir} already holds {initial_epoch} epochs (asked for {epochs}); nothing to train. "
                "Pass a larger number of epochs to continue training."
            )
            history = keras.callbacks.History()
            history.set_model(model)
            history.epoch, history.history = [], {}
            return history
        print(f"Resuming {run_dir} after epoch {initial_epoch} of {epochs}.")

    if isinstance(getattr(train_data, "epoch", None), int):
        train_data.epoch = initial_epoch  # SegmentationDataset seeds crops by epoch: resume draws new ones
    all_callbacks = list(callbacks) + [
        RunCheckpoints(run_dir, monitor=monitor, mode=mode, best=best, best_epoch=best_epoch),
        HistoryLogger(str(run_dir / HISTORY), append=resuming),
    ]
    return model.fit(
        **_fit_arguments(train_data),
        validation_data=val_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_steps=validation_steps,
        batch_size=batch_size,
        callbacks=all_callbacks,
        verbose=verbose,
    )


# --------------------------------------------------------------------------------------
# History and learning curves
# --------------------------------------------------------------------------------------


def read_history(source):
    """A run's history as ``{key: list of float}``, with ``"epoch"`` counted from 1.

    Taught in chapter 4 (The full U-Net); chapter 8 (Results) reads the recipes' histories with it.

    Parameters
    ----------
    source : keras.callbacks.History, dict, or path
        A ``History`` (what ``fit`` returns), its ``.history`` dict, a
        ``history.csv`` file, or a run folder holding one. Missing values
        (``"NA"``, empty) become NaN.
    """
    if isinstance(source, keras.callbacks.History):
        epochs = [e + 1 for e in source.epoch]
        source = dict(source.history, epoch=epochs)
    if isinstance(source, dict):
        history = {key: [_float_or_nan(v) for v in values] for key, values in source.items()}
        if "epoch" not in history and history:
            history["epoch"] = list(range(1, len(next(iter(history.values()))) + 1))
        return history
    path = Path(source)
    if path.is_dir():
        path = path / HISTORY
    if not path.exists():
        raise FileNotFoundError(f"No history file at {path}: train first, or pass the run folder or its {HISTORY}.")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    keys = [key for key in (rows[0].keys() if rows else []) if key]
    history = {key: [] for key in keys}
    for row in rows:
        for key in keys:
            history[key].append(_float_or_nan(row.get(key)))
    if "epoch" in history:  # CSVLogger counts from 0
        history["epoch"] = [e + 1 for e in history["epoch"]]
    return history


def plot_learning_curves(history_or_csv_path, keys=None):
    """Plot training and validation curves, one panel per quantity.

    Each panel shows ``name`` and ``val_name`` against the epoch; panels for
    losses use a log scale when the values span more than a factor of 10.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    history_or_csv_path : keras.callbacks.History, dict or path
        See :func:`read_history`.
    keys : sequence of str, optional
        Quantities to plot (without ``val_``); default all.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    history = read_history(history_or_csv_path)
    epochs = history.get("epoch", [])
    if not epochs:
        raise ValueError("The history is empty: there is nothing to plot yet.")
    names = sorted({key.removeprefix("val_") for key in history if key != "epoch" and _has_values(history[key])})
    if keys is not None:
        missing = [key for key in keys if key not in names]
        if missing:
            raise ValueError(f"No values for {missing} in the history; it has {names}.")
        names = list(keys)
    if not names:
        raise ValueError("The history holds no values to plot.")
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            values = np.asarray(history.get(key, []), dtype=float)
            if _has_values(values):
                finite = np.isfinite(values)
                axis.plot(np.asarray(epochs)[finite], values[finite], style, marker="o", markersize=3,
                          label="validation" if key.startswith("val_") else "training")
        _maybe_log_scale(axis, name, history)
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend()
    figure.tight_layout()
    return figure


def _has_values(values):
    return bool(np.any(np.isfinite(np.asarray(values, dtype=float))))


def _maybe_log_scale(axis, name, history):
    values = np.concatenate([np.asarray(history.get(k, []), dtype=float) for k in (name, f"val_{name}")])
    values = values[np.isfinite(values)]
    if "loss" in name and values.size and values.min() > 0 and values.max() / values.min() > 10:
        axis.set_yscale("log")


# --------------------------------------------------------------------------------------
# Loading with a clear error for the wrong architecture
# --------------------------------------------------------------------------------------

_COMPARED = ("channels", "n_classes", "base_filters", "depth", "padding")


def _summarise_layers(layers, model_name, input_shape, n_params=None):
    """Architecture facts from a list of (class name, config) pairs."""
    convs = [config for kind, config in layers if kind == "Conv2D"]
    classifier = [config for kind, config in layers if config.get("name") == "classifier"]
    last = (classifier or convs or [{}])[-1]
    return {
        "name": model_name,
        "input_shape": None if input_shape is None else tuple(input_shape),
        "channels": None if input_shape is None else input_shape[-1],
        "n_classes": last.get("filters"),
        "base_filters": convs[0].get("filters") if convs else None,
        "depth": sum(kind == "MaxPooling2D" for kind, _ in layers),
        "padding": convs[0].get("padding") if convs else None,
        "n_params": n_params,
    }


def _describe_model(model):
    layers = [(type(layer).__name__, layer.get_config()) for layer in model.layers]
    shape = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    return _summarise_layers(layers, model.name, shape[1:], model.count_params())


def _describe_file(path):
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not a readable .keras file ({error}); it may be damaged or only "
            "partly copied. Use another checkpoint (e.g. best.keras or last.keras)."
        ) from error
    inner = config.get("config", {})
    layers = [(layer.get("class_name"), layer.get("config", {})) for layer in inner.get("layers", [])]
    shapes = [config_.get("batch_shape") or config_.get("batch_input_shape")
              for kind, config_ in layers if kind == "InputLayer"]
    shape = shapes[0][1:] if shapes and shapes[0] else None
    return _summarise_layers(layers, inner.get("name"), shape)


def describe_architecture(model_or_path):
    """Facts that decide whether weights fit a U-Net: channels, classes, filters, depth, padding.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    model_or_path : keras.Model or path to a ``.keras`` file
        The file is read without building the model.

    Returns
    -------
    dict
        ``name``, ``input_shape`` (H, W, C), ``channels``, ``n_classes``,
        ``base_filters`` (filters of the first convolution), ``depth`` (number of
        max-poolings), ``padding`` and ``n_params`` (None for a file).
    """
    if isinstance(model_or_path, keras.Model):
        return _describe_model(model_or_path)
    return _describe_file(_existing_file(model_or_path, (".keras",)))


def _existing_file(path, suffixes):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No such file: {path}. Check the path (on Colab, is Google Drive mounted?)."
        )
    if not path.is_file():
        raise ValueError(f"{path} is a folder; pass the checkpoint file inside it, e.g. {path / BEST}.")
    if not str(path).endswith(suffixes):
        raise ValueError(f"{path} is not a {' or '.join(suffixes)} file.")
    return path


def _differences(saved, current, keys, other="model"):
    return [f"{key}: file has {saved[key]!r}, {other} has {current[key]!r}"
            for key in keys if saved.get(key) is not None and current.get(key) is not None
            and saved[key] != current[key]]


def _rebuild_hint(saved):
    return (
        f"Build the model with the saved settings (padding={saved.get('padding')!r}, "
        f"depth={saved.get('depth')}, base_filters={saved.get('base_filters')}, "
        f"n_classes={saved.get('n_classes')}, {saved.get('channels')} input channel(s)), "
        "or load the complete model with training.load_model_checked(path)."
    )


def _first_lines(error, count=3, limit=500):
    """The start of a Keras error message, which can run to pages of tensor values."""
    text = "\n".join(str(error).strip().splitlines()[:count])
    return text if len(text) <= limit else text[:limit] + " ..."


def load_weights_checked(model, path):
    """Load a checkpoint's weights (and optimizer state) into ``model``, or say what differs.

    For a ``.keras`` file the saved architecture is compared with the model's first:
    input channels, classes, filters, depth and padding (a 'same' and a 'valid'
    U-Net have identical weight shapes, so Keras alone would load one into the
    other without complaint). If the model is compiled and its optimizer built, the
    optimizer state is restored too.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    model : keras.Model
    path : str or Path
        ``.keras`` or ``.weights.h5`` file.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file holds another architecture; the message lists the differences and
        how to rebuild a matching model.
    """
    path = _existing_file(path, (".keras", ".weights.h5"))
    current = _describe_model(model)
    saved = _describe_file(path) if str(path).endswith(".keras") else None
    if saved is not None:
        differences = _differences(saved, current, _COMPARED)
        if differences:
            raise ValueError(
                f"{path} holds a different architecture than model {model.name!r}: "
                + "; ".join(differences) + ". " + _rebuild_hint(saved)
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError) as error:
            hint = _rebuild_hint(saved) if saved else "Build the model with the settings the weights were trained with."
            raise ValueError(
                f"The weights in {path} do not fit model {model.name!r} "
                f"({current['n_params']:,} parameters, base_filters={current['base_filters']}, "
                f"depth={current['depth']}, n_classes={current['n_classes']}). {hint}\n"
                f"Keras said: {_first_lines(error)}"
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
    """Load a complete ``.keras`` model, optionally checking its architecture.

    The book's custom losses are registered first, so models trained with them load.

    Taught in chapter 4 (The full U-Net) and chapter 6 (Overlap-tile on Colab GPUs).

    Parameters
    ----------
    path : str or Path
        A ``.keras`` file.
    expected : keras.Model or dict, optional
        A model, or a dict with any of ``input_shape``, ``channels``, ``n_classes``,
        ``base_filters``, ``depth``, ``padding``, that the file must match.
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
    saved = _describe_file(path)
    if expected is not None:
        wanted = _describe_model(expected) if isinstance(expected, keras.Model) else dict(expected)
        unknown = set(wanted) - set(saved)
        if unknown:
            raise ValueError(f"expected has unknown keys {sorted(unknown)}; use {sorted(_COMPARED + ('input_shape',))}")
        keys = _COMPARED if isinstance(expected, keras.Model) else tuple(wanted)
        if "input_shape" in wanted and wanted["input_shape"] is not None:
            wanted["input_shape"] = tuple(wanted["input_shape"])
        differences = _differences(saved, wanted, keys, other="expected")
        if differences:
            raise ValueError(
                f"{path} holds a different architecture than expected: " + "; ".join(differences)
                + ". Use the checkpoint of the right run, or change the expected settings to match."
            )
    try:
        from unet_tutorial import losses  # noqa: F401 - registers the custom losses for deserialisation
    except ImportError:
        pass
    try:
        return keras.saving.load_model(path, compile=compile)
    except (TypeError, ValueError) as error:
        advice = (
            "If it was trained with a custom loss or metric, import the module that defines it "
            "first, or pass compile=False to load it for prediction only."
        )
        raise ValueError(f"Could not load {path}: {error}\n{advice}") from error

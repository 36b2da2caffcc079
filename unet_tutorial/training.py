"""Training that survives a lost Colab session: checkpoints, a CSV history, resuming.

A run lives in one folder, ``run_dir`` (on Google Drive in Colab), which holds

* ``last.keras``: the model after the latest epoch, optimizer state included;
* ``best.keras``: the model of the epoch with the best monitored score;
* ``history.csv``: one row per epoch, across sessions;
* ``state.json``: the epochs done and the best score, so a resumed run counts on and does
  not replace a better ``best.keras`` by a worse one.

:func:`train` is ``model.fit`` with the callbacks that write these files; called again on
the same folder, it continues where the run stopped.

Taught in chapter 3 (A mini U-Net: learning curves) and chapter 4 (The full U-Net:
checkpoints and resuming on Colab).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path

import keras
import numpy as np

from unet_tutorial import files, model_files
from unet_tutorial.dataset import SegmentationDataset

__all__ = ["LAST", "BEST", "HISTORY", "STATE", "train", "read_state", "read_history", "plot_learning_curves"]

LAST = "last.keras"
BEST = "best.keras"
HISTORY = "history.csv"
STATE = "state.json"

# Which way is better for the quantities the package logs: the loss, metrics.training_metrics()
# and callbacks.ValidationScores. Other names need train(..., mode="min" or "max").
_SMALLER_IS_BETTER = ("loss", "pixel_error")
_LARGER_IS_BETTER = ("accuracy", "iou_cell", "mean_iou", "dice", "dice_cell", "v_rand", "v_info")
_MODES = {
    prefix + name: mode
    for names, mode in ((_SMALLER_IS_BETTER, "min"), (_LARGER_IS_BETTER, "max"))
    for name in names
    for prefix in ("", "val_")
}


def _monitor_mode(monitor, mode=None):
    """"min" or "max": whether ``best.keras`` keeps the smallest or the largest ``monitor``.

    Examples
    --------
    >>> _monitor_mode("val_dice_cell"), _monitor_mode("val_loss"), _monitor_mode("v_rand")
    ('max', 'min', 'max')
    >>> _monitor_mode("val_f1", mode="max")
    'max'
    >>> _monitor_mode("val_f1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Is a larger or a smaller 'val_f1' better? Pass mode="max" or mode="min" (known: ...).
    """
    if mode is None:
        if monitor not in _MODES:
            raise ValueError(
                f'Is a larger or a smaller {monitor!r} better? Pass mode="max" or mode="min" '
                f"(known: {', '.join(sorted(_MODES))})."
            )
        return _MODES[monitor]
    if mode not in ("min", "max"):
        raise ValueError(f'mode must be "min" or "max", got {mode!r}.')
    return mode


def _better(value, best, mode):
    """True when ``value`` beats ``best`` (None: no best yet); NaN never does.

    Examples
    --------
    >>> _better(0.8, 0.7, "max"), _better(0.8, 0.7, "min"), _better(float("nan"), None, "max")
    (True, False, False)
    """
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


# --------------------------------------------------------------------------------------
# The two callbacks train() adds
# --------------------------------------------------------------------------------------


class _RunCheckpoints(keras.callbacks.Callback):
    """After every epoch: ``last.keras``, ``best.keras`` if ``monitor`` improved, ``state.json``.

    Each file is written under a temporary name and then renamed, so a session that dies
    while saving leaves the previous one intact. ``best`` and ``best_epoch`` carry the
    best score of an earlier session over into this one.
    """

    def __init__(self, run_dir, monitor, mode, best=None, best_epoch=None):
        super().__init__()
        self.run_dir, self.monitor, self.mode = Path(run_dir), monitor, mode
        self.best, self.best_epoch = best, best_epoch
        self._warned = False

    def on_epoch_end(self, epoch, logs=None):
        files.write_atomically(self.run_dir / LAST, self.model.save)
        value = float(logs.get(self.monitor, math.nan))
        if _better(value, self.best, self.mode):
            files.write_atomically(self.run_dir / BEST, self.model.save)
            self.best, self.best_epoch = value, epoch + 1
        if self.monitor not in logs and not self._warned:
            self._warned = True
            warnings.warn(f"{self.monitor!r} is not in the training logs (they hold {sorted(logs)}), so "
                          f"{BEST} is not written; monitor one of those keys.", stacklevel=2)
        state = {"epoch": epoch + 1, "monitor": self.monitor, "mode": self.mode, "best": self.best,
                 "best_epoch": self.best_epoch, "model": self.model.name}
        text = json.dumps(state, indent=2)
        files.write_atomically(self.run_dir / STATE, lambda path: path.write_text(text))


class _HistoryLogger(keras.callbacks.CSVLogger):
    """Keras' ``CSVLogger`` that keeps the columns of the ``history.csv`` it appends to.

    Plain ``CSVLogger(append=True)`` takes its columns from the new session's first epoch;
    if a metric was added or dropped, values would land under the wrong names.
    """

    def on_train_begin(self, logs=None):
        header = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as file:
                header = next(csv.reader(file), None)
        super().on_train_begin(logs)
        if header:
            self.keys = [key for key in header if key != "epoch"]


# --------------------------------------------------------------------------------------
# Training with checkpoints and resume
# --------------------------------------------------------------------------------------


def train(model, train_data, val_data=None, *, run_dir, epochs, callbacks=(), monitor="val_loss", mode=None,
          resume=True, overwrite=False, verbose="auto"):
    """Fit a compiled model with checkpoints, a CSV history and resuming.

    If ``run_dir`` holds ``last.keras``, its weights and optimizer state are loaded into
    ``model`` and training continues after the epoch it was saved at; ``epochs`` is the
    total, as for ``fit``, so a run stopped after 7 of 10 epochs trains 3 more. A folder
    that holds a run is never replaced silently.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    model : keras.Model
        Compiled; trained in place.
    train_data : keras.utils.PyDataset or tf.data.Dataset
        E.g. a ``dataset.SegmentationDataset``. Its crops depend on the epoch number, so
        it is set to the first epoch trained here (``set_epoch``): a resumed run draws new crops.
    val_data : optional
        Passed to ``fit`` as ``validation_data``, e.g. a tuple ``(x, y)``.
    run_dir : str or Path
        Folder of the run (created if missing), e.g. ``runtime.checkpoint_dir("full_unet")``.
    epochs : int
        Total number of epochs of the run.
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks (e.g. ``callbacks.ValidationScores``). They run before the ones that
        save the run, so the values they log are saved and can be monitored.
    monitor : str
        Logged value that selects ``best.keras``. Without ``val_data`` the default
        ``"val_loss"`` becomes ``"loss"``.
    mode : {"min", "max"}, optional
        Whether a smaller or a larger ``monitor`` is better. Needed only for names the
        package does not log itself (it knows loss, pixel_error, accuracy, iou_cell,
        mean_iou, dice, dice_cell, v_rand and v_info, each also with ``val_``).
    resume : bool
        Continue a run found in ``run_dir``.
    overwrite : bool
        Delete the run's files in ``run_dir`` (only ``last.keras``, ``best.keras``,
        ``history.csv``, ``state.json``) and start afresh.
    verbose : "auto", 0, 1 or 2
        Keras' progress display.

    Returns
    -------
    keras.callbacks.History
        This session's epochs; the whole run's are in ``history.csv`` (:func:`read_history`).

    Raises
    ------
    FileExistsError
        ``run_dir`` holds a run that neither ``resume`` (with a ``last.keras``) nor
        ``overwrite`` allows to use.
    ValueError
        The model is not compiled, ``mode`` is needed, or ``last.keras`` holds another
        architecture.
    """
    if not getattr(model, "compiled", False):
        raise ValueError("Compile the model before training, e.g. "
                         "model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='binary_crossentropy').")
    if val_data is None and monitor == "val_loss":
        monitor = "loss"
    mode = _monitor_mode(monitor, mode)
    run_dir = Path(run_dir)
    resuming = _resume_or_start(run_dir, resume, overwrite)
    done, best, best_epoch = _restore(model, run_dir, monitor, mode) if resuming else (0, None, None)
    if done >= epochs:
        print(f"{run_dir} already holds {done} epochs (asked for {epochs}); nothing to train. "
              "Pass a larger number of epochs to continue training.")
        return _empty_history(model)
    if resuming:
        print(f"Resuming {run_dir} after epoch {done} of {epochs}.")
    if isinstance(train_data, SegmentationDataset):
        train_data.set_epoch(done)  # its crops depend on the epoch: a resumed run draws new ones
    saving = [_RunCheckpoints(run_dir, monitor, mode, best, best_epoch),
              _HistoryLogger(str(run_dir / HISTORY), append=resuming)]
    return model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=done,
                     callbacks=[*callbacks, *saving], verbose=verbose)


def _resume_or_start(run_dir, resume, overwrite):
    """True to resume the run in ``run_dir``, False to start one; never replaces a run silently."""
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = [name for name in (LAST, BEST, HISTORY, STATE) if (run_dir / name).exists()]
    if not existing:
        return False
    if overwrite:
        for name in existing:
            (run_dir / name).unlink()
        return False
    if resume and (run_dir / LAST).exists():
        return True
    reason = f"it has no {LAST} to resume from" if resume else "resume=False"
    raise FileExistsError(
        f"{run_dir} already holds a training run ({', '.join(existing)}) and {reason}. "
        "Choose a new run folder, or pass overwrite=True to replace those files."
    )


def _restore(model, run_dir, monitor, mode):
    """Load ``last.keras`` into ``model``; return (epochs done, best score, its epoch)."""
    state = read_state(run_dir) or {}
    done = state.get("epoch", 0)
    if not model.optimizer.built:  # so that the optimizer state can be loaded too
        model.optimizer.build(model.trainable_variables)
    try:
        model_files.load_weights_checked(model, run_dir / LAST)
    except ValueError as error:
        raise ValueError(f"Cannot resume {run_dir}: {error}\nResume with the settings the run was started "
                         "with, or train into a new run folder (or pass overwrite=True to replace this run)."
                         ) from error
    _drop_history_after(run_dir / HISTORY, done)
    if state.get("monitor") == monitor and state.get("mode") == mode:
        return done, state.get("best"), state.get("best_epoch")
    if state:
        warnings.warn(f"This run chose {BEST} by {state.get('monitor')!r} before and now by {monitor!r}; "
                      f"the first epoch of this session will replace {BEST}.", stacklevel=3)
    return done, None, None


def _drop_history_after(path, epochs):
    """Drop rows of ``history.csv`` beyond ``epochs`` (Drive may sync it before ``state.json``)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [line for line in lines[1:] if int(float(line.split(",", 1)[0])) < epochs]
    if len(keep) < len(lines):
        files.write_atomically(path, lambda target: target.write_text("".join(keep)))


def _empty_history(model):
    history = keras.callbacks.History()
    history.set_model(model)
    history.epoch, history.history = [], {}
    return history


def read_state(run_dir):
    """The ``state.json`` of a run as a dict (epoch, monitor, mode, best, best_epoch), or None.

    Taught in chapter 4 (The full U-Net).

    Examples
    --------
    >>> import tempfile
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> read_state(run_dir) is None  # no run yet
    True
    >>> _ = (run_dir / STATE).write_text('{"epoch": 3, "monitor": "val_v_rand", "best": 0.9}')
    >>> read_state(run_dir)["epoch"]
    3
    """
    path = Path(run_dir) / STATE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is damaged ({error}). Delete it to resume with a fresh epoch count, "
                         "or start a new run folder.") from error


# --------------------------------------------------------------------------------------
# History and learning curves
# --------------------------------------------------------------------------------------


def read_history(source):
    """A run's history as ``{name: list of float}``, with ``"epoch"`` counted from 1.

    Taught in chapter 4 (The full U-Net); chapter 8 (Results) reads the recipes' histories with it.

    Parameters
    ----------
    source : keras.callbacks.History, dict, or path
        What ``fit`` returns, its ``.history`` dict, a ``history.csv`` file or the run
        folder holding one. Missing values (``"NA"``, empty) become NaN.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "history.csv"
    >>> _ = path.write_text("epoch,loss,val_v_rand\\n0,0.5,NA\\n1,0.25,0.75\\n")
    >>> read_history(path)
    {'epoch': [1.0, 2.0], 'loss': [0.5, 0.25], 'val_v_rand': [nan, 0.75]}
    >>> read_history({"loss": [0.5, 0.25]})
    {'loss': [0.5, 0.25], 'epoch': [1, 2]}
    """
    if isinstance(source, keras.callbacks.History):
        source = dict(source.history, epoch=[epoch + 1 for epoch in source.epoch])
    if isinstance(source, dict):
        history = {key: [_float(value) for value in values] for key, values in source.items()}
        if history and "epoch" not in history:
            history["epoch"] = list(range(1, len(next(iter(history.values()))) + 1))
        return history
    path = Path(source)
    if path.is_dir():
        path = path / HISTORY
    if not path.exists():
        raise FileNotFoundError(f"No history file at {path}: train first, or pass the run folder or its "
                                f"{HISTORY}.")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    history = {key: [_float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
    if "epoch" in history:  # CSVLogger counts from 0
        history["epoch"] = [epoch + 1 for epoch in history["epoch"]]
    return history


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_learning_curves(history_or_csv_path, keys=None):
    """Training (solid) and validation (dashed) curves, one panel per quantity.

    Loss panels use a log scale when the values span more than a factor of 10.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    history_or_csv_path : keras.callbacks.History, dict or path
        See :func:`read_history`.
    keys : sequence of str, optional
        Quantities to plot, without ``val_``; default all.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    history = read_history(history_or_csv_path)
    history = {key: np.asarray(values, dtype=float) for key, values in history.items()}
    epochs = history.pop("epoch", np.array([]))
    if not epochs.size:
        raise ValueError("The history is empty: there is nothing to plot yet.")
    names = sorted({key.removeprefix("val_") for key, values in history.items() if np.isfinite(values).any()})
    if keys is not None:
        missing = [key for key in keys if key not in names]
        if missing:
            raise ValueError(f"No values for {missing} in the history; it has {names}.")
        names = list(keys)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        shown = []
        for key, style, label in ((name, "-", "training"), (f"val_{name}", "--", "validation")):
            values = history.get(key, np.array([]))
            finite = np.isfinite(values)
            if finite.any():
                axis.plot(epochs[finite], values[finite], style, marker="o", markersize=3, label=label)
                shown.append(values[finite])
        shown = np.concatenate(shown)
        if "loss" in name and shown.min() > 0 and shown.max() / shown.min() > 10:
            axis.set_yscale("log")
        axis.set(xlabel="epoch", title=name)
        axis.legend()
    figure.tight_layout()
    return figure

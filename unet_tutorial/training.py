"""Training that survives a lost Colab session: checkpoints, a CSV history, resuming.

A run lives in one folder, ``run_dir`` (on Google Drive in Colab), which holds

* ``last.keras``: the model after the latest epoch, optimizer state included;
* ``best.keras``: the model of the epoch with the best monitored score;
* ``history.csv``: one row per epoch, across sessions;
* ``state.json``: the epochs done and the best score, so a resumed run counts on and does
  not replace a better ``best.keras`` by a worse one.

:func:`train` is ``model.fit`` with the callbacks that write these files; called again on
the same folder, it continues where the run stopped. Every file is written under a
temporary name and then renamed, so a session that dies while saving leaves the previous
one intact. ``epochs`` is the total, as for ``fit``: a run stopped after 7 of 10 epochs
trains 3 more. A ``dataset.SegmentationDataset`` draws its crops from the epoch number, so
``train`` sets it to the first epoch trained (a resumed run draws new crops).

``history.csv`` rows beyond the epoch in ``state.json`` (Google Drive may sync one file before the other)
are dropped on resuming. A model saved with another architecture cannot be resumed:
``model_files.load_weights_checked`` says what differs.

Which way is better is known for the names the package logs: the loss,
``metrics.training_metrics()`` and ``callbacks.ValidationScores``; other names need
``mode="min"`` or ``mode="max"``. Plain ``CSVLogger(append=True)`` takes its columns from
the new session's first epoch, so a metric added or dropped on resuming would put values
under the wrong names; ``history.csv`` keeps the columns it started with instead.

Taught in chapter 3 (A mini U-Net: learning curves) and chapter 5 (Training the U-Net:
checkpoints and resuming on Colab).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import keras
import numpy as np

from unet_tutorial import files, model_files

__all__ = ["LAST", "BEST", "HISTORY", "STATE", "train", "read_state", "read_history", "plot_learning_curves"]

LAST, BEST, HISTORY, STATE = "last.keras", "best.keras", "history.csv", "state.json"

_MODES = dict.fromkeys(("loss", "pixel_error"), "min") | dict.fromkeys(
    ("accuracy", "iou_cell", "mean_iou", "dice", "dice_cell", "v_rand", "v_info"), "max"
)
_MODES |= {f"val_{name}": mode for name, mode in _MODES.items()}


def _monitor_mode(monitor, mode=None):
    """``"min"`` or ``"max"``: whether ``best.keras`` keeps the smallest or the largest ``monitor``.

    >>> _monitor_mode("val_dice_cell"), _monitor_mode("val_loss"), _monitor_mode("val_f1", mode="max")
    ('max', 'min', 'max')
    """
    mode = _MODES.get(monitor) if mode is None else mode
    if mode not in ("min", "max"):
        known = "known: " + ", ".join(sorted(_MODES))
        raise ValueError(f'Is a larger {monitor!r} better? Pass mode="max" or mode="min" ({known}).')
    return mode


def _better(value, best, mode):
    """True when ``value`` beats ``best`` (None: no best yet); NaN never does.

    >>> _better(0.8, 0.7, "max"), _better(0.8, 0.7, "min"), _better(float("nan"), None, "max")
    (True, False, False)
    """
    return math.isfinite(value) and (best is None or (value > best if mode == "max" else value < best))


class _RunCheckpoints(keras.callbacks.Callback):
    """After every epoch: ``last.keras``, ``best.keras`` if the monitored value improved, ``state.json``."""

    def __init__(self, run_dir, state):
        super().__init__()
        self.run_dir, self.state, self.warned = run_dir, state, False

    def on_epoch_end(self, epoch, logs=None):
        state, monitor = self.state, self.state["monitor"]
        value = float(logs.get(monitor, math.nan))
        files.write_atomically(self.run_dir / LAST, self.model.save)
        if _better(value, state["best"], state["mode"]):
            files.write_atomically(self.run_dir / BEST, self.model.save)
            state.update(best=value, best_epoch=epoch + 1)
        if monitor not in logs and not self.warned:
            self.warned = True
            warnings.warn(f"No {BEST}: {monitor!r} is not logged; pick one of {sorted(logs)}.", stacklevel=2)
        state.update(epoch=epoch + 1, model=self.model.name)
        text = json.dumps(state, indent=2)
        files.write_atomically(self.run_dir / STATE, lambda path: path.write_text(text))


class _HistoryLogger(keras.callbacks.CSVLogger):
    """Keras' ``CSVLogger`` that keeps the columns of the ``history.csv`` it appends to."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # opens the file, so it exists now
        header = Path(self.filename).read_text().splitlines()[:1]  # [] in a new file
        if self.append and header:
            self.keys = [key for key in header[0].split(",") if key != "epoch"]


def train(
    model,
    train_data,
    val_data=None,
    *,
    run_dir,
    epochs,
    callbacks=(),
    monitor="val_loss",
    mode=None,
    resume=True,
    overwrite=False,
    verbose="auto",
):
    """``model.fit`` that saves the run in ``run_dir`` (created if missing) after every epoch and resumes it.

    ``train_data``, ``val_data``, ``epochs`` (the total), ``callbacks`` and ``verbose`` are ``fit``'s; the
    ``callbacks`` run before those that save, so what they log can be monitored. ``monitor`` picks
    ``best.keras`` (``"loss"`` without ``val_data``); ``mode``, "min" or "max", is needed for names the
    package does not know. A run found in ``run_dir`` is resumed if ``resume``, deleted if ``overwrite``,
    never replaced silently. Returns ``fit``'s History of this session (:func:`read_history` reads the run).
    Taught in chapter 5 (Training the U-Net).
    """
    if not getattr(model, "compiled", False):
        raise ValueError("Compile the model before training: model.compile(optimizer=..., loss=...).")
    monitor = "loss" if val_data is None and monitor == "val_loss" else monitor
    state = dict(epoch=0, monitor=monitor, mode=_monitor_mode(monitor, mode), best=None, best_epoch=None)
    run_dir = Path(run_dir)
    resuming = _resume(model, run_dir, state, resume, overwrite)
    done = state["epoch"]
    if done >= epochs:
        hint = "Pass a larger number of epochs to continue training."
        print(f"{run_dir} already holds {done} epochs (asked for {epochs}); nothing to train. {hint}")
        history = keras.callbacks.History()  # what fit returns after no epoch
        history.set_model(model)
        history.on_train_begin()
        return history
    if resuming:
        print(f"Resuming {run_dir} after epoch {done} of {epochs}.")
    if hasattr(train_data, "set_epoch"):  # a SegmentationDataset: a resumed run draws new crops
        train_data.set_epoch(done)
    cbs = [*callbacks, _RunCheckpoints(run_dir, state), _HistoryLogger(run_dir / HISTORY, append=resuming)]
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        initial_epoch=done,
        callbacks=cbs,
        verbose=verbose,
    )


def _resume(model, run_dir, state, resume, overwrite):
    """Load the run in ``run_dir`` into ``model`` and ``state``; False if there is none (or ``overwrite``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = [name for name in (LAST, BEST, HISTORY, STATE) if (run_dir / name).exists()]
    if overwrite:
        for name in existing:
            (run_dir / name).unlink()
    if overwrite or not existing:
        return False
    if not resume or LAST not in existing:
        reason = f"it has no {LAST} to resume from" if resume else "resume=False"
        raise FileExistsError(
            f"{run_dir} already holds a training run ({', '.join(existing)}) and {reason}. "
            "Choose a new run folder, or pass overwrite=True to replace those files."
        )
    saved = read_state(run_dir) or {}
    if not model.optimizer.built:  # so that the optimizer state is loaded too
        model.optimizer.build(model.trainable_variables)
    model_files.load_weights_checked(model, run_dir / LAST)
    state["epoch"] = saved.get("epoch", 0)
    history = run_dir / HISTORY  # its rows after state.json's epoch are dropped (module notes)
    lines = history.read_text().splitlines(keepends=True) if history.exists() else []
    keep = lines[:1] + [line for line in lines[1:] if int(float(line.split(",", 1)[0])) < state["epoch"]]
    if len(keep) < len(lines):
        files.write_atomically(history, lambda path: path.write_text("".join(keep)))
    if (saved.get("monitor"), saved.get("mode")) == (state["monitor"], state["mode"]):
        state.update(best=saved.get("best"), best_epoch=saved.get("best_epoch"))
    elif saved:
        before, now = saved.get("monitor"), state["monitor"]
        warnings.warn(f"{BEST} was chosen by {before!r}, now by {now!r}: a new best starts.", stacklevel=3)
    return True


def read_state(run_dir):
    """The ``state.json`` of a run as a dict (epoch, monitor, mode, best, best_epoch, model), or None.

    Taught in chapter 5 (Training the U-Net).

    Examples
    --------
    >>> read_state("no/such/folder") is None  # a folder without a run
    True
    """
    path = Path(run_dir) / STATE
    return json.loads(path.read_text()) if path.exists() else None


def read_history(source):
    """A run's history as ``{name: list of float}``, ``"epoch"`` counted from 1 and ``"NA"`` read as NaN.

    ``source`` is what ``fit`` returns, a ``history.csv`` or the run folder holding one. Taught in
    chapter 5 (Training the U-Net); chapter 9 (Results) reads the recipes' histories with it.

    Examples
    --------
    >>> history = keras.callbacks.History()
    >>> history.epoch, history.history = [0, 1], {"loss": [0.5, 0.25]}
    >>> read_history(history)
    {'loss': [0.5, 0.25], 'epoch': [1.0, 2.0]}
    """
    if isinstance(source, keras.callbacks.History):
        columns = dict(source.history, epoch=source.epoch)
    else:
        with open(Path(source) / HISTORY if Path(source).is_dir() else source, newline="") as file:
            rows = list(csv.DictReader(file))
        columns = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
    history = {key: [_float(value) for value in values] for key, values in columns.items()}
    if "epoch" in history:  # Keras counts from 0
        history["epoch"] = [epoch + 1 for epoch in history["epoch"]]
    return history


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_learning_curves(history_or_csv_path, keys=None):
    """Training (solid) and validation (dashed) curves of a :func:`read_history` source, a panel per name.

    ``keys`` (names without ``val_``) picks the panels, default all. A loss panel has a log scale when
    its values span more than a factor of 10. Returns the figure. Taught in chapter 3 (A mini U-Net).
    """
    import matplotlib.pyplot as plt

    history = {k: np.asarray(v, dtype=float) for k, v in read_history(history_or_csv_path).items()}
    epochs = history.pop("epoch", np.array([]))
    if not epochs.size:
        raise ValueError("The history is empty: there is nothing to plot yet.")
    names = sorted({key.removeprefix("val_") for key, values in history.items() if np.isfinite(values).any()})
    missing = [key for key in keys or () if key not in names]
    if missing:
        raise ValueError(f"No values for {missing} in the history; it has {names}.")
    names = names if keys is None else list(keys)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        for key, style, label in ((name, "-", "training"), (f"val_{name}", "--", "validation")):
            finite = np.isfinite(history.get(key, np.array([])))
            if finite.any():
                axis.plot(epochs[finite], history[key][finite], style, marker="o", markersize=3, label=label)
        shown = np.concatenate([line.get_ydata() for line in axis.lines])
        if "loss" in name and shown.min() > 0 and shown.max() / shown.min() > 10:
            axis.set_yscale("log")
        axis.set(xlabel="epoch", title=name)
        axis.legend()
    figure.tight_layout()
    return figure

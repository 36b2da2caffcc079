"""Watching a U-Net learn: a live preview of its prediction, and the challenge's score per epoch.

Both callbacks predict whole images, by default by overlap-tile (``tiling.predict_tiled``),
and read the network's output as the probability of "cell" (:func:`cell_probability`).

Taught in chapter 3 (A mini U-Net) and chapter 4 (The full U-Net).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import keras
import numpy as np

from unet_tutorial import challenge, files, tiling

__all__ = ["cell_probability", "LivePreview", "ValidationScores"]


def cell_probability(prediction):
    """The probability of the foreground ("cell") at each pixel of a network's output.

    A sigmoid output, (H, W) or (H, W, 1), is that probability. A softmax over K classes,
    (H, W, K), gives one probability per class, class 0 being the background (membrane):
    the foreground is 1 - P(class 0), computed as the sum of classes 1 to K-1 (for K = 2,
    class 1).

    Parameters
    ----------
    prediction : array_like
        One image's output, (H, W), (H, W, 1) or (H, W, K).

    Returns
    -------
    numpy.ndarray
        (H, W) probabilities.

    Examples
    --------
    >>> cell_probability(np.array([[[0.25], [0.75]]]))  # sigmoid, (1, 2, 1)
    array([[0.25, 0.75]])
    >>> cell_probability(np.array([[[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]]]))  # softmax, K = 3
    array([[0.5  , 0.875]])
    """
    prediction = np.asarray(prediction)
    if prediction.ndim == 2:
        return prediction
    if prediction.ndim != 3:
        raise ValueError(f"expected one image's prediction, (H, W) or (H, W, K), got {prediction.shape}.")
    return prediction[..., 0] if prediction.shape[-1] == 1 else prediction[..., 1:].sum(axis=-1)


def _predict_whole(model, image):
    """Cell probability of a whole image by overlap-tile, so any image size works with any U-Net."""
    return tiling.predict_tiled(model, image)


def _in_notebook():
    """True inside a Jupyter kernel (Colab included), where figures can be shown inline."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return hasattr(get_ipython(), "kernel")


def _is_due(epoch, every, params):
    """True after every ``every``-th epoch and after the last (``epoch`` counts from 0).

    Examples
    --------
    >>> [epoch + 1 for epoch in range(7) if _is_due(epoch, 3, {"epochs": 7})]
    [3, 6, 7]
    """
    return (epoch + 1) % every == 0 or epoch + 1 == params.get("epochs")


class LivePreview(keras.callbacks.Callback):
    """Show input, ground truth, probability and mask side by side every few epochs.

    In a notebook the figure replaces the previous one in place, so a long run shows one
    up-to-date picture. Elsewhere it is written to ``path`` if one is given, and skipped
    otherwise.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C) image, scaled as the network was trained (e.g. ``data.to_float``).
    mask : numpy.ndarray, optional
        (H, W) ground truth; no truth panel when None.
    every : int
        Show after every ``every``-th epoch, and after the last.
    path : str or Path, optional
        PNG file to (over)write with the latest figure.
    predict : callable, optional
        ``predict(model, image)`` returns the network's output for the whole image; by
        default overlap-tile prediction. A smaller output (a valid U-Net applied directly)
        is fine: image and mask are cropped to it.
    title : str
        Figure title; ``{epoch}`` is replaced by the epoch number.
    """

    def __init__(self, image, mask=None, every=1, path=None, predict=None, title="epoch {epoch}"):
        super().__init__()
        self.image = np.asarray(image)
        self.mask = None if mask is None else np.asarray(mask)
        if self.mask is not None and self.mask.shape != self.image.shape[:2]:
            raise ValueError(f"mask shape {self.mask.shape} does not match image shape "
                             f"{self.image.shape[:2]}.")
        self.every, self.title = every, title
        self.path = None if path is None else Path(path)
        self.predict = predict or _predict_whole
        self._handle = None

    def on_epoch_end(self, epoch, logs=None):
        notebook = _in_notebook()
        if not _is_due(epoch, self.every, self.params) or not (notebook or self.path):
            return  # not now, or nowhere to show it: no prediction spent
        png = self._png(epoch + 1)
        if self.path is not None:
            files.write_atomically(self.path, lambda target: target.write_bytes(png))
        if notebook:
            self._show(png)

    def _png(self, epoch):
        """The current ``plotting.show_prediction`` figure as PNG bytes."""
        from unet_tutorial import plotting

        prob = cell_probability(self.predict(self.model, self.image))
        figure = plotting.show_prediction(self.image, self.mask, prob)
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
    """Log the challenge's V_Rand and V_Info of the validation slices as ``val_v_rand``, ``val_v_info``.

    Every ``every`` epochs (and after the last) each validation image is predicted whole
    and the stack is scored as the challenge scored it: ``challenge.isbi_scores`` with one
    threshold for all slices. In the other epochs the values are NaN, which never counts
    as an improvement. Put it before the callbacks that save or stop on these values
    (``training.train`` does), so that they see them.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    images, masks : sequence of numpy.ndarray
        Validation images (scaled as in training) and their masks (1 = cell, 0 = membrane).
    every : int
        Score every ``every``-th epoch: predicting whole images takes a while on a CPU.
    predict : callable, optional
        ``predict(model, image)`` returns the network's output for the whole image; by
        default overlap-tile prediction.
    """

    #: The names it logs.
    KEYS = ("val_v_rand", "val_v_info")

    def __init__(self, images, masks, every=1, predict=None):
        super().__init__()
        if len(images) != len(masks) or len(images) == 0:
            raise ValueError(f"need the same, non-zero number of images and masks, got {len(images)} and "
                             f"{len(masks)}.")
        self.images = [np.asarray(image) for image in images]
        self.masks = [np.asarray(mask) for mask in masks]
        self.every = every
        self.predict = predict or _predict_whole

    def scores(self):
        """``{"val_v_rand": ..., "val_v_info": ...}`` of the current model on the validation stack."""
        probs = [cell_probability(self.predict(self.model, image)) for image in self.images]
        masks = [tiling.center_crop(mask, prob.shape) for mask, prob in zip(self.masks, probs)]
        scores = challenge.isbi_scores(probs, masks)
        return {"val_v_rand": scores["v_rand"], "val_v_info": scores["v_info"]}

    def on_epoch_end(self, epoch, logs=None):
        due = _is_due(epoch, self.every, self.params)
        logs.update(self.scores() if due else dict.fromkeys(self.KEYS, math.nan))

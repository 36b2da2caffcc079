"""Watching a U-Net learn: a live preview of its prediction, and the challenge's score per epoch.

Both callbacks predict whole images, by default by overlap-tile (``tiling.predict_tiled``),
and read the network's output as the probability of "cell" (:func:`cell_probability`).

Taught in chapter 3 (A mini U-Net) and chapter 5 (Training the U-Net).
"""

from __future__ import annotations

import io
import math

import keras
import numpy as np

from unet_tutorial import challenge, files, plotting, tiling

__all__ = ["cell_probability", "LivePreview", "ValidationScores"]


def cell_probability(prediction):
    """The probability of "cell" at each pixel of one image's network output.

    A sigmoid output, (H, W) or (H, W, 1), is that probability. A softmax over K classes, (H, W, K),
    class 0 being the membrane, gives 1 - P(class 0), computed as the sum of classes 1 to K-1.

    Examples
    --------
    >>> cell_probability(np.array([[[0.25], [0.75]]]))  # sigmoid, (1, 2, 1)
    array([[0.25, 0.75]])
    >>> cell_probability(np.array([[[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]]]))  # softmax, K = 3
    array([[0.5  , 0.875]])
    """
    prediction = np.asarray(prediction)
    if prediction.ndim not in (2, 3):
        raise ValueError(f"expected one image's prediction, (H, W) or (H, W, K), got {prediction.shape}.")
    if prediction.ndim == 2:
        return prediction
    return prediction[..., 0] if prediction.shape[-1] == 1 else prediction[..., 1:].sum(axis=-1)


def _in_notebook():
    """True inside a Jupyter kernel (Colab included), where figures can be shown inline."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return hasattr(get_ipython(), "kernel")


def _is_due(epoch, every, params):
    """True after every ``every``-th epoch and after the last (``epoch`` counts from 0).

    >>> [epoch + 1 for epoch in range(7) if _is_due(epoch, 3, {"epochs": 7})]
    [3, 6, 7]
    """
    return (epoch + 1) % every == 0 or epoch + 1 == params.get("epochs")


class LivePreview(keras.callbacks.Callback):
    """Show input, truth, probability and mask side by side after every ``every``-th epoch and the last.

    ``image`` (scaled as in training) is predicted whole by ``predict(model, image)``, default overlap-tile;
    a smaller output crops it and its ``mask`` (or None). In a notebook the figure replaces the previous one
    in place; elsewhere it is written to ``path`` (a PNG) if given. ``title`` may hold ``{epoch}``.
    Taught in chapter 3 (A mini U-Net).
    """

    def __init__(self, image, mask=None, every=1, path=None, predict=None, title="epoch {epoch}"):
        super().__init__()
        self.image, self.mask = np.asarray(image), None if mask is None else np.asarray(mask)
        if self.mask is not None and self.mask.shape != self.image.shape[:2]:
            raise ValueError(f"mask shape {self.mask.shape} does not match image {self.image.shape[:2]}.")
        self.every, self.path, self.predict, self.title = every, path, predict or tiling.predict_tiled, title
        self.handle = None

    def on_epoch_end(self, epoch, logs=None):
        notebook = _in_notebook()
        if not _is_due(epoch, self.every, self.params) or not (notebook or self.path):
            return  # not now, or nowhere to show it: no prediction spent
        prob = cell_probability(self.predict(self.model, self.image))
        figure = plotting.show_prediction(self.image, self.mask, prob)
        figure.suptitle(self.title.format(epoch=epoch + 1))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        png = buffer.getvalue()
        if self.path is not None:
            files.write_atomically(self.path, lambda target: target.write_bytes(png))
        if notebook:
            from IPython.display import Image, display

            if self.handle is None:
                self.handle = display(Image(data=png), display_id=True)
            else:
                self.handle.update(Image(data=png))


class ValidationScores(keras.callbacks.Callback):
    """Log the challenge's V_Rand and V_Info of the validation stack as ``val_v_rand`` and ``val_v_info``.

    After every ``every``-th epoch and the last, each of ``images`` (scaled as in training) is predicted
    whole (``predict(model, image)``, by default overlap-tile) and the stack is scored against ``masks`` as
    the challenge did: ``challenge.isbi_scores``, one threshold for all slices. Other epochs log NaN, which
    never counts as an improvement. ``training.train`` runs it before the callbacks that save.
    Taught in chapter 5 (Training the U-Net).
    """

    KEYS = ("val_v_rand", "val_v_info")

    def __init__(self, images, masks, every=1, predict=None):
        super().__init__()
        if len(images) != len(masks) or len(images) == 0:
            raise ValueError(f"got {len(images)} images and {len(masks)} masks; pass one mask per image.")
        self.images, self.masks, self.every = images, masks, every
        self.predict = predict or tiling.predict_tiled

    def scores(self):
        """``{"val_v_rand": ..., "val_v_info": ...}`` of the current model on the validation stack."""
        probs = [cell_probability(self.predict(self.model, image)) for image in self.images]
        masks = [tiling.center_crop(np.asarray(mask), prob.shape) for mask, prob in zip(self.masks, probs)]
        scores = challenge.isbi_scores(probs, masks)
        return {"val_v_rand": scores["v_rand"], "val_v_info": scores["v_info"]}

    def on_epoch_end(self, epoch, logs=None):
        due = _is_due(epoch, self.every, self.params)
        logs.update(self.scores() if due else dict.fromkeys(self.KEYS, math.nan))

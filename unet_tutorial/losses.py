"""The U-Net paper's loss: pixel-wise cross-entropy weighted by a weight map.

The U-Net paper trains with a per-pixel weighted cross-entropy (its eq. 1, the
"energy"): every pixel's log-loss is multiplied by a weight map ``w(x)`` that
stresses the thin borders between cells. In Keras the weight map travels as
``sample_weight``: ``model.fit(x, y, sample_weight=w)`` with ``w`` shaped like
the label maps ``(B, H, W)``, or a ``keras.utils.PyDataset`` that yields
``(x, y, w)``. One weight per image ``(B,)`` is also accepted and spread over its pixels.

How Keras reduces a loss with ``sample_weight`` (``keras/src/losses/loss.py``,
reduction ``"sum_over_batch_size"``): it multiplies the per-pixel losses ``l`` by
``w`` and divides the sum by the *number of elements*, i.e. ``sum(w * l) / N``
with ``N = B * H * W`` pixels of the batch. :class:`PixelCrossEntropy` offers
that (``normalization="pixels"``): the paper's energy up to the constant factor
``-1/N``, whose size follows the weights (doubling ``w`` doubles the loss). It also
offers the weighted mean ``sum(w * l) / sum(w)`` (``normalization="weights"``):
scaling ``w`` changes nothing, so the loss stays comparable to the unweighted one.
It rescales ``w`` to sum to N, so Keras' own division gives the weighted mean; a
batch whose weights sum to 0 gives 0. Both are computed per batch; ``fit``/``evaluate``
report the mean of the batch values, weighted by batch size.

Every loss here uses ``keras.ops`` only, so it runs on the TensorFlow, JAX and
PyTorch backends. The classes and functions are registered with
``keras.saving.register_keras_serializable(package="unet_tutorial")``: import
this module before ``keras.saving.load_model`` so saved models find them.

Taught in chapter 6 (Weight maps).
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["PixelCrossEntropy", "pixel_cross_entropy"]


def _prepare_labels(y_true, y_pred):
    """``(labels, is_one_hot)``: class indices (B, H, W) from (B, H, W) or (B, H, W, 1), or one-hot."""
    y_true = ops.convert_to_tensor(y_true)
    rank, n_classes = len(y_pred.shape), y_pred.shape[-1]
    if len(y_true.shape) == rank - 1:
        return y_true, False
    if len(y_true.shape) == rank and y_true.shape[-1] == 1:
        return ops.squeeze(y_true, axis=-1), False
    if len(y_true.shape) == rank and y_true.shape[-1] == n_classes > 1:
        return y_true, True
    raise ValueError(
        f"y_true shape {y_true.shape} does not fit y_pred shape {y_pred.shape}: give class indices "
        "(B, H, W) or (B, H, W, 1) (0/1 for a sigmoid output), or one-hot labels (B, H, W, K) for softmax."
    )


def _pixel_weight_map(sample_weight, y_pred):
    """``sample_weight`` (B, H, W), (B, H, W, 1) or one per image (B,) as a (B, H, W) map."""
    w = ops.convert_to_tensor(sample_weight, dtype=y_pred.dtype)
    rank = len(y_pred.shape) - 1  # of the pixels
    if len(w.shape) == rank + 1 and w.shape[-1] == 1:
        w = ops.squeeze(w, axis=-1)
    elif len(w.shape) == 1:
        w = ops.reshape(w, (-1,) + (1,) * (rank - 1))
    elif len(w.shape) != rank:
        raise ValueError(
            f"sample_weight shape {w.shape} does not fit y_pred shape {y_pred.shape}: give a weight "
            "map (B, H, W) like the labels, or one weight per image (B,)."
        )
    return w * ops.ones_like(y_pred[..., 0])  # broadcast, so that sum(w) counts every pixel


@keras.saving.register_keras_serializable(package="unet_tutorial")
def pixel_cross_entropy(y_true, y_pred, from_logits=False):
    """Cross-entropy of every pixel, unreduced.

    A sigmoid output (last axis 1) gets ``-(y log p + (1 - y) log(1 - p))``, a softmax
    output with K > 1 channels ``-log p[y]`` for the true class ``y``. Returns a (B, H, W) tensor.
    Taught in chapter 6 (Weight maps).

    Parameters
    ----------
    y_true : class indices (B, H, W) or (B, H, W, 1), or one-hot labels (B, H, W, K) for softmax
    y_pred : network output (B, H, W, 1) or (B, H, W, K): probabilities, or logits if ``from_logits``
    """
    y_pred = ops.convert_to_tensor(y_pred)
    labels, is_one_hot = _prepare_labels(y_true, y_pred)
    if y_pred.shape[-1] > 1 and not is_one_hot:  # softmax and class indices
        return ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"), y_pred, from_logits=from_logits)
    target = ops.cast(labels, y_pred.dtype)
    if is_one_hot:
        return ops.categorical_crossentropy(target, y_pred, from_logits=from_logits)
    return ops.binary_crossentropy(target, y_pred[..., 0], from_logits=from_logits)  # sigmoid


@keras.saving.register_keras_serializable(package="unet_tutorial")
class PixelCrossEntropy(keras.losses.Loss):
    """Per-pixel cross-entropy (:func:`pixel_cross_entropy`) weighted by ``sample_weight`` (paper, eq. 1).

    ``normalization`` is "pixels", ``sum(w * l) / N`` (weights w, pixel losses l, N pixels; Keras'
    own), or "weights", ``sum(w * l) / sum(w)``. Taught in chapter 6 (Weight maps).

    Examples
    --------
    >>> model.compile(optimizer="adam", loss=PixelCrossEntropy())  # doctest: +SKIP
    >>> model.fit(images, masks, sample_weight=weight_maps)  # doctest: +SKIP
    """

    def __init__(self, normalization="pixels", from_logits=False, name="pixel_cross_entropy", dtype=None):
        if normalization not in ("pixels", "weights"):
            raise ValueError(
                f"normalization must be 'pixels' (divide by the pixel count, Keras' default) or "
                f"'weights' (divide by the sum of the weights), got {normalization!r}."
            )
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.normalization, self.from_logits = normalization, bool(from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            sample_weight = _pixel_weight_map(sample_weight, y_pred)
            if self.normalization == "weights":  # w * N / sum(w): Keras' sum(w * l) / N is then the mean
                n_pixels = ops.cast(ops.size(sample_weight), sample_weight.dtype)
                sample_weight = sample_weight * ops.divide_no_nan(n_pixels, ops.sum(sample_weight))
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return pixel_cross_entropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {"name": self.name, "normalization": self.normalization, "from_logits": self.from_logits}

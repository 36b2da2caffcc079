"""The U-Net paper's loss: pixel-wise cross-entropy weighted by a weight map.

The U-Net paper trains with a per-pixel weighted cross-entropy (its eq. 1, the
"energy"): every pixel's log-loss is multiplied by a weight map ``w(x)`` that
stresses the thin borders between cells. In Keras the weight map travels as
``sample_weight``: ``model.fit(x, y, sample_weight=w)`` with ``w`` shaped like
the label maps ``(B, H, W)``, or a ``keras.utils.PyDataset`` that yields
``(x, y, w)``.

How Keras reduces a loss with ``sample_weight`` (``keras/src/losses/loss.py``,
reduction ``"sum_over_batch_size"``): it multiplies the per-pixel losses ``l`` by
``w`` and divides the sum by the *number of elements*, i.e. ``sum(w * l) / N``
with ``N = B * H * W`` pixels of the batch. :class:`PixelCrossEntropy` offers
that (``normalization="pixels"``) and the weighted mean ``sum(w * l) / sum(w)``
(``normalization="weights"``). Both are computed per batch; ``fit``/``evaluate``
report the mean of the batch values, weighted by batch size.

Every loss here uses ``keras.ops`` only, so it runs on the TensorFlow, JAX and
PyTorch backends. The classes and functions are registered with
``keras.saving.register_keras_serializable(package="unet_tutorial")``: import
this module before ``keras.saving.load_model`` so saved models find them.

Taught in chapter 5 (Weight maps).
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["PixelCrossEntropy", "pixel_cross_entropy"]

_NORMALIZATIONS = ("pixels", "weights")
_register = keras.saving.register_keras_serializable(package="unet_tutorial")


# --------------------------------------------------------------------- helpers
def _n_classes(y_pred):
    n_classes = y_pred.shape[-1]
    if n_classes is None or len(y_pred.shape) < 2:
        raise ValueError(
            "y_pred must have a known last (channel) axis, e.g. (B, H, W, 1) for a "
            f"sigmoid output or (B, H, W, K) for softmax; got shape {y_pred.shape}."
        )
    return n_classes


def _prepare_labels(y_true, y_pred):
    """Return ``(labels, is_one_hot)``; labels are (B, H, W) or one-hot (B, H, W, K).

    Accepts class maps shaped like the pixels (B, H, W), with a trailing channel
    of 1 (B, H, W, 1), or one-hot maps (B, H, W, K) for a softmax output.
    """
    n_classes = _n_classes(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    pixel_rank = len(y_pred.shape) - 1
    rank = len(y_true.shape)
    if rank == pixel_rank:
        return y_true, False
    if rank == pixel_rank + 1 and y_true.shape[-1] == 1:
        return ops.squeeze(y_true, axis=-1), False
    if rank == pixel_rank + 1 and y_true.shape[-1] == n_classes and n_classes > 1:
        return y_true, True
    raise ValueError(
        f"y_true shape {y_true.shape} does not fit y_pred shape {y_pred.shape}: "
        "give class indices shaped (B, H, W) or (B, H, W, 1) (0/1 for a sigmoid "
        "output), or one-hot labels (B, H, W, K) for a K-class softmax output."
    )


def _pixel_weight_map(sample_weight, y_pred):
    """Bring ``sample_weight`` to the pixel shape (B, H, W) of ``y_pred``.

    Accepts pixel maps (B, H, W) or (B, H, W, 1) and one weight per image (B,).
    """
    w = ops.convert_to_tensor(sample_weight, dtype=y_pred.dtype)
    pixel_rank = len(y_pred.shape) - 1
    if len(w.shape) == pixel_rank + 1 and w.shape[-1] == 1:
        w = ops.squeeze(w, axis=-1)
    elif len(w.shape) == 1 and pixel_rank > 1:
        w = ops.reshape(w, (-1,) + (1,) * (pixel_rank - 1))
    elif len(w.shape) != pixel_rank:
        raise ValueError(
            f"sample_weight shape {w.shape} does not fit y_pred shape {y_pred.shape}: "
            "give a weight map shaped (B, H, W) like the labels, or one weight per "
            "image shaped (B,)."
        )
    # Broadcasting against the pixels makes sum(w) count every pixel.
    return w * ops.ones_like(y_pred[..., 0])


# -------------------------------------------------------------- cross-entropy
@_register
def pixel_cross_entropy(y_true, y_pred, from_logits=False):
    """Cross-entropy of every pixel, unreduced.

    A sigmoid output (last axis of ``y_pred`` is 1) gets binary cross-entropy
    ``-(y log p + (1 - y) log(1 - p))``; a softmax output with K > 1 channels gets
    ``-log p[y]`` for the true class ``y``.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    y_true : array or tensor
        Class indices (B, H, W) or (B, H, W, 1); 0/1 for a sigmoid output. A softmax
        output also accepts one-hot labels (B, H, W, K).
    y_pred : array or tensor
        Network output (B, H, W, 1) for sigmoid or (B, H, W, K) for softmax:
        probabilities, or logits when ``from_logits=True``.
    from_logits : bool
        Whether ``y_pred`` holds logits (no final activation) instead of
        probabilities.

    Returns
    -------
    tensor
        Per-pixel losses shaped (B, H, W).
    """
    y_pred = ops.convert_to_tensor(y_pred)
    n_classes = _n_classes(y_pred)
    labels, is_one_hot = _prepare_labels(y_true, y_pred)
    if n_classes == 1:
        target = ops.cast(labels, y_pred.dtype)
        return ops.binary_crossentropy(target, y_pred[..., 0], from_logits=from_logits)
    if is_one_hot:
        target = ops.cast(labels, y_pred.dtype)
        return ops.categorical_crossentropy(target, y_pred, from_logits=from_logits)
    target = ops.cast(labels, "int32")
    return ops.sparse_categorical_crossentropy(target, y_pred, from_logits=from_logits)


@_register
class PixelCrossEntropy(keras.losses.Loss):
    """Per-pixel cross-entropy weighted by a weight map passed as ``sample_weight``.

    Sigmoid or softmax is chosen from the last axis of ``y_pred`` (1 = sigmoid,
    K > 1 = softmax), see :func:`pixel_cross_entropy`. With a weight map ``w`` of
    shape (B, H, W) and per-pixel losses ``l`` the batch loss is

    * ``normalization="pixels"``: ``sum(w * l) / N`` with N the number of pixels
      in the batch. This is Keras' own ``"sum_over_batch_size"`` reduction and the
      paper's energy (eq. 1) up to the constant factor ``-1/N``. Its size follows
      the weights: doubling ``w`` doubles the loss.
    * ``normalization="weights"``: ``sum(w * l) / sum(w)``, a weighted mean of the
      pixel losses. Scaling ``w`` changes nothing, so the loss stays comparable to
      the unweighted one; a batch whose weights sum to 0 gives 0.

    Without ``sample_weight`` both equal the mean pixel cross-entropy. One weight
    per image (B,) is also accepted and spread over its pixels.

    Taught in chapter 5 (Weight maps).

    Parameters
    ----------
    normalization : {"pixels", "weights"}
        What the weighted sum is divided by, see above.
    from_logits : bool
        Whether ``y_pred`` holds logits instead of probabilities.
    name : str
        Name shown by Keras.
    dtype : str, optional
        Compute dtype; Keras' float type by default.

    Examples
    --------
    >>> model.compile(optimizer="adam", loss=PixelCrossEntropy())  # doctest: +SKIP
    >>> model.fit(images, masks, sample_weight=weight_maps)  # doctest: +SKIP
    """

    def __init__(
        self,
        normalization="pixels",
        from_logits=False,
        name="pixel_cross_entropy",
        dtype=None,
    ):
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}: "
                "'pixels' divides the weighted sum by the pixel count (Keras' default), "
                "'weights' by the sum of the weights."
            )
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.normalization = normalization
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            sample_weight = _pixel_weight_map(sample_weight, y_pred)
            if self.normalization == "weights":
                # Rescale w so it sums to N: Keras' sum(w*l)/N then is sum(w*l)/sum(w).
                n_pixels = ops.cast(ops.size(sample_weight), sample_weight.dtype)
                sample_weight = sample_weight * ops.divide_no_nan(
                    n_pixels, ops.sum(sample_weight)
                )
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return pixel_cross_entropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {
            "name": self.name,
            "normalization": self.normalization,
            "from_logits": self.from_logits,
        }

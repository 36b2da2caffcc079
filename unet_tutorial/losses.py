"""Losses for U-Net training: weighted pixel cross-entropy, soft Dice, BCE + Dice.

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

Taught in chapter 4 (The full U-Net) and chapter 5 (Weight maps).
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "BCEDiceLoss",
    "DiceLoss",
    "PixelCrossEntropy",
    "bce_dice_loss",
    "dice_loss",
    "pixel_cross_entropy",
]

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


def _one_hot(labels, is_one_hot, n_classes, dtype):
    if is_one_hot:
        return ops.cast(labels, dtype)
    return ops.one_hot(ops.cast(labels, "int32"), n_classes, dtype=dtype)


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


def _image_axes(tensor):
    """All axes but the batch axis."""
    return tuple(range(1, len(tensor.shape)))


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


# ------------------------------------------------------------------------ Dice
@_register
def dice_loss(y_true, y_pred, smooth=1.0):
    """Soft Dice loss ``1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s)`` per image.

    ``p`` are predicted probabilities, ``y`` the true 0/1 labels and ``s`` the
    ``smooth`` term, which keeps the ratio defined for empty images (an image
    where both are empty scores a perfect 0). Sums run over each image, so
    every image counts equally however many cell pixels it has. For a softmax
    output the Dice of each class (one-hot ``y``) is averaged over the K classes.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    y_true : array or tensor
        Class indices (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, K) for softmax.
    y_pred : array or tensor
        Probabilities (B, H, W, 1) from a sigmoid or (B, H, W, K) from a softmax.
    smooth : float
        Added to numerator and denominator; larger values soften the gradient
        on images with few cell pixels.

    Returns
    -------
    tensor
        One loss per image, shaped (B,).
    """
    y_pred = ops.convert_to_tensor(y_pred)
    n_classes = _n_classes(y_pred)
    labels, is_one_hot = _prepare_labels(y_true, y_pred)
    if n_classes == 1:
        target = ops.expand_dims(ops.cast(labels, y_pred.dtype), -1)
    else:
        target = _one_hot(labels, is_one_hot, n_classes, y_pred.dtype)
    # Sum over the pixels, keep (B, K) so every class gets its own ratio.
    pixel_axes = tuple(range(1, len(y_pred.shape) - 1))
    overlap = ops.sum(y_pred * target, axis=pixel_axes)
    total = ops.sum(y_pred, axis=pixel_axes) + ops.sum(target, axis=pixel_axes)
    dice = (2.0 * overlap + smooth) / (total + smooth)
    return 1.0 - ops.mean(dice, axis=-1)


@_register
def bce_dice_loss(y_true, y_pred, smooth=1.0):
    """Mean pixel cross-entropy plus soft Dice loss, per image.

    The cross-entropy gives every pixel a gradient; the Dice term counters a
    small foreground class. See :func:`pixel_cross_entropy` and :func:`dice_loss`
    (softmax outputs use the categorical cross-entropy).

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    y_true : array or tensor
        Class indices (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, K) for softmax.
    y_pred : array or tensor
        Probabilities (B, H, W, 1) or (B, H, W, K).
    smooth : float
        Smooth term of the Dice part.

    Returns
    -------
    tensor
        One loss per image, shaped (B,).
    """
    pixel_losses = pixel_cross_entropy(y_true, y_pred)
    return ops.mean(pixel_losses, axis=_image_axes(pixel_losses)) + dice_loss(
        y_true, y_pred, smooth=smooth
    )


class _PerImageLoss(keras.losses.Loss):
    """Base for losses that give one value per image (Dice-like ratios)."""

    def __init__(self, smooth=1.0, name=None, dtype=None):
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}.")
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.smooth = float(smooth)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None and len(ops.shape(sample_weight)) > 1:
            raise ValueError(
                f"{type(self).__name__} is a ratio over whole images and cannot use a "
                f"per-pixel weight map (sample_weight shape {ops.shape(sample_weight)}); "
                "pass one weight per image (B,), or use PixelCrossEntropy for weight maps."
            )
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "smooth": self.smooth}


@_register
class DiceLoss(_PerImageLoss):
    """Soft Dice loss as a Keras loss, averaged over the images of a batch.

    See :func:`dice_loss`. Per-pixel weight maps are refused because Dice is a
    ratio over the whole image; one weight per image (B,) works.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    smooth : float
        Added to numerator and denominator of the Dice ratio.
    name : str
        Name shown by Keras.
    dtype : str, optional
        Compute dtype.
    """

    def __init__(self, smooth=1.0, name="dice_loss", dtype=None):
        super().__init__(smooth=smooth, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        return dice_loss(y_true, y_pred, smooth=self.smooth)


@_register
class BCEDiceLoss(_PerImageLoss):
    """Mean pixel cross-entropy plus soft Dice, averaged over the images of a batch.

    See :func:`bce_dice_loss`. For the paper's weight maps use
    :class:`PixelCrossEntropy`; this loss takes only one weight per image.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    smooth : float
        Smooth term of the Dice part.
    name : str
        Name shown by Keras.
    dtype : str, optional
        Compute dtype.
    """

    def __init__(self, smooth=1.0, name="bce_dice_loss", dtype=None):
        super().__init__(smooth=smooth, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        return bce_dice_loss(y_true, y_pred, smooth=self.smooth)

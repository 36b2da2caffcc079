"""The training data of the chapters: random, mirrored, augmented crops in batches.

The paper trains on input tiles larger than their label tiles; where an input tile
reaches beyond the image, the missing context is mirrored. ``SegmentationDataset``
cuts such crops anywhere in the training images, augments them with
``augment.random_transform`` and serves them to ``model.fit``.

Taught in chapter 2 (Augmentation); the chapters 3 to 7 train with it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import keras
import numpy as np

from unet_tutorial import augment as augmentation
from unet_tutorial import data, tiling

__all__ = ["MIRROR_MODE", "SegmentationDataset"]

#: How training inputs are mirrored beyond the image border: without repeating the border
#: pixel (np.pad's "reflect", SciPy's "mirror"). Prediction (tiling.predict_tiled) defaults
#: to "symmetric"; both are mirror images of the tissue.
MIRROR_MODE = "reflect"


class SegmentationDataset(keras.utils.PyDataset):
    """Random, mirrored, augmented training crops in batches, for ``model.fit``.

    Each sample picks an image at random, a random ``output_size`` label window anywhere
    inside it and the ``input_size`` window centred on it, mirrored beyond the image
    border. Input, mask and weights are augmented together, then mask and weights are
    cropped to the centre ``output_size``. Batches are ``(x, y)`` or ``(x, y, w)``: x
    float32 (B, in, in, C), w float32 (B, out, out). Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    images, masks : sequences of (H, W[, C]) images and their (H, W) labels, or stacked arrays
        Integer images are scaled by ``data.to_float``; float images should lie in [0, 1].
    input_size, output_size : int or (int, int)
        Network input and output size, e.g. 572 and 388 for the valid U-Net; ``output_size``
        defaults to ``input_size`` (same padding).
    weights : sequence of (H, W) arrays, optional
        Pixel weight maps, returned as ``sample_weight``.
    batch_size, steps_per_epoch : int
        ``steps_per_epoch`` defaults to ``ceil(len(images) / batch_size)``.
    augment : None, dict or callable
        A dict holds parameters of ``augment.random_transform``, e.g. ``augment.PAPER_PARAMS``;
        a callable is called like it, as ``augment(image, mask, rng[, weights=w])``.
    seed : int
        Batch ``index`` of epoch ``epoch`` draws from ``SeedSequence([seed, epoch, index])``,
        the same in any order. Keras' call of ``on_epoch_end`` and ``set_epoch`` move the epoch.
    binary : bool, optional
        True: ``y = mask > 0``, float32 (B, out, out, 1); False: int32 class indices
        (B, out, out). Default: True if the masks hold only {0, 1} or only {0, 255}.
    workers : int
        Threads that prepare batches (``keras.utils.PyDataset``).

    Examples
    --------
    >>> images, masks = np.zeros((2, 8, 8), np.uint8), np.ones((2, 8, 8), np.uint8)
    >>> x, y = SegmentationDataset(images, masks, input_size=8, output_size=4, batch_size=3)[0]
    >>> x.shape, y.shape
    ((3, 8, 8, 1), (3, 4, 4, 1))
    """

    def __init__(self, images, masks, input_size, output_size=None, weights=None, batch_size=1,
                 steps_per_epoch=None, augment=None, seed=0, binary=None, workers=1):
        super().__init__(workers=workers)
        self.images, self.masks = [np.asarray(a) for a in images], [np.asarray(a) for a in masks]
        self.weights = None if weights is None else [np.asarray(a) for a in weights]
        self.input_size = tiling._pair(input_size, "input_size")
        self.output_size = tiling._pair(input_size if output_size is None else output_size, "output_size")
        self.margin = _margin(self.input_size, self.output_size)
        _check_shapes(self.images, self.masks, self.weights, self.output_size)
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch or math.ceil(len(self.images) / batch_size)
        self.seed, self.epoch = seed, 0
        if isinstance(augment, Mapping):
            augmentation._check_params(augment)  # unknown names and bad ranges fail here, not in fit
            augment = functools.partial(augmentation.random_transform, **augment)
        self.augment = augment
        labels = np.unique(np.concatenate([np.unique(mask) for mask in self.masks]))
        if binary is None:
            binary = set(labels.tolist()) <= {0, 1} or set(labels.tolist()) <= {0, 255}
        self.binary = bool(binary)
        if not self.binary and (labels.min() < 0 or np.any(labels != np.round(labels))):
            raise ValueError(f"multi-class masks need non-negative integer labels, got values {labels[:10]}; "
                             "pass binary=True for a foreground/background mask.")

    def __len__(self):
        return self.steps_per_epoch

    def set_epoch(self, epoch):
        """Draw the crops of ``epoch`` from now on (e.g. the first epoch of a resumed run)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches.")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))
        samples = [self._sample(rng) for _ in range(self.batch_size)]
        return tuple(np.stack(arrays) for arrays in zip(*samples))

    def _sample(self, rng):
        """One (x, y[, w]): a random window, mirrored where it leaves the image, augmented."""
        i = int(rng.integers(len(self.images)))
        height, width = self.masks[i].shape
        top = int(rng.integers(height - self.output_size[0] + 1)) - self.margin[0]
        left = int(rng.integers(width - self.output_size[1] + 1)) - self.margin[1]
        sources = [self.images, self.masks] + ([] if self.weights is None else [self.weights])
        arrays = [tiling.mirror_window(array[i], top, left, *self.input_size, pad_mode=MIRROR_MODE)
                  for array in sources]
        if self.augment is not None:
            extra = {} if self.weights is None else {"weights": arrays[2]}
            arrays = self.augment(arrays[0], arrays[1], rng, **extra)
        x = data.to_float(arrays[0])
        x = x[..., None] if x.ndim == 2 else x
        mask = tiling.center_crop(arrays[1], self.output_size)
        y = (mask > 0).astype(np.float32)[..., None] if self.binary else mask.astype(np.int32)
        if self.weights is None:
            return x, y
        return x, y, tiling.center_crop(arrays[2], self.output_size).astype(np.float32)


def _margin(input_size, output_size):
    """Rows and columns of context on each side of the label window."""
    extra = [i - o for i, o in zip(input_size, output_size)]
    if any(e < 0 or e % 2 for e in extra):
        raise ValueError(f"input_size {input_size} must exceed output_size {output_size} by an even number "
                         "of pixels (the label window sits at the centre of the input).")
    return extra[0] // 2, extra[1] // 2


def _check_shapes(images, masks, weights, output_size):
    """Clear errors for likely mistakes: unpaired lists, masks with a channel axis, small images."""
    if len(images) != len(masks) or (weights is not None and len(weights) != len(masks)):
        maps = "" if weights is None else f" and {len(weights)} weight maps"
        raise ValueError(f"got {len(images)} images and {len(masks)} masks{maps}; they must pair up.")
    for i, mask in enumerate(masks):
        if images[i].shape[:2] != mask.shape:
            raise ValueError(f"image {i} has shape {images[i].shape} but its mask {mask.shape}; "
                             "masks are (H, W) label images (drop a channel axis with mask[..., 0]).")
        if weights is not None and weights[i].shape != mask.shape:
            raise ValueError(f"weight map {i} has shape {weights[i].shape} but its mask {mask.shape}.")
        if mask.shape[0] < output_size[0] or mask.shape[1] < output_size[1]:
            raise ValueError(f"image {i} ({mask.shape}) is smaller than output_size {output_size}; "
                             "use a smaller crop or pad the image first (tiling.mirror_pad).")

"""The training data of the chapters: random, mirrored, augmented crops in batches.

The paper trains on input tiles larger than their label tiles; where an input tile
reaches beyond the image, the missing context is mirrored. ``SegmentationDataset``
cuts such crops anywhere in the training images, augments them with
``augment.random_transform`` and serves them to ``model.fit``.

Reproducibility: batch ``index`` of epoch ``epoch`` draws every random number (image,
window, augmentation) from ``SeedSequence([seed, epoch, index])``, so a batch is the same
whatever order Keras' worker threads ask for it. Keras calls ``on_epoch_end`` after each
epoch; a resumed run sets the epoch with ``set_epoch``.

Labels: ``binary=True`` gives ``y = mask > 0`` as float32 (B, out, out, 1), for a sigmoid
output; ``binary=False`` gives int32 class indices (B, out, out), for a softmax output. By
default masks holding only {0, 1} or only {0, 255} are binary.

Taught in chapter 2 (Augmentation); the chapters 3 to 8 train with it.
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
    """Random, mirrored, augmented training crops in batches (x, y[, w]), for ``model.fit``.

    Each sample: a random ``output_size`` label window of a random image and the ``input_size`` window
    centred on it, mirrored beyond the border, both augmented, the labels cut to the centre.
    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    images, masks, weights : sequences of (H, W[, C]) images, their (H, W) labels and weight maps (optional)
    input_size, output_size : int or (int, int), e.g. 572 and 388 for the valid U-Net (None: input_size)
    batch_size, steps_per_epoch, seed, workers : int
    augment : dict of ``augment.random_transform`` parameters (``augment.PAPER_PARAMS``) or a function like it
    binary : bool, optional; float32 y = mask > 0, or int32 class indices (module docstring)

    Examples
    --------
    >>> [a.shape for a in SegmentationDataset(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), 8, 4, batch_size=3)[0]]
    [(3, 8, 8, 1), (3, 4, 4, 1)]
    """

    def __init__(
        self,
        images,
        masks,
        input_size,
        output_size=None,
        weights=None,
        batch_size=1,
        steps_per_epoch=None,
        augment=None,
        seed=0,
        binary=None,
        workers=1,
    ):
        super().__init__(workers=workers)
        self.images, self.masks = [np.asarray(a) for a in images], [np.asarray(a) for a in masks]
        self.weights = None if weights is None else [np.asarray(a) for a in weights]
        self.input_size = tiling._pair(input_size, "input_size")
        self.output_size = tiling._pair(input_size if output_size is None else output_size, "output_size")
        self.margin = tuple((i - o) // 2 for i, o in zip(self.input_size, self.output_size))
        _check_shapes(self.images, self.masks, self.output_size)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.steps_per_epoch = steps_per_epoch or math.ceil(len(self.images) / batch_size)
        if isinstance(augment, Mapping):  # checked here, once, not for every sample in fit
            params = augmentation._check_params(augment)
            for image in self.images:
                augmentation._check_grey_range(image, params)
            augment = functools.partial(augmentation._transform, p=params)
        self.augment = augment
        labels = set(np.unique(np.concatenate([np.unique(mask) for mask in self.masks])).tolist())
        self.binary = bool(labels <= {0, 1} or labels <= {0, 255} if binary is None else binary)

    def __len__(self):
        return self.steps_per_epoch

    def set_epoch(self, epoch):
        """Draw the crops of ``epoch`` from now on (e.g. the first epoch of a resumed run)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))
        return tuple(np.stack(arrays) for arrays in zip(*[self._sample(rng) for _ in range(self.batch_size)]))

    def _sample(self, rng):
        """One (x, y[, w]): a random window, mirrored where it leaves the image, augmented."""
        i = int(rng.integers(len(self.images)))
        top = int(rng.integers(self.masks[i].shape[0] - self.output_size[0] + 1)) - self.margin[0]
        left = int(rng.integers(self.masks[i].shape[1] - self.output_size[1] + 1)) - self.margin[1]
        stacks = [self.images, self.masks] + ([] if self.weights is None else [self.weights])
        arrays = [
            tiling.mirror_window(s[i], top, left, *self.input_size, pad_mode=MIRROR_MODE) for s in stacks
        ]
        if self.augment is not None:
            extra = {} if self.weights is None else {"weights": arrays[2]}
            arrays = self.augment(arrays[0], arrays[1], rng, **extra)
        x = data.to_float(arrays[0])
        mask = tiling.center_crop(arrays[1], self.output_size)
        y = (mask > 0).astype(np.float32)[..., None] if self.binary else mask.astype(np.int32)
        weights = [tiling.center_crop(w, self.output_size).astype(np.float32) for w in arrays[2:]]
        return (x[..., None] if x.ndim == 2 else x, y, *weights)


def _check_shapes(images, masks, output_size):
    """Clear errors for likely mistakes: unpaired lists, masks with a channel axis, small images."""
    if len(images) != len(masks):
        raise ValueError(f"got {len(images)} images and {len(masks)} masks; they must pair up.")
    for i, (image, mask) in enumerate(zip(images, masks)):
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"image {i} has shape {image.shape} but its mask {mask.shape}; masks are (H, W) "
                "label images (drop a channel axis with mask[..., 0])."
            )
        if mask.shape[0] < output_size[0] or mask.shape[1] < output_size[1]:
            raise ValueError(
                f"image {i} ({mask.shape}) is smaller than output_size {output_size}; use a "
                "smaller crop or pad the image first (tiling.mirror_pad)."
            )

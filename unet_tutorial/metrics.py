"""Pixel scores, a per-image evaluation report, and Keras training metrics.

* Pixel scores on label maps (NumPy): :func:`pixel_accuracy`, :func:`pixel_error`,
  :func:`iou` and :func:`dice`, per class, from one :func:`confusion_matrix`. A class
  absent from both maps gets IoU and Dice ``nan`` (undefined, not perfect), so
  ``np.nanmean`` averages only the classes that occur.
* :func:`evaluate_segmentation` scores a model or probability maps image by image:
  pixel scores plus the ISBI challenge's V_Rand and V_Info (:mod:`unet_tutorial.challenge`),
  all at one threshold for the whole stack; :func:`format_table` prints the rows. Its
  pixel scores come from the same confusion matrix and formulas as the functions above.
* Keras metrics written with ``keras.ops`` (all backends): :class:`DiceCoefficient`, and
  :func:`training_metrics`, which shows how the built-in ``BinaryIoU`` / ``MeanIoU`` fit
  a U-Net. Keras' ``BinaryIoU`` counts ``y_pred >= threshold`` as a cell, where this
  module uses ``>``; ``MeanIoU(sparse_y_pred=False)`` takes the argmax of a softmax output.

Taught in chapter 1 (Semantic segmentation) and chapter 3 (A mini U-Net).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from . import challenge
from .challenge import _label_maps

__all__ = [
    "DiceCoefficient",
    "confusion_matrix",
    "dice",
    "evaluate_segmentation",
    "format_table",
    "iou",
    "pixel_accuracy",
    "pixel_error",
    "training_metrics",
]

ROW_KEYS = ("image", "pixel_error", "iou_membrane", "iou_cell", "dice_cell", "v_rand", "v_info")


# -------------------------------------------------------------- pixel scores
def confusion_matrix(pred, truth, n_classes=2):
    """Pixel counts per (true class, predicted class): a (K, K) array, row = truth, column = prediction.

    ``pred`` and ``truth`` are class-index maps of one shape, labels 0..n_classes-1 (e.g. 0 = membrane,
    1 = cell). Taught in chapter 1 (Semantic segmentation); chapter 8 (Your own data and pretrained
    encoders) uses it for several classes.
    """
    pred, truth = _label_maps(pred, truth)
    if min(pred.min(), truth.min()) < 0 or max(pred.max(), truth.max()) >= n_classes:
        raise ValueError(f"labels must be class indices 0..{n_classes - 1}; for more classes pass n_classes.")
    return _counts(pred, truth, n_classes)


def _counts(pred, truth, n_classes):
    """:func:`confusion_matrix` of integer class-index maps already checked."""
    counts = np.bincount(truth.ravel() * n_classes + pred.ravel(), minlength=n_classes**2)
    return counts.reshape(n_classes, n_classes)


def pixel_accuracy(pred, truth):
    """Fraction of pixels whose predicted class equals the true class (class-index maps of one shape).

    Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> pixel_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    0.75
    """
    pred, truth = _label_maps(pred, truth)
    return float(np.mean(pred == truth))


def pixel_error(pred, truth):
    """Fraction of misclassified pixels, ``1 - pixel_accuracy``: the ISBI 2012 challenge's pixel error.

    Taught in chapter 1 (Semantic segmentation).
    """
    return 1.0 - pixel_accuracy(pred, truth)


def _iou_and_dice(matrix):
    """Per-class IoU and Dice from a confusion matrix; 0/0 = nan for a class absent from both maps."""
    overlap, sizes = np.diag(matrix), matrix.sum(axis=0) + matrix.sum(axis=1)  # |pred == c| + |truth == c|
    with np.errstate(invalid="ignore"):
        return overlap / (sizes - overlap), 2 * overlap / sizes


def iou(pred, truth, n_classes=2):
    """Intersection over union (Jaccard index) of every class, ``nan`` if absent from both maps.

    ``|pred == c and truth == c| / |pred == c or truth == c|``; arguments as for :func:`confusion_matrix`.
    Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> iou(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))  # membrane 1/2, cell 2/3
    array([0.5       , 0.66666667])
    """
    return _iou_and_dice(confusion_matrix(pred, truth, n_classes))[0]


def dice(pred, truth, n_classes=2):
    """Dice coefficient (F1 score) of every class, ``nan`` if absent from both maps.

    ``2 |pred == c and truth == c| / (|pred == c| + |truth == c|)``, which equals ``2 IoU / (1 + IoU)``;
    arguments as for :func:`confusion_matrix`. Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> dice(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))  # 2 IoU / (1 + IoU)
    array([0.66666667, 0.8       ])
    """
    return _iou_and_dice(confusion_matrix(pred, truth, n_classes))[1]


# ------------------------------------------------------------ batch report
def _probabilities(model_or_probs, images, tiling_options):
    if not hasattr(model_or_probs, "predict"):
        return [np.asarray(prob, dtype=np.float64) for prob in challenge._slices(model_or_probs, "probs")]
    if images is None:
        raise ValueError("images are needed to run the model; pass them as the second argument.")
    from .callbacks import cell_probability
    from .tiling import predict_tiled  # lazy: tiling pulls in the model code

    images = challenge._slices(images, "images")
    return [cell_probability(predict_tiled(model_or_probs, image, **tiling_options)) for image in images]


def evaluate_segmentation(model_or_probs, images, masks, threshold=0.5, **tiling_options):
    """Score every image and the whole stack: pixel error, IoU, Dice, V_Rand, V_Info.

    ``model_or_probs`` is cell probabilities (``images`` None) or a U-Net, which
    ``tiling.predict_tiled(model, image, **tiling_options)`` runs on ``images``; ``masks`` are 1 = cell,
    0 = membrane; each (N, H, W) or a list of (H, W). Pixel scores use the cells ``prob > threshold``,
    V_Rand and V_Info the one threshold :func:`unet_tutorial.challenge.isbi_scores` picks for the stack.
    Returns one row per image (keys :data:`ROW_KEYS`), then the ``"stack"`` row: the means, NaNs skipped.
    Taught in chapter 3 (A mini U-Net) and chapter 5 (Training the U-Net).

    Examples
    --------
    >>> rows = evaluate_segmentation(np.array([[0.9, 0.8, 0.6, 0.8, 0.9]]), None, np.array([[1, 1, 0, 1, 1]]))
    >>> [(row["image"], row["v_rand"], round(row["pixel_error"], 3)) for row in rows]
    [(0, 1.0, 0.2), ('stack', 1.0, 0.2)]
    """
    masks = [challenge._check_mask(mask) for mask in challenge._slices(masks, "masks")]
    probs = _probabilities(model_or_probs, images, tiling_options)
    isbi = challenge.isbi_scores(probs, masks)
    v_rand = isbi["v_rand_slices"][:, list(isbi["thresholds"]).index(isbi["threshold"])]
    v_info = isbi["v_info_slices"][:, list(isbi["thresholds"]).index(isbi["threshold_info"])]
    rows = []
    for index, (prob, mask) in enumerate(zip(probs, masks)):
        matrix = _counts((prob > threshold).astype(np.int64), mask, 2)  # both checked 0/1 maps
        (iou_membrane, iou_cell), (_, dice_cell) = _iou_and_dice(matrix)
        error = 1.0 - np.trace(matrix) / matrix.sum()  # pixel_error(cells, mask)
        scores = [error, iou_membrane, iou_cell, dice_cell, v_rand[index], v_info[index]]
        rows.append(dict(zip(ROW_KEYS, [index, *map(float, scores)])))
    table = np.array([[row[key] for key in ROW_KEYS[1:]] for row in rows])
    means = [math.nan if np.isnan(column).all() else float(np.nanmean(column)) for column in table.T]
    return [*rows, dict(zip(ROW_KEYS, ["stack", *means]))]


def format_table(rows, digits=4):
    """Plain-text table of result rows: a header, a dashed rule, then one line per row, aligned.

    ``rows`` are dicts such as :func:`evaluate_segmentation` returns; the columns are all their keys, first
    seen first; floats show ``digits`` decimals. Taught in chapter 1 (Semantic segmentation).
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)

    table = [columns] + [[cell(row.get(key, "")) for key in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    table.insert(1, ["-" * width for width in widths])
    return "\n".join("  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in table)


# ------------------------------------------------------------ Keras metrics
@keras.saving.register_keras_serializable(package="unet_tutorial")
class DiceCoefficient(keras.metrics.Metric):
    """Dice coefficient of one class, ``2 TP / (2 TP + FP + FN)`` counted over all batches of an epoch.

    A pixel's class is ``y_pred > threshold`` for a sigmoid output, the argmax for softmax; the
    result equals :func:`dice` on all pixels at once. ``y_true`` holds class indices, (B, H, W) or
    (B, H, W, 1), as ``dataset.SegmentationDataset`` yields them; ``sample_weight`` (B, H, W) weights
    the counts. ``class_id`` is the class scored (1 = cell). Taught in chapter 3 (A mini U-Net).
    """

    def __init__(self, threshold=0.5, class_id=1, name="dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold, self.class_id = float(threshold), int(class_id)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable(shape=(), initializer="zeros", name="false_positives")
        self.false_negatives = self.add_variable(shape=(), initializer="zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        sigmoid = y_pred.shape[-1] == 1
        predicted = ops.greater(y_pred[..., 0], self.threshold) if sigmoid else ops.argmax(y_pred, axis=-1)
        shape = ops.shape(predicted)  # (B, H, W); labels and weights of another size fail to reshape
        true_class = ops.reshape(ops.cast(y_true, "int32"), shape)
        is_predicted = ops.cast(ops.equal(ops.cast(predicted, "int32"), self.class_id), self.dtype)
        is_true = ops.cast(ops.equal(true_class, self.class_id), self.dtype)
        weights = 1.0 if sample_weight is None else ops.reshape(ops.cast(sample_weight, self.dtype), shape)
        self.true_positives.assign_add(ops.sum(weights * is_predicted * is_true))
        self.false_positives.assign_add(ops.sum(weights * is_predicted * (1.0 - is_true)))
        self.false_negatives.assign_add(ops.sum(weights * (1.0 - is_predicted) * is_true))

    def result(self):
        overlap = 2.0 * self.true_positives
        return ops.divide(overlap, overlap + self.false_positives + self.false_negatives)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "class_id": self.class_id}


def training_metrics(n_classes=1, threshold=0.5):
    """Fresh metrics for ``model.compile(metrics=...)``: ``accuracy``, an IoU and ``dice_cell``.

    A sigmoid output (``n_classes=1``) gets ``BinaryAccuracy``, ``BinaryIoU`` of the cells and
    :class:`DiceCoefficient`, cells being ``> threshold``; a softmax over ``n_classes`` >= 2 channels
    ``SparseCategoricalAccuracy``, ``MeanIoU`` and the Dice of class 1. Taught in chapter 3 (A mini U-Net).
    """
    if n_classes == 1:
        accuracy = keras.metrics.BinaryAccuracy(threshold=threshold, name="accuracy")
        iou_cell = keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold, name="iou_cell")
        return [accuracy, iou_cell, DiceCoefficient(threshold=threshold, class_id=1, name="dice_cell")]
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    mean_iou = keras.metrics.MeanIoU(num_classes=int(n_classes), sparse_y_pred=False, name="mean_iou")
    return [accuracy, mean_iou, DiceCoefficient(class_id=1, name="dice_cell")]

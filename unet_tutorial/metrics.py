"""Pixel scores, a per-image evaluation report, and Keras training metrics.

* Pixel scores on label maps (NumPy): :func:`pixel_accuracy`, :func:`pixel_error`,
  :func:`iou` and :func:`dice`, per class, from one :func:`confusion_matrix`.
* :func:`evaluate_segmentation` scores a model or probability maps image by image:
  pixel scores plus the ISBI challenge's V_Rand and V_Info (:mod:`unet_tutorial.challenge`),
  all at one threshold for the whole stack; :func:`format_table` prints the rows.
* Keras metrics written with ``keras.ops`` (all backends): :class:`DiceCoefficient`, and
  :func:`training_metrics`, which shows how the built-in ``BinaryIoU`` / ``MeanIoU`` fit
  a U-Net.

Taught in chapter 1 (Semantic segmentation) and chapter 3 (A mini U-Net).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from . import challenge
from .challenge import _label_map
from .losses import _pixel_weight_map, _prepare_labels

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


# ----------------------------------------------------------------- validation
def _same_shape(pred, truth):
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred shape {pred.shape} differs from truth shape {truth.shape}; "
            "compare label maps of the same image."
        )


def _class_maps(pred, truth, n_classes):
    pred = _label_map(pred, "pred")
    truth = _label_map(truth, "truth")
    _same_shape(pred, truth)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}.")
    for name, array in (("pred", pred), ("truth", truth)):
        if array.size and (array.min() < 0 or array.max() >= n_classes):
            raise ValueError(
                f"{name} holds labels outside 0..{n_classes - 1} (found "
                f"{array.min()}..{array.max()}); pass class indices, or a larger n_classes."
            )
    return pred, truth


# -------------------------------------------------------------- pixel scores
def confusion_matrix(pred, truth, n_classes=2):
    """Pixel counts per (true class, predicted class).

    Taught in chapter 1 (Semantic segmentation); chapter 7 (Your own data and pretrained
    encoders) uses it for several classes.

    Parameters
    ----------
    pred, truth : array of int
        Class-index maps of the same shape (e.g. 0 = membrane, 1 = cell).
    n_classes : int
        Number of classes K; labels must lie in 0..K-1.

    Returns
    -------
    numpy.ndarray
        (K, K) int64 counts; row = true class, column = predicted class.
    """
    pred, truth = _class_maps(pred, truth, n_classes)
    counts = np.bincount(truth.ravel() * n_classes + pred.ravel(), minlength=n_classes**2)
    return counts.reshape(n_classes, n_classes)


def pixel_accuracy(pred, truth):
    """Fraction of pixels whose predicted class equals the true class.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred, truth : array of int
        Class-index maps of the same shape.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    pred = _label_map(pred, "pred")
    truth = _label_map(truth, "truth")
    _same_shape(pred, truth)
    if pred.size == 0:
        raise ValueError("pred and truth are empty; there is nothing to score.")
    return float(np.mean(pred == truth))


def pixel_error(pred, truth):
    """Fraction of misclassified pixels, ``1 - pixel_accuracy``.

    This is the ISBI 2012 challenge's original "pixel error" for a binary map
    at one threshold.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred, truth : array of int
        Class-index maps of the same shape.

    Returns
    -------
    float
        Error in [0, 1].
    """
    return 1.0 - pixel_accuracy(pred, truth)


def _per_class_ratio(pred, truth, n_classes, dice_ratio):
    matrix = confusion_matrix(pred, truth, n_classes).astype(np.float64)
    overlap = np.diag(matrix)
    sizes = matrix.sum(axis=0) + matrix.sum(axis=1)  # |pred == c| + |truth == c|
    denominator = sizes if dice_ratio else sizes - overlap
    numerator = 2 * overlap if dice_ratio else overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator  # 0/0 -> nan: class absent from both


def iou(pred, truth, n_classes=2):
    """Intersection over union (Jaccard index) of every class.

    ``|pred == c and truth == c| / |pred == c or truth == c|``. A class absent
    from both maps gives ``nan`` (undefined, not perfect), so ``np.nanmean``
    averages only the classes that occur.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred, truth : array of int
        Class-index maps of the same shape.
    n_classes : int
        Number of classes K.

    Returns
    -------
    numpy.ndarray
        (K,) float64 IoU per class, ``nan`` where the class is absent from both.
    """
    return _per_class_ratio(pred, truth, n_classes, dice_ratio=False)


def dice(pred, truth, n_classes=2):
    """Dice coefficient (F1 score) of every class.

    ``2 |pred == c and truth == c| / (|pred == c| + |truth == c|)``; equals
    ``2 IoU / (1 + IoU)``. A class absent from both maps gives ``nan``.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred, truth : array of int
        Class-index maps of the same shape.
    n_classes : int
        Number of classes K.

    Returns
    -------
    numpy.ndarray
        (K,) float64 Dice per class, ``nan`` where the class is absent from both.
    """
    return _per_class_ratio(pred, truth, n_classes, dice_ratio=True)


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return math.nan
    return float(np.nanmean(values))


# ------------------------------------------------------------ batch report
def _stack(images, name):
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = images[None]
    stack = [np.asarray(image) for image in images]
    if not stack:
        raise ValueError(f"{name} is empty; pass at least one 2-D array.")
    for image in stack:
        if image.ndim != 2:
            raise ValueError(f"every entry of {name} must be a 2-D (H, W) array, got {image.shape}.")
    return stack


def _probabilities(model_or_probs, images, masks, tiling_options):
    if hasattr(model_or_probs, "predict") and not isinstance(model_or_probs, np.ndarray):
        if images is None:
            raise ValueError("images are needed to run the model; pass them as the second argument.")
        from unet_tutorial.callbacks import cell_probability
        from unet_tutorial.tiling import predict_tiled  # lazy: tiling pulls in the model code

        images = _stack(images, "images")
        if len(images) != len(masks):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks.")
        probs = [
            cell_probability(predict_tiled(model_or_probs, image, **tiling_options))
            for image in images
        ]
    else:
        probs = [np.asarray(prob, dtype=np.float64) for prob in _stack(model_or_probs, "probabilities")]
    if len(probs) != len(masks):
        raise ValueError(f"got {len(probs)} probability maps but {len(masks)} masks.")
    for prob, mask in zip(probs, masks):
        if prob.shape != mask.shape:
            raise ValueError(f"probability map {prob.shape} and mask {mask.shape} differ in shape.")
    return probs


def evaluate_segmentation(model_or_probs, images, masks, threshold=0.5, **tiling_options):
    """Score every image and the whole stack: pixel error, IoU, Dice, V_Rand, V_Info.

    Pixel scores use the cells ``prob > threshold``. V_Rand and V_Info use one threshold
    for the whole stack, the one :func:`unet_tutorial.challenge.isbi_scores` picks, as
    the challenge did; each image's row shows its score at that threshold, and the last
    row (``image="stack"``) the challenge's numbers: the means over the images.

    Taught in chapter 3 (A mini U-Net) and chapter 4 (The full U-Net).

    Parameters
    ----------
    model_or_probs : keras.Model or array
        A U-Net, run on each image with
        ``unet_tutorial.tiling.predict_tiled(model, image, **tiling_options)``, or the
        cell probability maps themselves, (N, H, W) or a list of (H, W) arrays.
    images : array or list of arrays, or None
        Input images (N, H, W) as ``predict_tiled`` takes them; may be None with
        probability maps.
    masks : array or list of arrays
        True masks (N, H, W), 1 = cell, 0 = membrane.
    threshold : float
        Cell threshold for pixel error, IoU and Dice.
    **tiling_options
        Passed on to ``predict_tiled`` (e.g. ``tta=True``, ``tile_size=...``).

    Returns
    -------
    list of dict
        One row per image with keys ``image`` (index), ``pixel_error``,
        ``iou_membrane``, ``iou_cell``, ``dice_cell``, ``v_rand``, ``v_info``, then the
        ``"stack"`` row (means, NaNs skipped). Print with :func:`format_table`.

    Examples
    --------
    >>> mask = np.array([[1, 1, 0, 1, 1]] * 3)
    >>> prob = np.array([[0.9, 0.8, 0.6, 0.8, 0.9]] * 3)
    >>> rows = evaluate_segmentation(np.stack([prob, prob]), None, np.stack([mask, mask]))
    >>> [(row["image"], row["v_rand"], round(row["pixel_error"], 3)) for row in rows]
    [(0, 1.0, 0.2), (1, 1.0, 0.2), ('stack', 1.0, 0.2)]
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    masks = [challenge._check_mask(mask) for mask in _stack(masks, "masks")]
    probs = _probabilities(model_or_probs, images, masks, tiling_options)
    scores = challenge.isbi_scores(probs, masks)
    rand_column = list(scores["thresholds"]).index(scores["threshold"])
    info_column = list(scores["thresholds"]).index(scores["threshold_info"])
    rows = []
    for index, (prob, mask) in enumerate(zip(probs, masks)):
        cells = (prob > threshold).astype(np.int64)
        ious = iou(cells, mask)
        rows.append(
            {
                "image": index,
                "pixel_error": pixel_error(cells, mask),
                "iou_membrane": float(ious[0]),
                "iou_cell": float(ious[1]),
                "dice_cell": float(dice(cells, mask)[1]),
                "v_rand": float(scores["v_rand_slices"][index, rand_column]),
                "v_info": float(scores["v_info_slices"][index, info_column]),
            }
        )
    stack_row = {"image": "stack"}
    for key in ROW_KEYS[1:]:
        stack_row[key] = _nanmean([row[key] for row in rows])
    rows.append(stack_row)
    return rows


def format_table(rows, digits=4):
    """Plain-text table of result rows, one line per row, columns aligned.

    Taught in chapter 1 (Semantic segmentation) and used in the later chapters.

    Parameters
    ----------
    rows : list of dict
        Rows as returned by :func:`evaluate_segmentation`; the columns are the
        keys of all rows, in first-seen order.
    digits : int
        Decimals shown for floats.

    Returns
    -------
    str
        The table, header and a dashed rule first.
    """
    rows = list(rows)
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise TypeError("rows must be a non-empty list of dicts.")
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "nan" if math.isnan(value) else f"{value:.{digits}f}"
        return "" if value is None else str(value)

    table = [columns] + [[cell(row.get(key)) for key in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# ------------------------------------------------------------ Keras metrics
@keras.saving.register_keras_serializable(package="unet_tutorial")
class DiceCoefficient(keras.metrics.Metric):
    """Dice coefficient of one class, accumulated over all batches of an epoch.

    Pixels are assigned a class by ``y_pred > threshold`` (sigmoid output with 1
    channel: class 1 = cell) or by argmax (softmax output with K channels). The
    true/false positive and false negative counts are summed over the epoch, and
    the result is ``2 TP / (2 TP + FP + FN)``, the same number as :func:`dice` on
    all pixels at once; ``nan`` while the class is absent from both. Pixel weights
    (``sample_weight`` (B, H, W), used when passed as ``weighted_metrics``) weight
    the counts.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    threshold : float
        Cell threshold for a sigmoid output (ignored for softmax).
    class_id : int
        Class scored: 1 = cell, 0 = membrane.
    name : str
        Name shown in the training log.
    dtype : str, optional
        Dtype of the accumulators.
    """

    def __init__(self, threshold=0.5, class_id=1, name="dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.class_id = int(class_id)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable(shape=(), initializer="zeros", name="false_positives")
        self.false_negatives = self.add_variable(shape=(), initializer="zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        labels, is_one_hot = _prepare_labels(y_true, y_pred)
        if y_pred.shape[-1] == 1:
            predicted = ops.cast(ops.greater(y_pred[..., 0], self.threshold), "int32")
        else:
            predicted = ops.argmax(y_pred, axis=-1)
        true_class = ops.argmax(labels, axis=-1) if is_one_hot else labels
        is_predicted = ops.cast(ops.equal(ops.cast(predicted, "int32"), self.class_id), self.dtype)
        is_true = ops.cast(ops.equal(ops.cast(true_class, "int32"), self.class_id), self.dtype)
        weights = (
            ops.ones_like(is_true) if sample_weight is None else _pixel_weight_map(sample_weight, y_pred)
        )
        self.true_positives.assign_add(ops.sum(weights * is_predicted * is_true))
        self.false_positives.assign_add(ops.sum(weights * is_predicted * (1.0 - is_true)))
        self.false_negatives.assign_add(ops.sum(weights * (1.0 - is_predicted) * is_true))

    def result(self):
        overlap = 2.0 * self.true_positives
        return ops.divide(overlap, overlap + self.false_positives + self.false_negatives)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "class_id": self.class_id}


def training_metrics(n_classes=1, threshold=0.5):
    """Metrics to pass to ``model.compile(metrics=...)`` for a U-Net.

    For a sigmoid output (``n_classes=1``): ``BinaryAccuracy``, Keras'
    ``BinaryIoU`` of the cell class (note it counts ``y_pred >= threshold`` as a
    cell, where this module uses ``>``) and :class:`DiceCoefficient`. For a
    softmax output: ``SparseCategoricalAccuracy``, ``MeanIoU`` over the K
    classes (``sparse_y_pred=False`` makes it take the argmax) and the Dice of
    class 1.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    n_classes : int
        Output channels of the model: 1 for sigmoid, K >= 2 for softmax.
    threshold : float
        Cell threshold for the sigmoid metrics.

    Returns
    -------
    list of keras.metrics.Metric
        Fresh metric objects named ``accuracy``, ``iou_cell`` or ``mean_iou``,
        and ``dice_cell``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(
            f"n_classes must be 1 (sigmoid) or the number of softmax classes, got {n_classes!r}."
        )
    if n_classes == 1:
        return [
            keras.metrics.BinaryAccuracy(threshold=threshold, name="accuracy"),
            keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold, name="iou_cell"),
            DiceCoefficient(threshold=threshold, class_id=1, name="dice_cell"),
        ]
    return [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        keras.metrics.MeanIoU(num_classes=int(n_classes), sparse_y_pred=False, name="mean_iou"),
        DiceCoefficient(class_id=1, name="dice_cell"),
    ]

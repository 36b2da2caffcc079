"""Evaluation metrics: pixel scores, the ISBI 2012 scores V_Rand and V_Info, Keras metrics.

Three families live here.

* Pixel scores on label maps (NumPy): :func:`pixel_accuracy`, :func:`pixel_error`,
  :func:`iou` and :func:`dice`, per class, from one confusion matrix.
* The ISBI 2012 challenge scores (Arganda-Carreras et al. 2015, "Crowdsourcing
  the creation of image segmentation algorithms for connectomics"), which judge
  how well the *cells* are separated rather than how many pixels are right:
  :func:`isbi_scores` on a probability map, :func:`v_rand` / :func:`v_info` on
  label images, and :func:`evaluate_segmentation` / :func:`format_table` for a
  report over many images.
* Keras training metrics written with ``keras.ops`` (all backends):
  :class:`DiceCoefficient`, plus :func:`training_metrics`, which shows how the
  built-in ``keras.metrics.BinaryIoU`` / ``MeanIoU`` fit a U-Net.

How :func:`isbi_scores` follows the challenge's evaluation, the ImageJ script
"Segmentation evaluation after border thinning" of Fiji's Trainable_Segmentation
(``RandError.getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)`` and
``VariationOfInformation.getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)``), for each
threshold t of :data:`DEFAULT_THRESHOLDS`:

1. cells are the pixels with ``prob > t``; true cells are the 1-pixels of the mask;
2. the true cells are split into 4-connected components;
3. the predicted borders are *thinned*: a watershed with 4-connectivity floods
   the flat membrane from the predicted cells (``skimage.segmentation.watershed``
   on the binary image, ``watershed_line=True``), so every membrane pixel joins
   the nearest cell except a one-pixel line where two cells meet. With no
   predicted cell at all the whole slice is one basin, as Fiji's watershed floods
   it. Thinning makes the score blind to how *thick* the predicted membrane is,
   only whether it separates the right cells;
4. only pixels inside true cells are scored ("foreground-restricted"): the true
   membrane is left out, and a predicted pixel labelled 0 (on the watershed line)
   counts as a segment of its own, as in Fiji;
5. the scores below are computed from the contingency table for every slice,
   averaged over the slices, and the best over the thresholds is reported
   (V_Rand and V_Info maximised separately, one threshold for the whole stack).

With ``p_ij`` the fraction of scored pixels in true segment i and predicted
segment j, ``t_i`` / ``s_j`` the true / predicted segment fractions::

    V_Rand = sum(p_ij**2) / (0.5 * sum(s_j**2) + 0.5 * sum(t_i**2))
    V_Info = I(S;T) / (0.5 * H(S) + 0.5 * H(T))

i.e. the harmonic means of the split scores (``sum p**2 / sum t**2`` and
``I / H(S)``, hurt by cutting a cell in two) and the merge scores
(``sum p**2 / sum s**2`` and ``I / H(T)``, hurt by fusing cells). Pairs of a
pixel with itself are counted, as in the paper's formula and Fiji's "N^2"
normalisation; ``skimage.metrics.adapted_rand_error`` leaves them out, so
``1 - adapted_rand_error(...)[0]`` is close to, but not exactly, V_Rand.

When one side is a single segment (entropy 0), V_Info is 0, as in Fiji: a map that
predicts no cell scores V_Info 0 and a small V_Rand (the sum of the squared true
cell fractions, about 0.03 on ISBI slices, through V_Rand's harmonic mean).

The one known difference from Fiji: Fiji thins with its own Vincent-Soille
flooding (``utils/WatershedTransform2D.java``), scikit-image with a priority
queue; where a membrane gap is an even number of pixels wide they may draw the
one-pixel line on different sides. ``tests/test_metrics_fiji.py`` ports Fiji's
code and measures the effect on real ISBI labels: per-threshold scores differ by
a few 1e-3 at most, the reported best scores by less than 1e-3.

Taught in chapter 1 (Semantic segmentation) and chapter 4 (The full U-Net).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
from skimage.measure import label as _connected_components
from skimage.metrics import contingency_table
from skimage.segmentation import watershed

from .losses import _pixel_weight_map, _prepare_labels

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DiceCoefficient",
    "confusion_matrix",
    "dice",
    "evaluate_segmentation",
    "format_table",
    "iou",
    "isbi_scores",
    "pixel_accuracy",
    "pixel_error",
    "segmentation_scores",
    "thinned_cell_labels",
    "training_metrics",
    "v_info",
    "v_rand",
]

def _fiji_thresholds(start=0.0, stop=1.0, step=0.1):
    """Fiji's ``for (th = start; th <= stop; th += step)``, rounding errors included."""
    values, threshold = [], start
    while threshold <= stop:
        values.append(threshold)
        threshold += step
    return tuple(values)


#: The 11 thresholds Fiji tries: 0, 0.1, ..., 0.9 and 1 - 1e-16 (0.1 added ten times).
DEFAULT_THRESHOLDS = _fiji_thresholds()

#: Names the scoring method in stored results, so rows scored differently are told apart.
SCORER = "fiji-11-thresholds-one-basin"

ROW_KEYS = ("image", "pixel_error", "iou_membrane", "iou_cell", "dice_cell", "v_rand", "v_info")


# ----------------------------------------------------------------- validation
def _label_map(array, name):
    """Integer array of class or segment labels; floats must hold whole numbers."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise TypeError(
                f"{name} must hold integer labels, got non-integer floats; threshold "
                "probabilities first, e.g. (prob > 0.5).astype(int)."
            )
    elif not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label array, got dtype {array.dtype}.")
    return array.astype(np.int64)


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


# ------------------------------------------------------- V_Rand and V_Info
def _segment_maps(pred_labels, truth_labels):
    pred = _label_map(pred_labels, "pred_labels")
    truth = _label_map(truth_labels, "truth_labels")
    _same_shape(pred, truth)
    if (pred.size and pred.min() < 0) or (truth.size and truth.min() < 0):
        raise ValueError("label images must be non-negative (0 = background/unassigned).")
    return pred, truth


def _xlogx_sum(counts, total):
    """``sum(p * log p)`` for p = counts / total, zeros skipped."""
    p = counts[counts > 0] / total
    return float(np.sum(p * np.log(p)))


def segmentation_scores(pred_labels, truth_labels):
    """Foreground-restricted Rand and information scores of two label images.

    Only pixels with ``truth_labels > 0`` are scored (truth label 0 is the
    background, here the membrane). A scored pixel with ``pred_labels == 0``
    is unassigned and counts as a segment of its own. No thresholding or
    thinning happens here; :func:`isbi_scores` does those first.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred_labels, truth_labels : array of int
        Segment label images (e.g. from ``skimage.measure.label``), same shape.

    Returns
    -------
    dict
        ``v_rand``, ``v_rand_split``, ``v_rand_merge``, ``v_info``,
        ``v_info_split``, ``v_info_merge``: floats in [0, 1], 1 = perfect. All
        are ``nan`` when the truth has no foreground pixel.
    """
    pred, truth = _segment_maps(pred_labels, truth_labels)
    scored = truth > 0
    if not scored.any():
        return dict.fromkeys(
            ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split", "v_info_merge"),
            math.nan,
        )
    pred, truth = pred[scored], truth[scored]
    unassigned = pred == 0
    pred[unassigned] = pred.max() + 1 + np.arange(np.count_nonzero(unassigned))
    # Compact ids keep the sparse table small; they do not change any count.
    pred = np.unique(pred, return_inverse=True)[1].ravel()
    truth = np.unique(truth, return_inverse=True)[1].ravel()
    table = contingency_table(truth, pred)
    table.sum_duplicates()
    pair = table.data.astype(np.float64)  # n_ij > 0
    true_sizes = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()
    pred_sizes = np.asarray(table.sum(axis=0), dtype=np.float64).ravel()

    sum_pair2, sum_true2, sum_pred2 = (pair @ pair, true_sizes @ true_sizes, pred_sizes @ pred_sizes)
    n = pair.sum()
    h_true = -_xlogx_sum(true_sizes, n)
    h_pred = -_xlogx_sum(pred_sizes, n)
    mutual = h_true + h_pred + _xlogx_sum(pair, n)
    mutual = max(mutual, 0.0)  # rounding can leave -1e-16
    v_info, v_info_split, v_info_merge = _info_scores(mutual, h_pred, h_true)
    return {
        "v_rand": float(2 * sum_pair2 / (sum_true2 + sum_pred2)),
        "v_rand_split": float(sum_pair2 / sum_true2),
        "v_rand_merge": float(sum_pair2 / sum_pred2),
        "v_info": v_info,
        "v_info_split": v_info_split,
        "v_info_merge": v_info_merge,
    }


def _info_scores(mutual, h_pred, h_true):
    """(V_Info, split, merge) as Fiji's foregroundRestrictedFscore computes them."""
    if h_pred <= 1e-12:  # one predicted segment: nothing split, everything merged
        return 0.0, 0.0, 1.0
    if h_true <= 1e-12:
        return 0.0, 1.0, 0.0
    split, merge = min(mutual / h_pred, 1.0), min(mutual / h_true, 1.0)
    total = split + merge
    return (float(2 * split * merge / total) if total > 0 else 0.0), float(split), float(merge)


def v_rand(pred_labels, truth_labels):
    """Foreground-restricted Rand score V_Rand of two label images.

    ``2 sum(n_ij**2) / (sum(a_i**2) + sum(b_j**2))`` with ``n_ij`` the pixels
    in true segment i and predicted segment j, ``a_i`` / ``b_j`` the segment
    sizes, over pixels with ``truth_labels > 0``. See :func:`segmentation_scores`.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred_labels, truth_labels : array of int
        Segment label images of the same shape; truth 0 = not scored, pred 0 =
        unassigned pixel (a segment of its own).

    Returns
    -------
    float
        V_Rand in [0, 1], 1 = identical segmentations; ``nan`` without truth
        foreground.
    """
    return segmentation_scores(pred_labels, truth_labels)["v_rand"]


def v_info(pred_labels, truth_labels):
    """Foreground-restricted information score V_Info of two label images.

    ``2 I(S;T) / (H(S) + H(T))``: the mutual information of predicted (S) and
    true (T) segments over the harmonic mean of their entropies. See
    :func:`segmentation_scores`.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    pred_labels, truth_labels : array of int
        Segment label images of the same shape; truth 0 = not scored, pred 0 =
        unassigned pixel (a segment of its own).

    Returns
    -------
    float
        V_Info in [0, 1], 1 = identical segmentations; ``nan`` without truth
        foreground.
    """
    return segmentation_scores(pred_labels, truth_labels)["v_info"]


def thinned_cell_labels(cells):
    """Label 4-connected cells and grow them over the membrane to 1-pixel borders.

    The watershed floods the flat membrane from the cells with 4-connectivity,
    so each membrane pixel joins the cell it is nearest to (city-block
    distance) and a one-pixel line labelled 0 stays where two cells meet. This
    is the "border thinning" of the ISBI 2012 evaluation.

    Taught in chapter 1 (Semantic segmentation), with the ISBI scores, and chapter 5
    (Weight maps), which uses it to find the membranes between touching cells.

    Parameters
    ----------
    cells : array of bool, 2-D
        True where a cell is predicted (e.g. ``prob > 0.5``).

    Returns
    -------
    numpy.ndarray
        int32 labels 1..n of the cells, 0 on the one-pixel dividing lines. With no
        cell at all the flood has no source and the whole image is one basin
        (all 1), as in Fiji's watershed.

    Examples
    --------
    >>> cells = np.array([[1, 1, 0, 0, 0, 1]], dtype=bool)
    >>> thinned_cell_labels(cells)
    array([[1, 1, 1, 0, 2, 2]], dtype=int32)
    >>> thinned_cell_labels(np.zeros((1, 4), bool))
    array([[1, 1, 1, 1]], dtype=int32)
    """
    cells = np.asarray(cells, dtype=bool)
    if cells.ndim != 2:
        raise ValueError(f"cells must be a 2-D mask, got shape {cells.shape}.")
    markers = _connected_components(cells, connectivity=1)
    if markers.max() == 0:
        return np.ones(cells.shape, np.int32)
    flooded = watershed(cells == 0, markers, connectivity=1, watershed_line=True)
    return flooded.astype(np.int32)


def _probability_stack(prob, name="prob"):
    prob = np.asarray(prob)
    if not np.issubdtype(prob.dtype, np.number) or np.issubdtype(prob.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real-valued array, got dtype {prob.dtype}.")
    prob = prob.astype(np.float64)
    if not np.all(np.isfinite(prob)) or (prob.size and (prob.min() < 0 or prob.max() > 1)):
        raise ValueError(
            f"{name} must be cell probabilities in [0, 1]; found values outside "
            "(apply the sigmoid/softmax first, or rescale)."
        )
    return prob


def _binary_stack(mask, name="mask"):
    mask = _label_map(mask, name)
    if mask.size and (mask.min() < 0 or mask.max() > 1):
        hint = " (ISBI labels are 0/255: use mask // 255)" if mask.max() == 255 else ""
        raise ValueError(f"{name} must hold 0 (membrane) and 1 (cell) only{hint}.")
    return mask


def isbi_scores(prob, mask, thresholds=DEFAULT_THRESHOLDS):
    """Best V_Rand and V_Info over thresholds, the ISBI 2012 challenge way.

    For each threshold t the cells ``prob > t`` are labelled, their borders are
    thinned (:func:`thinned_cell_labels`) and compared with the true cells by
    :func:`segmentation_scores`. The module docstring lists every step. For a
    stack (N, H, W) each slice is scored separately and the per-threshold scores
    are averaged over the slices before the best threshold is picked, as in Fiji.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    prob : array of float
        Cell probability map (H, W) or stack (N, H, W), values in [0, 1].
    mask : array of int or bool
        True cells, 1 = cell, 0 = membrane, same shape as ``prob``.
    thresholds : sequence of float
        Thresholds to try, by default Fiji's 11 (:data:`DEFAULT_THRESHOLDS`).

    Returns
    -------
    dict
        ``v_rand``, ``threshold`` (its best threshold), ``v_info``,
        ``threshold_info`` (best threshold of V_Info, may differ), and the arrays
        ``thresholds``, ``v_rand_curve``, ``v_info_curve`` (score per threshold).
        Ties go to the lowest threshold.
    """
    prob = _probability_stack(prob)
    mask = _binary_stack(mask)
    if prob.shape != mask.shape or prob.ndim not in (2, 3):
        raise ValueError(
            f"prob {prob.shape} and mask {mask.shape} must have the same shape, "
            "(H, W) or (N, H, W)."
        )
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    if thresholds.size == 0 or np.any((thresholds < 0) | (thresholds > 1)):
        raise ValueError("thresholds must be a non-empty list of values in [0, 1].")
    if prob.ndim == 2:
        prob, mask = prob[None], mask[None]

    true_segments = [_connected_components(m, connectivity=1) for m in mask]
    curves = np.empty((2, thresholds.size))
    for k, threshold in enumerate(thresholds):
        per_slice = [
            segmentation_scores(thinned_cell_labels(p > threshold), truth)
            for p, truth in zip(prob, true_segments)
        ]
        curves[0, k] = _nanmean([s["v_rand"] for s in per_slice])
        curves[1, k] = _nanmean([s["v_info"] for s in per_slice])
    if np.all(np.isnan(curves)):
        best_rand = best_info = 0  # no true cell anywhere: nothing to choose
    else:
        best_rand, best_info = (int(np.nanargmax(curve)) for curve in curves)
    return {
        "v_rand": float(curves[0, best_rand]),
        "threshold": float(thresholds[best_rand]),
        "v_info": float(curves[1, best_info]),
        "threshold_info": float(thresholds[best_info]),
        "thresholds": thresholds,
        "v_rand_curve": curves[0],
        "v_info_curve": curves[1],
    }


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


def _cell_probability(prediction):
    prediction = np.asarray(prediction)
    # A softmax model gives (H, W, K); class 1 is the cell.
    return prediction[..., 1] if prediction.ndim == 3 else prediction


def _probabilities(model_or_probs, images, masks, tiling_options):
    if hasattr(model_or_probs, "predict") and not isinstance(model_or_probs, np.ndarray):
        if images is None:
            raise ValueError("images are needed to run the model; pass them as the second argument.")
        from unet_tutorial.tiling import predict_tiled  # lazy: tiling pulls in the model code

        images = _stack(images, "images")
        if len(images) != len(masks):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks.")
        probs = [
            _cell_probability(predict_tiled(model_or_probs, image, **tiling_options))
            for image in images
        ]
    else:
        probs = _stack(model_or_probs, "probabilities")
    if len(probs) != len(masks):
        raise ValueError(f"got {len(probs)} probability maps but {len(masks)} masks.")
    for prob, mask in zip(probs, masks):
        if prob.shape != mask.shape:
            raise ValueError(f"probability map {prob.shape} and mask {mask.shape} differ in shape.")
    return probs


def evaluate_segmentation(
    model_or_probs, images, masks, threshold=0.5, thresholds=DEFAULT_THRESHOLDS, **tiling_options
):
    """Score every image and add a mean row: pixel error, IoU, Dice, V_Rand, V_Info.

    Pixel scores use the cells ``prob > threshold``; V_Rand and V_Info are the
    best over ``thresholds`` for each image on its own (:func:`isbi_scores`).
    The challenge chose one threshold for the whole stack: for that number call
    ``isbi_scores(probs, masks)`` on the (N, H, W) arrays.

    Taught in chapter 3 (A mini U-Net) and chapter 4 (The full U-Net).

    Parameters
    ----------
    model_or_probs : keras.Model or array
        A U-Net, run on each image with
        ``unet_tutorial.tiling.predict_tiled(model, image, **tiling_options)``
        (for a softmax model channel 1, the cell, is used), or the cell
        probability maps themselves, (N, H, W) or a list of (H, W) arrays.
    images : array or list of arrays, or None
        Input images (N, H, W) as ``predict_tiled`` takes them (uint8 is scaled
        to [0, 1] there, floats are used as given); only used with a model, may
        be None with probability maps.
    masks : array or list of arrays
        True masks (N, H, W), 1 = cell, 0 = membrane.
    threshold : float
        Cell threshold for pixel error, IoU and Dice.
    thresholds : sequence of float
        Thresholds searched for V_Rand and V_Info.
    **tiling_options
        Passed on to ``predict_tiled`` (e.g. ``tta=True``, ``tile_size=...``).

    Returns
    -------
    list of dict
        One row per image with keys ``image`` (index), ``pixel_error``,
        ``iou_membrane``, ``iou_cell``, ``dice_cell``, ``v_rand``, ``v_info``,
        then a row with ``image="mean"`` (NaNs skipped). Print with
        :func:`format_table`.
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    masks = [_binary_stack(mask, "masks") for mask in _stack(masks, "masks")]
    probs = _probabilities(model_or_probs, images, masks, tiling_options)
    rows = []
    for index, (prob, mask) in enumerate(zip(probs, masks)):
        prob = _probability_stack(prob, "probability map")
        cells = (prob > threshold).astype(np.int64)
        ious = iou(cells, mask)
        scores = isbi_scores(prob, mask, thresholds)
        rows.append(
            {
                "image": index,
                "pixel_error": pixel_error(cells, mask),
                "iou_membrane": float(ious[0]),
                "iou_cell": float(ious[1]),
                "dice_cell": float(dice(cells, mask)[1]),
                "v_rand": scores["v_rand"],
                "v_info": scores["v_info"],
            }
        )
    mean_row = {"image": "mean"}
    for key in ROW_KEYS[1:]:
        mean_row[key] = _nanmean([row[key] for row in rows])
    rows.append(mean_row)
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

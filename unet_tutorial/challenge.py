"""The ISBI 2012 challenge's scores: V_Rand and V_Info after border thinning.

The challenge (Arganda-Carreras et al. 2015) judges how well the *cells* are separated,
not how many pixels are right. Its evaluation is the ImageJ script "Segmentation
evaluation after border thinning" of Fiji's Trainable_Segmentation
(``RandError.getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)`` and
``VariationOfInformation.getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)``). For every
threshold t of :data:`DEFAULT_THRESHOLDS`:

1. the predicted cells are the pixels with ``prob > t``, the true cells the 4-connected
   components of the mask;
2. the predicted borders are thinned (:func:`thinned_cell_labels`), so the score does
   not care how thick a predicted membrane is, only whether it separates the cells;
3. only pixels inside true cells are scored (:func:`segmentation_scores`);
4. the slice scores are averaged over the stack; the best threshold is reported, one
   for the whole stack (V_Rand and V_Info each their own).

With ``p_ij`` the fraction of scored pixels in true segment i and predicted segment j,
and ``t_i``, ``s_j`` the true and predicted segment fractions::

    V_Rand = sum(p_ij**2) / (0.5 * sum(s_j**2) + 0.5 * sum(t_i**2))
    V_Info = I(S;T) / (0.5 * H(S) + 0.5 * H(T))

the harmonic means of a split score (hurt by cutting a cell in two) and a merge score
(hurt by fusing cells). A predicted pixel on a dividing line counts as a segment of its
own. A map that predicts no cell is one segment: V_Info 0, and V_Rand the sum of the
squared true cell fractions through the harmonic mean (about 0.06 on ISBI slices).

The thinning is Fiji's own flooding, tie-breaks included, so the scores are the
challenge's: ``tests/test_metrics_fiji.py`` ports Fiji's evaluation from its Java
sources and finds the same dividing lines and the same scores to rounding (1e-12).

Taught in chapter 1 (Semantic segmentation).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from skimage.measure import label as _connected_components
from skimage.metrics import contingency_table

__all__ = ["DEFAULT_THRESHOLDS", "SCORER", "isbi_scores", "segmentation_scores", "thinned_cell_labels"]


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

_SCORE_KEYS = ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split", "v_info_merge")


def _label_map(array, name):
    """Integer labels; bools become 0/1, floats must hold whole numbers."""
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


def _label_maps(pred, truth):
    """Two label maps of one image: :func:`_label_map` of each, and the same shape."""
    pred, truth = _label_map(pred, "pred"), _label_map(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} differ in shape; pass maps of one image")
    return pred, truth


def _xlogx_sum(counts, total):
    """``sum(p * log p)`` for p = counts / total, zeros skipped."""
    p = counts[counts > 0] / total
    return float(np.sum(p * np.log(p)))


def _info_scores(mutual, h_pred, h_true):
    """(V_Info, split, merge), with Fiji's rule for a single segment (entropy 0)."""
    if h_pred <= 1e-12:  # one predicted segment: nothing split, everything merged
        return 0.0, 0.0, 1.0
    if h_true <= 1e-12:
        return 0.0, 1.0, 0.0
    split, merge = min(mutual / h_pred, 1.0), min(mutual / h_true, 1.0)
    total = split + merge
    return (float(2 * split * merge / total) if total > 0 else 0.0), float(split), float(merge)


def segmentation_scores(pred_labels, truth_labels):
    """V_Rand and V_Info of two label images, scored on the true cells only.

    Truth 0 (membrane) is not scored; a scored pixel with ``pred_labels == 0`` counts as a segment
    of its own. Returns a dict of ``v_rand``, ``v_info`` and their ``_split`` and ``_merge`` parts, in
    [0, 1] (1 = perfect; ``nan`` without true cells). Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> truth, merged = np.array([[1, 1, 0, 2, 2]]), np.ones((1, 5), int)  # two cells fused
    >>> scores = segmentation_scores(merged, truth)
    >>> round(scores["v_rand"], 4), scores["v_rand_split"], scores["v_rand_merge"], scores["v_info"]
    (0.6667, 1.0, 0.5, 0.0)
    """
    pred, truth = _label_maps(pred_labels, truth_labels)
    if (pred.size and pred.min() < 0) or (truth.size and truth.min() < 0):
        raise ValueError("label images must be non-negative (0 = background/unassigned).")
    return _scores(pred, truth)


def _scores(pred, truth):
    """:func:`segmentation_scores` of integer label maps already checked: one shape, no negative label."""
    scored = truth > 0
    if not scored.any():
        return dict.fromkeys(_SCORE_KEYS, math.nan)
    pred, truth = pred[scored], truth[scored]
    unassigned = pred == 0
    pred[unassigned] = pred.max() + 1 + np.arange(np.count_nonzero(unassigned))
    # Compact ids keep the sparse table small; they change no count.
    pred = np.unique(pred, return_inverse=True)[1].ravel()
    truth = np.unique(truth, return_inverse=True)[1].ravel()
    table = contingency_table(truth, pred)
    table.sum_duplicates()
    pair = table.data.astype(np.float64)
    true_sizes = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()
    pred_sizes = np.asarray(table.sum(axis=0), dtype=np.float64).ravel()
    sum_pair2, sum_true2, sum_pred2 = pair @ pair, true_sizes @ true_sizes, pred_sizes @ pred_sizes
    n = pair.sum()
    h_true, h_pred = -_xlogx_sum(true_sizes, n), -_xlogx_sum(pred_sizes, n)
    mutual = max(h_true + h_pred + _xlogx_sum(pair, n), 0.0)  # rounding can leave -1e-16
    v_rand = (2 * sum_pair2 / (sum_true2 + sum_pred2), sum_pair2 / sum_true2, sum_pair2 / sum_pred2)
    return dict(zip(_SCORE_KEYS, [*map(float, v_rand), *_info_scores(mutual, h_pred, h_true)]))


# Pixels in the flood: basins 1, 2, ..., lines 0, free membrane -1, and the queued pixels of
# the layer being labelled -2 - their position in it. _one_basin finds a basin, _LINE (two
# or more) or _NO_BASIN.
_LINE, _FREE, _NO_BASIN = 0, -1, -1
_ONE_BY_ONE = 64  # fewer waiting pixels than this are settled in plain Python


def _flood(basins):
    """Fiji's flood of the membrane from the cells (int32 ``basins``), a queue layer at a time.

    Fiji pops the membrane pixels from a first-in-first-out queue, which holds them in
    layers: the pixels touching a cell (in x-major order), then the pixels these push, and
    so on. A popped pixel takes the one basin among its neighbours popped before it
    (cells, earlier layers, earlier pixels of its layer); two basins or none make it a
    line (Fiji's ``flag`` lets a basin met after a line pixel win). So NumPy labels a
    layer at once; only pixels whose earlier neighbours in the layer may bring another
    basin wait for them.
    Every membrane pixel is reached: the cells are the sources and the image is connected.
    """
    grid = np.pad((basins - (basins == 0)).T, 1)  # x-major; membrane -> _FREE; a frame of line
    height = grid.shape[1]
    steps = np.array([[-height], [-1], [height], [1]])  # Fiji's order: left, up, right, down
    cell = grid > 0
    touch = np.zeros_like(cell)
    touch[1:-1, 1:-1] = cell[:-2, 1:-1] | cell[2:, 1:-1] | cell[1:-1, :-2] | cell[1:-1, 2:]
    layer = np.flatnonzero(touch & (grid == _FREE))
    state, claim = grid.ravel(), np.full(grid.size, np.iinfo(np.intp).max)
    while layer.size:
        position = np.arange(layer.size, dtype=np.int32)
        state[layer] = -2 - position
        around = layer + steps  # (4, n) neighbours
        seen = state[around]
        earlier = -2 - seen  # positions in the layer; as unsigned, other pixels are huge
        before = np.where(earlier.view(np.uint32) < position, earlier, np.intp(layer.size))
        state[layer] = _settle(_one_basin(seen), before)
        layer = _next_layer(around, seen == _FREE, claim)
    return state.reshape(grid.shape)[1:-1, 1:-1].T


def _next_layer(around, free, claim):
    """The free neighbours of a layer in Fiji's push order: pixel i pushes its neighbour k
    (left, up, right, down) as number 4 i + k, and the first push of a pixel counts."""
    number = np.flatnonzero(free.T)
    pusher, direction = np.divmod(number, 4)
    pushed = around[direction, pusher]
    np.minimum.at(claim, pushed, number)  # a pixel is pushed in one layer only: no reset
    return pushed[np.flatnonzero(claim[pushed] == number)]


def _one_basin(values):
    """Per column of int32 ``values``: the one basin (> 0), _LINE for two, _NO_BASIN for none."""
    high = np.maximum.reduce(values)
    # smallest basin: as unsigned, values - 1 wraps lines and negative states to huge numbers
    low = (np.minimum.reduce((values - 1).view(np.uint32)) + np.uint32(1)).view(np.int32)
    one = np.where(low == high, high, _LINE)
    one[high <= 0] = _NO_BASIN
    return one


def _settle(first, before):
    """A layer's labels from ``first``, the one basin among each pixel's cells and earlier
    layers, and ``before`` (4, n), the positions of its neighbours popped earlier in the
    layer (n: none). A pixel waits if one of these may bring another basin, or if ``first``
    has none; it holds -2 - its basin (or -1) meanwhile. Each round settles those whose
    neighbours decide them already, the earliest at least; the last few go one by one.
    """
    n = first.size
    value = np.zeros(n + 1, np.int32)  # value[n] = 0: no neighbour
    value[:n] = first
    near = value[before]
    other = np.logical_or.reduce((near != first) & (near != _LINE))
    wait = np.flatnonzero((first < 0) | ((first > 0) & other))
    basin, before = first[wait], np.take(before, wait, axis=1)
    value[wait] = np.where(basin > 0, -2 - basin, _NO_BASIN)
    while wait.size >= _ONE_BY_ONE:
        done, label = _settle_now(value[before], basin)
        settled, left = np.flatnonzero(done), np.flatnonzero(~done)
        value[wait[settled]] = label[settled]
        wait, basin, before = wait[left], basin[left], np.take(before, left, axis=1)
        if 4 * settled.size < left.size:  # slow progress: long chains
            break
    if wait.size:
        _in_order(value, wait, basin, before)
    return value[:n]


def _settle_now(near, basin):
    """Which waiting pixels settle now, and as what, from their earlier neighbours' values."""
    typed = basin > 0
    clash = typed & np.logical_or.reduce((near > 0) & (near != basin))  # another basin: line
    same = np.where(typed, -2 - basin, _LINE)  # waiting, but can only end as basin or line
    ready = np.logical_and.reduce((near >= 0) | (near == same))
    label = np.where(clash, _LINE, basin)
    untyped = np.flatnonzero(ready & ~typed)  # no basin of its own: its neighbours' one
    label[untyped] = np.maximum(_one_basin(near[:, untyped]), _LINE)
    return clash | ready, label


def _in_order(value, wait, basin, before):
    """Settle the waiting pixels one by one in queue order, in plain Python."""
    settled = {}
    neighbours, values = zip(*before.tolist()), zip(*value[before].tolist())
    for p, label, qs, near in zip(wait.tolist(), basin.tolist(), neighbours, values):
        label = max(label, _LINE)  # _NO_BASIN: no basin yet
        for q, v in zip(qs, near):
            if v < 0:  # a waiting neighbour, settled earlier in this loop
                v = settled[q]
            if v > 0 and v != label:
                if label > 0:
                    label = _LINE  # two basins
                    break
                label = v
        settled[p] = label
    value[wait] = list(settled.values())


def thinned_cell_labels(cells):
    """Label 4-connected cells and grow them over the membrane to one-pixel borders.

    The cells (``cells``: a 2-D bool mask, e.g. ``prob > 0.5``) flood the membrane, so each
    membrane pixel joins its nearest cell and a line labelled 0 stays where two cells meet: the
    "border thinning" of the ISBI 2012 evaluation, by Fiji's flood (``WatershedTransform2D.java``),
    pixel order and tie-breaks included. Returns int32 labels 1..n; without any cell the whole image
    is one basin (all 1), as in Fiji.
    Taught in chapter 1 (Semantic segmentation); chapter 6 (Weight maps) uses it too.

    Examples
    --------
    >>> cells = np.array([[1, 1, 0, 0, 0, 1]], dtype=bool)
    >>> thinned_cell_labels(cells)
    array([[1, 1, 1, 0, 2, 2]], dtype=int32)
    >>> thinned_cell_labels(np.array([[1, 1, 0, 0, 1, 1]], dtype=bool))  # an even gap
    array([[1, 1, 1, 0, 2, 2]], dtype=int32)
    >>> thinned_cell_labels(np.zeros((1, 4), bool))
    array([[1, 1, 1, 1]], dtype=int32)
    """
    cells = np.asarray(cells, dtype=bool)
    if cells.ndim != 2:
        raise ValueError(f"cells must be a 2-D mask, got shape {cells.shape}.")
    return _thin(cells)


def _thin(cells):
    """:func:`thinned_cell_labels` of a 2-D bool mask."""
    basins = _connected_components(cells, connectivity=1).astype(np.int32, copy=False)
    if basins.max() == 0:
        return np.ones(cells.shape, np.int32)  # no source: one basin, as in Fiji
    return _flood(basins).astype(np.int32)


def _slices(array, name):
    """A list of 2-D arrays from (H, W), (N, H, W) or a list of (H, W)."""
    if isinstance(array, np.ndarray) or not isinstance(array, (list, tuple)):
        array = np.asarray(array)
        array = [array] if array.ndim == 2 else list(array)
    slices = [np.asarray(a) for a in array]
    if not slices or any(a.ndim != 2 for a in slices):
        raise ValueError(f"{name} must be (H, W), (N, H, W) or a list of (H, W) arrays.")
    return slices


def _check_mask(mask):
    mask = _label_map(mask, "mask")
    if mask.size and (mask.min() < 0 or mask.max() > 1):
        hint = " (ISBI labels are 0/255: use mask // 255)" if mask.max() == 255 else ""
        raise ValueError(f"mask must hold 0 (membrane) and 1 (cell) only{hint}.")
    return mask


def isbi_scores(prob, mask, thresholds=DEFAULT_THRESHOLDS):
    """Best V_Rand and V_Info over the thresholds, one threshold for the whole stack.

    For each threshold the cells ``prob > t`` of every slice ((H, W), (N, H, W) or a list) are
    thinned and scored against the true cells (mask 1 = cell); the best average over the slices is
    reported, as the challenge did. Returns a dict: ``v_rand`` and its ``threshold``, ``v_info`` and
    its ``threshold_info``, and the arrays ``thresholds``, ``v_rand_curve`` / ``v_info_curve`` (per
    threshold) and ``v_rand_slices`` / ``v_info_slices`` (per slice and threshold).
    Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> mask, prob = np.array([[1, 1, 0, 1, 1]] * 3), np.array([[0.9, 0.8, 0.6, 0.8, 0.9]] * 3)
    >>> scores = isbi_scores(prob, mask)
    >>> scores["v_rand"], round(scores["threshold"], 1)  # 0.6 is the first that splits the cells
    (1.0, 0.6)
    """
    probs, masks = _slices(prob, "prob"), _slices(mask, "mask")
    if len(probs) != len(masks) or any(p.shape != m.shape for p, m in zip(probs, masks)):
        raise ValueError(
            f"prob and mask must have the same shape, (H, W) or (N, H, W); got "
            f"{[p.shape for p in probs][:3]} and {[m.shape for m in masks][:3]}."
        )
    if not all(np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1 for p in probs):
        raise ValueError("prob must be cell probabilities in [0, 1]; apply the sigmoid first, or rescale.")
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    if thresholds.size == 0 or np.any((thresholds < 0) | (thresholds > 1)):
        raise ValueError("thresholds must be a non-empty list of values in [0, 1].")
    slices = np.empty((2, len(probs), thresholds.size))
    for i, (p, m) in enumerate(zip(probs, masks)):
        truth = _connected_components(_check_mask(m), connectivity=1)
        for k, threshold in enumerate(thresholds):
            scores = _scores(_thin(p > threshold), truth)
            slices[:, i, k] = scores["v_rand"], scores["v_info"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns stay nan
        curves = np.nanmean(slices, axis=1)  # a slice without true cells is skipped
    # The first best threshold; a NaN (no true cell at all) never wins, and all NaN gives the first.
    best_rand, best_info = (int(np.argmax(np.nan_to_num(curve, nan=-1.0))) for curve in curves)
    return {
        "v_rand": float(curves[0, best_rand]),
        "threshold": float(thresholds[best_rand]),
        "v_info": float(curves[1, best_info]),
        "threshold_info": float(thresholds[best_info]),
        "thresholds": thresholds,
        "v_rand_curve": curves[0],
        "v_info_curve": curves[1],
        "v_rand_slices": slices[0],
        "v_info_slices": slices[1],
    }

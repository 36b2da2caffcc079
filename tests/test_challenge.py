"""Tests for unet_tutorial.challenge: the ISBI 2012 scores by hand and by independent counts.

tests/test_metrics_fiji.py checks them against a port of Fiji's evaluation code.
"""

import collections
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as connected_components

from unet_tutorial import challenge
from unet_tutorial.synthetic import synthetic_membranes

RNG = np.random.default_rng(7)


# -------------------------------------------------- V_Rand / V_Info by hand
def test_identical_segmentations_score_one_even_with_other_label_ids():
    truth = RNG.integers(1, 6, (12, 12))
    pred = (truth * 7) % 11  # a relabelling that keeps segments distinct
    scores = challenge.segmentation_scores(pred, truth)
    assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)


def test_merge_of_two_cells_by_hand():
    # Truth segments of sizes 2, 2, 4 (n = 8); the prediction merges the first two.
    truth = np.array([1, 1, 2, 2, 3, 3, 3, 3])
    pred = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    # Contingency n_ij = 2, 2, 4; truth sizes a = 2, 2, 4; pred sizes b = 4, 4.
    # sum n^2 = 24, sum a^2 = 24, sum b^2 = 32  ->  V_Rand = 2*24 / (24 + 32) = 6/7.
    # Entropies in bits: H(T) = H(1/4, 1/4, 1/2) = 1.5, H(S) = H(1/2, 1/2) = 1,
    # H(S, T) = 1.5, so I = 1 + 1.5 - 1.5 = 1 and V_Info = 2*1 / (1 + 1.5) = 0.8.
    scores = challenge.segmentation_scores(pred, truth)
    assert scores["v_rand"] == pytest.approx(6 / 7)
    assert scores["v_info"] == pytest.approx(0.8)
    # A merge costs only the merge scores: sum n^2 / sum b^2 = 3/4, I / H(T) = 2/3.
    assert scores["v_rand_split"] == pytest.approx(1.0) and scores["v_rand_merge"] == pytest.approx(0.75)
    assert scores["v_info_split"] == pytest.approx(1.0) and scores["v_info_merge"] == pytest.approx(2 / 3)


def test_split_of_one_cell_by_hand():
    # Truth segments 4 and 4; the prediction cuts the second into 2 + 2.
    truth = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    pred = np.array([1, 1, 1, 1, 2, 2, 3, 3])
    # n_ij = 4, 2, 2 = b; a = 4, 4: sum n^2 = 24, sum a^2 = 32 -> V_Rand = 48/56 = 6/7.
    # H(T) = 1 bit, H(S) = H(1/2, 1/4, 1/4) = 1.5 = H(S, T), I = 1 -> V_Info = 2/2.5 = 0.8.
    scores = challenge.segmentation_scores(pred, truth)
    assert scores["v_rand"] == pytest.approx(6 / 7) and scores["v_info"] == pytest.approx(0.8)
    assert scores["v_rand_split"] == pytest.approx(0.75) and scores["v_rand_merge"] == pytest.approx(1.0)
    assert scores["v_info_split"] == pytest.approx(2 / 3) and scores["v_info_merge"] == pytest.approx(1.0)
    assert (
        challenge.segmentation_scores(pred, truth)["v_rand"] == scores["v_rand"]
        and challenge.segmentation_scores(pred, truth)["v_info"] == scores["v_info"]
    )


def test_truth_background_is_not_scored_and_unassigned_pixels_are_singletons():
    truth = np.array([1, 1, 2, 2, 3, 3, 3, 3])
    pred = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    padded_truth = np.concatenate([truth, [0, 0, 0]])
    padded_pred = np.concatenate([pred, [1, 2, 9]])  # anything on the truth background
    assert challenge.segmentation_scores(padded_pred, padded_truth)["v_rand"] == pytest.approx(6 / 7)
    # Pred 0 = two separate one-pixel segments: n_ij = 2, 1, 1 = b, a = 4
    # -> V_Rand = 2*6 / (16 + 6) = 6/11.
    assert challenge.segmentation_scores(np.array([1, 1, 0, 0]), np.array([1, 1, 1, 1]))[
        "v_rand"
    ] == pytest.approx(6 / 11)


def test_v_rand_equals_brute_force_pair_counting():
    # Count ordered pixel pairs (a pixel paired with itself included) directly.
    truth = RNG.integers(0, 4, 30)
    pred = RNG.integers(0, 5, 30)
    scored = np.flatnonzero(truth > 0)
    pred_ids = pred.copy()
    pred_ids[pred_ids == 0] = 100 + np.arange(np.sum(pred_ids == 0))  # singletons
    same_truth = same_pred = same_both = 0
    for i, j in itertools.product(scored, scored):
        in_truth, in_pred = truth[i] == truth[j], pred_ids[i] == pred_ids[j]
        same_truth += in_truth
        same_pred += in_pred
        same_both += in_truth and in_pred
    expected = 2 * same_both / (same_truth + same_pred)
    assert challenge.segmentation_scores(pred, truth)["v_rand"] == pytest.approx(expected)


def test_v_info_agrees_with_skimage_conditional_entropies():
    from skimage.metrics import variation_of_information

    truth = RNG.integers(1, 5, (15, 15))
    pred = RNG.integers(1, 4, (15, 15))
    h_pred_given_truth, h_truth_given_pred = variation_of_information(truth, pred)
    p_truth = np.bincount(truth.ravel()) / truth.size
    p_truth = p_truth[p_truth > 0]
    h_truth = -np.sum(p_truth * np.log2(p_truth))
    mutual = h_truth - h_truth_given_pred
    h_pred = mutual + h_pred_given_truth
    assert challenge.segmentation_scores(pred, truth)["v_info"] == pytest.approx(
        2 * mutual / (h_pred + h_truth), rel=1e-9
    )


def test_scores_are_nan_without_truth_foreground():
    assert math.isnan(challenge.segmentation_scores(np.ones((3, 3), int), np.zeros((3, 3), int))["v_rand"])


# ------------------------------------------------------------ thinning
def test_thinning_absorbs_membrane_and_keeps_a_one_pixel_line():
    cells = np.ones((4, 9), bool)
    cells[:, 3:6] = False  # a membrane three pixels wide
    labels = challenge.thinned_cell_labels(cells)
    np.testing.assert_array_equal(labels[:, 4], 0)  # the middle column stays the border
    assert set(np.unique(labels[:, :4])) == {1} and set(np.unique(labels[:, 5:])) == {2}
    # no cell: the flood has no source, and Fiji's watershed makes the slice one basin
    assert np.all(challenge.thinned_cell_labels(np.zeros((3, 3), bool)) == 1)


def test_thinning_keeps_diagonal_neighbours_apart():
    cells = np.array([[1, 0], [0, 1]], bool)  # touching at a corner only: two cells
    labels = challenge.thinned_cell_labels(cells)
    assert labels[0, 0] != labels[1, 1] and labels[0, 0] > 0 and labels[1, 1] > 0


# ------------------------------------------ thinning: the fast flood equals the plain one
# The plain-Python flood that challenge.thinned_cell_labels used before it worked a queue
# layer at a time (commit 8c86fc3): Fiji's WatershedTransform2D, one pixel at a time.
# The fast version must return the very same labels array for every input.
_LINE, _MASK, _QUEUED, _OUTSIDE = 0, -2, -3, -4


def _reference_flood(state, queue, steps):
    after_line = False  # Fiji's `flag`: the last pixel became a line pixel by meeting one
    while queue:
        p = queue.popleft()
        for q in (p + steps[0], p + steps[1], p + steps[2], p + steps[3]):
            neighbour = state[q]
            if neighbour > 0:
                if state[p] == _QUEUED or (state[p] == _LINE and after_line):
                    state[p] = neighbour
                elif state[p] > 0 and state[p] != neighbour:
                    state[p] = _LINE
                    after_line = False
            elif neighbour == _LINE:
                if state[p] == _QUEUED:
                    state[p] = _LINE
                    after_line = True
            elif neighbour == _MASK:
                state[q] = _QUEUED
                queue.append(q)


def reference_thinning(cells):
    """The former ``challenge.thinned_cell_labels``, kept verbatim as the reference."""
    cells = np.asarray(cells, dtype=bool)
    basins = connected_components(cells, connectivity=1)
    if basins.max() == 0:
        return np.ones(cells.shape, np.int32)
    grid = np.pad(np.where(cells, basins, _MASK).T, 1, constant_values=_OUTSIDE)
    height = grid.shape[1]
    steps = (-height, -1, height, 1)
    membrane = grid == _MASK
    touches_cell = np.zeros_like(membrane)
    for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
        touches_cell |= np.roll(grid > 0, shift, axis=axis)
    first = np.flatnonzero(membrane & touches_cell)  # in Fiji's x-major order
    state = grid.ravel().tolist()
    for p in first:
        state[p] = _QUEUED
    _reference_flood(state, collections.deque(first.tolist()), steps)
    flooded = np.array(state, dtype=np.int64).reshape(grid.shape)[1:-1, 1:-1].T
    left = flooded == _MASK  # membrane that no cell reaches: Fiji makes it new basins
    if left.any():
        extra = connected_components(left, connectivity=1)
        flooded[left] = extra[left] + flooded.max()
    return flooded.astype(np.int32)


def assert_same_thinning(maps):
    for cells in maps:
        expected, got = reference_thinning(cells), challenge.thinned_cell_labels(cells)
        assert got.dtype == expected.dtype == np.int32
        np.testing.assert_array_equal(got, expected, err_msg=str(cells.astype(int)))


def strip(text):
    """One-row cell map from a string: 'C' = cell, '.' = membrane."""
    return np.array([[c == "C" for c in text]])


def hand_made_maps():
    gap = np.zeros((3, 4), bool)
    gap[:, [0, 3]] = True  # a gap two pixels wide, across and along x
    four = np.ones((9, 9), bool)
    four[4, :] = four[:, 4] = False  # four cells meeting at a cross
    ring = np.zeros((7, 7), bool)
    ring[1:-1, 1:-1] = True
    ring[2:-2, 2:-2] = False  # a ring cell around a membrane hole with a cell inside
    ring[3, 3] = True
    maps = [strip(t) for t in ("CC....CC", "CC...CC", "C.C", "C..C", ".C.", "..C..", "C......", "......C")]
    maps += [gap, gap.T, four, ring, ~ring, np.eye(6, dtype=bool), ~np.eye(6, dtype=bool)]
    maps += [np.array([[1, 0], [0, 1]], bool), np.array([[1, 1, 0, 0, 0, 1]], bool)]
    maps += [np.zeros((1, 1), bool), np.ones((1, 1), bool), np.zeros((3, 5), bool), np.ones((4, 3), bool)]
    return maps


def structured_maps():
    """Checkerboards, stripes, thin diagonals, blobs with even and odd gaps, lone pixels."""
    maps = []
    rows, cols = np.indices((24, 31))
    for period in (2, 3, 4, 5):
        for phase in range(period):
            maps += [(rows + cols) % period == phase, (rows - cols) % period == phase]
            maps += [cols % period == phase, rows % period == phase]
            maps += [(rows // period + cols // period) % 2 == phase % 2]
    rows, cols = np.indices((64, 64))
    for period in (4, 5):  # long diagonal membranes two pixels wide: long chains of ties
        maps += [(rows - cols) % period >= 2, (rows + cols) % period >= 2]
    for size in (1, 2, 5, 12):
        for where in [(0, 0), (size - 1, size - 1), (size // 2, size // 2 - 1 if size > 1 else 0)]:
            lone = np.zeros((size, size + 3), bool)
            lone[where] = True
            maps += [lone, ~lone]
    rng = np.random.default_rng(5)
    for sigma in (1.0, 2.0, 3.0):
        for level in (-0.05, 0.0, 0.05, 0.1):
            smooth = ndimage.gaussian_filter(rng.normal(size=(40, 47)), sigma)
            maps.append(smooth > level * smooth.std() * 10)
    return maps


def random_maps(seed, count=120):
    rng = np.random.default_rng(seed)
    shapes = [(1, 2), (2, 1), (2, 2), (1, 17), (17, 1), (1, 64), (64, 1), (3, 3), (4, 9), (13, 6), (25, 25)]
    maps = []
    for index in range(count):
        shape = shapes[index % len(shapes)] if index < 2 * len(shapes) else tuple(rng.integers(1, 40, 2))
        maps.append(rng.random(shape) < rng.uniform(0.02, 0.98))
    return maps


def test_fast_thinning_equals_reference_on_hand_made_and_structured_maps():
    assert_same_thinning(hand_made_maps() + structured_maps())


@pytest.mark.parametrize("seed", range(6))
def test_fast_thinning_equals_reference_on_random_maps(seed):
    assert_same_thinning(random_maps(seed))


@pytest.mark.parametrize("one_by_one", [1, 10**9])
def test_both_ways_of_settling_a_layer_equal_the_reference(monkeypatch, one_by_one):
    # 1: NumPy rounds wherever progress is quick; 10**9: every waiting pixel in Python.
    monkeypatch.setattr(challenge, "_ONE_BY_ONE", one_by_one)
    assert_same_thinning(hand_made_maps() + structured_maps() + random_maps(99, count=60))


def probability_slices(n_slices=2):
    """Cell probabilities from ISBI label slices (UNET_TUTORIAL_DATA), else synthetic labels:
    blurred, and blurred with noise, as a network's output might look."""
    root = os.environ.get("UNET_TUTORIAL_DATA")
    path = Path(root or ".") / "isbi2012" / "train-labels.tif"
    if root and path.exists():
        tifffile = pytest.importorskip("tifffile")
        masks = tifffile.imread(path, key=range(n_slices)) // 255
    else:
        masks = synthetic_membranes(n_slices, 512, seed=3)[1]
    blurred = ndimage.gaussian_filter(masks.astype(float), (0, 2, 2))
    noisy = blurred + np.random.default_rng(0).normal(0.0, 0.15, blurred.shape)
    return np.concatenate([blurred, np.clip(noisy, 0.0, 1.0)])


def test_fast_thinning_equals_reference_on_thresholded_label_maps():
    probs = probability_slices()
    assert_same_thinning([prob > threshold for prob in probs for threshold in challenge.DEFAULT_THRESHOLDS])


# ------------------------------------------------------------ isbi_scores
def two_cells():
    """Truth 5 x 7: a membrane column at x = 3 between two 15-pixel cells."""
    mask = np.ones((5, 7), int)
    mask[:, 3] = 0
    return mask


def test_perfect_probability_map_scores_one():
    mask = two_cells()
    scores = challenge.isbi_scores(mask.astype(float), mask)
    assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)
    assert scores["threshold"] == 0.0 and len(scores["v_rand_curve"]) == 11


def test_gap_in_the_membrane_merges_the_two_cells():
    mask = two_cells()
    prob = mask.astype(float)
    prob[2, 3] = 1.0  # one missed membrane pixel joins the cells
    # Scored pixels: 15 + 15, all in one predicted segment: n_ij = 15, 15; a = 15, 15;
    # b = 30 -> V_Rand = 2*450 / (450 + 900) = 2/3. H(S) = 0 so I = 0 and V_Info = 0.
    scores = challenge.isbi_scores(prob, mask)
    assert scores["v_rand"] == pytest.approx(2 / 3) and scores["v_info"] == pytest.approx(0.0)


def test_extra_membrane_line_splits_a_cell():
    # Truth 4 x 11: membrane at x = 5, cells of 20 pixels left and right.
    mask = np.ones((4, 11), int)
    mask[:, 5] = 0
    prob = mask.astype(float)
    prob[:, 2] = 0.0  # a wrong membrane cuts the left cell
    # Thinning leaves the one-pixel line x = 2 unassigned: 4 one-pixel segments.
    # Predicted segments inside the truth: 8, 8, 1, 1, 1, 1 (left cell) and 20 (right).
    sizes = np.array([8, 8, 1, 1, 1, 1, 20])
    # Each predicted segment lies in one true cell, so n_ij = b and I = H(T).
    expected_rand = 2 * np.sum(sizes**2) / (np.sum(sizes**2) + 20**2 + 20**2)
    p = sizes / 40
    h_pred, h_truth = -np.sum(p * np.log(p)), np.log(2)
    scores = challenge.isbi_scores(prob, mask)
    assert expected_rand == pytest.approx(1064 / 1332)
    assert scores["v_rand"] == pytest.approx(expected_rand)
    assert scores["v_info"] == pytest.approx(2 * h_truth / (h_pred + h_truth))


def test_best_threshold_is_reported():
    mask = two_cells()
    prob = np.where(mask == 1, 0.75, 0.65)  # right only for 0.65 <= t < 0.75
    scores = challenge.isbi_scores(prob, mask)
    assert scores["threshold"] == pytest.approx(0.7) and scores["threshold_info"] == pytest.approx(0.7)
    assert scores["v_rand"] == pytest.approx(1.0)
    curve = dict(zip(np.round(scores["thresholds"], 1), scores["v_rand_curve"]))
    assert curve[0.6] == pytest.approx(2 / 3)  # membrane counted as cell: merged
    # Nothing predicted: Fiji's watershed floods the slice as one basin, so both cells
    # merge (V_Rand 2/3 as above) and the prediction has no information (V_Info 0).
    assert curve[0.8] == pytest.approx(2 / 3)
    assert scores["v_info_curve"][8] == 0.0


def test_stacks_average_slices_before_choosing_the_threshold():
    mask = two_cells()
    merged = mask.astype(float)
    merged[2, 3] = 1.0
    scores = challenge.isbi_scores(np.stack([mask.astype(float), merged]), np.stack([mask, mask]))
    assert scores["v_rand"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["v_info"] == pytest.approx(0.5)


def test_isbi_scores_refuse_bad_input():
    mask = two_cells()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        challenge.isbi_scores(mask * 2.0, mask)
    with pytest.raises(ValueError, match="255"):
        challenge.isbi_scores(mask.astype(float), mask * 255)
    with pytest.raises(ValueError, match="same shape"):
        challenge.isbi_scores(mask.astype(float), mask[:, :5])
    with pytest.raises(ValueError, match="thresholds"):
        challenge.isbi_scores(mask.astype(float), mask, thresholds=[1.5])


# ------------------------------------------------------------ real data
def isbi_slices(n_slices):
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if not root:
        pytest.skip("set UNET_TUTORIAL_DATA to a folder holding isbi2012/ to run real-data tests")
    tifffile = pytest.importorskip("tifffile")
    path = Path(root) / "isbi2012" / "train-labels.tif"
    if not path.exists():
        pytest.skip(f"{path} not found")
    labels = tifffile.imread(path, key=range(n_slices))
    return (labels // 255).astype(np.int64)


def test_real_labels_score_one_against_themselves_and_lower_when_merged():
    masks = isbi_slices(2)
    perfect = challenge.isbi_scores(masks[0].astype(float), masks[0], thresholds=[0.5])
    assert perfect["v_rand"] == pytest.approx(1.0) and perfect["v_info"] == pytest.approx(1.0)
    merged = masks[0].astype(float)
    merged[:, 256] = 1.0  # open a gap through every membrane crossing the middle column
    worse = challenge.isbi_scores(merged, masks[0], thresholds=[0.5])
    assert worse["v_rand"] < 0.999 and worse["v_info"] < 0.999
    from unet_tutorial import metrics  # imports Keras: only here, so the benchmark's import stays light

    rows = metrics.evaluate_segmentation(np.stack([merged, masks[1].astype(float)]), None, masks)
    assert rows[1]["v_rand"] == pytest.approx(1.0) and rows[0]["v_rand"] < 1.0

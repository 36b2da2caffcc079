"""Tests for unet_tutorial.metrics: hand-computed values and independent checks."""

import itertools
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from unet_tutorial import metrics  # noqa: E402

RNG = np.random.default_rng(7)


# ------------------------------------------------------------ pixel scores
# truth: 0 0 1 1 1 0      class 1: overlap {2, 3}, union {1, 2, 3, 4} -> IoU 2/4
# pred:  0 1 1 1 0 0      class 0: overlap {0, 5}, union {0, 1, 4, 5} -> IoU 2/4
TRUTH = np.array([[0, 0, 1, 1, 1, 0]])
PRED = np.array([[0, 1, 1, 1, 0, 0]])


def test_confusion_matrix_counts_by_hand():
    # rows = truth, columns = pred: truth 0 -> pred (0, 1, 0); truth 1 -> pred (1, 1, 0)
    np.testing.assert_array_equal(metrics.confusion_matrix(PRED, TRUTH), [[2, 1], [1, 2]])


def test_pixel_accuracy_and_error_by_hand():
    assert metrics.pixel_accuracy(PRED, TRUTH) == pytest.approx(4 / 6)
    assert metrics.pixel_error(PRED, TRUTH) == pytest.approx(2 / 6)
    assert metrics.pixel_error(TRUTH, TRUTH) == 0.0


def test_iou_and_dice_by_hand():
    np.testing.assert_allclose(metrics.iou(PRED, TRUTH), [0.5, 0.5])
    np.testing.assert_allclose(metrics.dice(PRED, TRUTH), [4 / 6, 4 / 6])


def test_dice_equals_two_iou_over_one_plus_iou_on_random_maps():
    pred, truth = RNG.integers(0, 3, (2, 20, 20))
    ious, dices = metrics.iou(pred, truth, 3), metrics.dice(pred, truth, 3)
    np.testing.assert_allclose(dices, 2 * ious / (1 + ious))
    # Independent IoU of class 2 from boolean masks.
    inter = np.sum((pred == 2) & (truth == 2))
    union = np.sum((pred == 2) | (truth == 2))
    assert ious[2] == pytest.approx(inter / union)


def test_class_absent_from_both_maps_gives_nan_not_one():
    ious = metrics.iou(PRED, TRUTH, n_classes=3)
    assert math.isnan(ious[2]) and not np.isnan(ious[:2]).any()
    assert math.isnan(metrics.dice(PRED, TRUTH, n_classes=3)[2])
    # Absent from the truth only: a real miss, scored 0.
    assert metrics.iou(np.array([2, 0]), np.array([0, 0]), 3)[2] == 0.0


def test_pixel_scores_refuse_bad_input():
    with pytest.raises(ValueError, match="shape"):
        metrics.pixel_accuracy(PRED, TRUTH[:, :5])
    with pytest.raises(TypeError, match="threshold"):
        metrics.iou(PRED * 0.7, TRUTH)
    with pytest.raises(ValueError, match="outside"):
        metrics.dice(PRED * 2, TRUTH)


# -------------------------------------------------- V_Rand / V_Info by hand
def test_identical_segmentations_score_one_even_with_other_label_ids():
    truth = RNG.integers(1, 6, (12, 12))
    pred = (truth * 7) % 11  # a relabelling that keeps segments distinct
    scores = metrics.segmentation_scores(pred, truth)
    assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)


def test_merge_of_two_cells_by_hand():
    # Truth segments of sizes 2, 2, 4 (n = 8); the prediction merges the first two.
    truth = np.array([1, 1, 2, 2, 3, 3, 3, 3])
    pred = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    # Contingency n_ij = 2, 2, 4; truth sizes a = 2, 2, 4; pred sizes b = 4, 4.
    # sum n^2 = 24, sum a^2 = 24, sum b^2 = 32  ->  V_Rand = 2*24 / (24 + 32) = 6/7.
    # Entropies in bits: H(T) = H(1/4, 1/4, 1/2) = 1.5, H(S) = H(1/2, 1/2) = 1,
    # H(S, T) = 1.5, so I = 1 + 1.5 - 1.5 = 1 and V_Info = 2*1 / (1 + 1.5) = 0.8.
    scores = metrics.segmentation_scores(pred, truth)
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
    scores = metrics.segmentation_scores(pred, truth)
    assert scores["v_rand"] == pytest.approx(6 / 7) and scores["v_info"] == pytest.approx(0.8)
    assert scores["v_rand_split"] == pytest.approx(0.75) and scores["v_rand_merge"] == pytest.approx(1.0)
    assert scores["v_info_split"] == pytest.approx(2 / 3) and scores["v_info_merge"] == pytest.approx(1.0)
    assert metrics.v_rand(pred, truth) == scores["v_rand"] and metrics.v_info(pred, truth) == scores["v_info"]


def test_truth_background_is_not_scored_and_unassigned_pixels_are_singletons():
    truth = np.array([1, 1, 2, 2, 3, 3, 3, 3])
    pred = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    padded_truth = np.concatenate([truth, [0, 0, 0]])
    padded_pred = np.concatenate([pred, [1, 2, 9]])  # anything on the truth background
    assert metrics.v_rand(padded_pred, padded_truth) == pytest.approx(6 / 7)
    # Pred 0 = two separate one-pixel segments: n_ij = 2, 1, 1 = b, a = 4
    # -> V_Rand = 2*6 / (16 + 6) = 6/11.
    assert metrics.v_rand(np.array([1, 1, 0, 0]), np.array([1, 1, 1, 1])) == pytest.approx(6 / 11)


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
    assert metrics.v_rand(pred, truth) == pytest.approx(expected)


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
    assert metrics.v_info(pred, truth) == pytest.approx(2 * mutual / (h_pred + h_truth), rel=1e-9)


def test_scores_are_nan_without_truth_foreground():
    assert math.isnan(metrics.v_rand(np.ones((3, 3), int), np.zeros((3, 3), int)))


# ------------------------------------------------------------ thinning
def test_thinning_absorbs_membrane_and_keeps_a_one_pixel_line():
    cells = np.ones((4, 9), bool)
    cells[:, 3:6] = False  # a membrane three pixels wide
    labels = metrics.thinned_cell_labels(cells)
    np.testing.assert_array_equal(labels[:, 4], 0)  # the middle column stays the border
    assert set(np.unique(labels[:, :4])) == {1} and set(np.unique(labels[:, 5:])) == {2}
    # no cell: the flood has no source, and Fiji's watershed makes the slice one basin
    assert np.all(metrics.thinned_cell_labels(np.zeros((3, 3), bool)) == 1)


def test_thinning_keeps_diagonal_neighbours_apart():
    cells = np.array([[1, 0], [0, 1]], bool)  # touching at a corner only: two cells
    labels = metrics.thinned_cell_labels(cells)
    assert labels[0, 0] != labels[1, 1] and labels[0, 0] > 0 and labels[1, 1] > 0


# ------------------------------------------------------------ isbi_scores
def two_cells():
    """Truth 5 x 7: a membrane column at x = 3 between two 15-pixel cells."""
    mask = np.ones((5, 7), int)
    mask[:, 3] = 0
    return mask


def test_perfect_probability_map_scores_one():
    mask = two_cells()
    scores = metrics.isbi_scores(mask.astype(float), mask)
    assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)
    assert scores["threshold"] == 0.0 and len(scores["v_rand_curve"]) == 11


def test_gap_in_the_membrane_merges_the_two_cells():
    mask = two_cells()
    prob = mask.astype(float)
    prob[2, 3] = 1.0  # one missed membrane pixel joins the cells
    # Scored pixels: 15 + 15, all in one predicted segment: n_ij = 15, 15; a = 15, 15;
    # b = 30 -> V_Rand = 2*450 / (450 + 900) = 2/3. H(S) = 0 so I = 0 and V_Info = 0.
    scores = metrics.isbi_scores(prob, mask)
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
    scores = metrics.isbi_scores(prob, mask)
    assert expected_rand == pytest.approx(1064 / 1332)
    assert scores["v_rand"] == pytest.approx(expected_rand)
    assert scores["v_info"] == pytest.approx(2 * h_truth / (h_pred + h_truth))


def test_best_threshold_is_reported():
    mask = two_cells()
    prob = np.where(mask == 1, 0.75, 0.65)  # right only for 0.65 <= t < 0.75
    scores = metrics.isbi_scores(prob, mask)
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
    scores = metrics.isbi_scores(np.stack([mask.astype(float), merged]), np.stack([mask, mask]))
    assert scores["v_rand"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["v_info"] == pytest.approx(0.5)


def test_isbi_scores_refuse_bad_input():
    mask = two_cells()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.isbi_scores(mask * 2.0, mask)
    with pytest.raises(ValueError, match="255"):
        metrics.isbi_scores(mask.astype(float), mask * 255)
    with pytest.raises(ValueError, match="same shape"):
        metrics.isbi_scores(mask.astype(float), mask[:, :5])
    with pytest.raises(ValueError, match="thresholds"):
        metrics.isbi_scores(mask.astype(float), mask, thresholds=[1.5])


# ---------------------------------------------------- evaluation report
def test_evaluate_segmentation_rows_match_the_single_metrics():
    mask = two_cells()
    noisy = np.clip(mask + RNG.normal(0, 0.3, mask.shape), 0, 1)
    probs, masks = np.stack([mask.astype(float), noisy]), np.stack([mask, mask])
    rows = metrics.evaluate_segmentation(probs, None, masks, threshold=0.5)
    assert [row["image"] for row in rows] == [0, 1, "mean"]
    assert all(tuple(row) == metrics.ROW_KEYS for row in rows)
    cells = (noisy > 0.5).astype(int)
    assert rows[1]["pixel_error"] == pytest.approx(metrics.pixel_error(cells, mask))
    assert rows[1]["iou_membrane"] == pytest.approx(metrics.iou(cells, mask)[0])
    assert rows[1]["dice_cell"] == pytest.approx(metrics.dice(cells, mask)[1])
    assert rows[1]["v_rand"] == pytest.approx(metrics.isbi_scores(noisy, mask)["v_rand"])
    assert rows[0]["v_info"] == pytest.approx(1.0)
    for key in metrics.ROW_KEYS[1:]:
        assert rows[2][key] == pytest.approx((rows[0][key] + rows[1][key]) / 2)


def test_evaluate_segmentation_runs_a_model_through_predict_tiled(monkeypatch):
    mask = two_cells()
    calls = []

    def fake_predict_tiled(model, image, **options):
        calls.append((image.shape, options))
        return model.table[image.shape[1]]

    fake = types.ModuleType("unet_tutorial.tiling")
    fake.predict_tiled = fake_predict_tiled
    monkeypatch.setitem(sys.modules, "unet_tutorial.tiling", fake)

    class FakeModel:
        table = {7: mask.astype(float)}

        def predict(self, x):  # marks it as a model
            raise AssertionError("predict_tiled should be used")

    rows = metrics.evaluate_segmentation(FakeModel(), np.zeros((1, 5, 7)), mask[None], tta=True)
    assert calls == [((5, 7), {"tta": True})] and rows[0]["v_rand"] == pytest.approx(1.0)
    # A softmax model's (H, W, K) output: channel 1 is the cell probability.
    softmax = np.stack([1.0 - mask, mask, np.zeros_like(mask)], axis=-1).astype(float)
    FakeModel.table = {7: softmax}
    rows = metrics.evaluate_segmentation(FakeModel(), np.zeros((1, 5, 7)), mask[None])
    assert rows[0]["pixel_error"] == 0.0 and rows[0]["v_info"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="images"):
        metrics.evaluate_segmentation(FakeModel(), None, mask[None])


def test_evaluate_segmentation_with_a_real_keras_model():
    pytest.importorskip("unet_tutorial.tiling")
    inputs = keras.Input((None, None, 1))
    identity = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones")
    model = keras.Model(inputs, identity(inputs))  # output = input
    masks = np.stack([two_cells(), two_cells()[::-1, ::-1]])
    rows = metrics.evaluate_segmentation(model, masks.astype("float32"), masks)
    assert rows[-1]["pixel_error"] == pytest.approx(0.0, abs=1e-7)
    assert rows[-1]["v_rand"] == pytest.approx(1.0) and rows[-1]["v_info"] == pytest.approx(1.0)


def test_evaluate_segmentation_refuses_mismatched_input():
    mask = two_cells()
    with pytest.raises(ValueError, match="masks"):
        metrics.evaluate_segmentation(np.stack([mask, mask]).astype(float), None, mask[None])


def test_format_table_lays_out_every_row():
    rows = [{"image": 0, "v_rand": 0.5, "v_info": math.nan}, {"image": "mean", "v_rand": 0.25, "v_info": 1.0}]
    lines = metrics.format_table(rows, digits=2).splitlines()
    assert len(lines) == 4 and lines[0].split() == ["image", "v_rand", "v_info"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["0", "0.50", "nan"] and lines[3].split() == ["mean", "0.25", "1.00"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    with pytest.raises(TypeError):
        metrics.format_table([])


# ------------------------------------------------------------ Keras metrics
def test_dice_coefficient_accumulates_batches_like_numpy_dice():
    prob = RNG.uniform(0.0, 1.0, (4, 6, 6, 1)).astype("float32")
    labels = RNG.integers(0, 2, (4, 6, 6))
    metric = metrics.DiceCoefficient(threshold=0.4)
    metric.update_state(labels[:2], prob[:2])
    metric.update_state(labels[2:, ..., None], prob[2:])
    expected = metrics.dice((prob[..., 0] > 0.4).astype(int), labels)[1]
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    metric.reset_state()
    assert math.isnan(float(metric.result()))


def test_dice_coefficient_softmax_and_pixel_weights():
    prob = RNG.dirichlet(np.ones(3), size=(2, 5, 5)).astype("float32")
    labels = RNG.integers(0, 3, (2, 5, 5))
    weights = RNG.uniform(0, 2, (2, 5, 5)).astype("float32")
    metric = metrics.DiceCoefficient(class_id=2)
    metric.update_state(labels, prob, sample_weight=weights)
    pred_is, true_is = prob.argmax(-1) == 2, labels == 2
    tp = np.sum(weights * (pred_is & true_is))
    fp, fn = np.sum(weights * (pred_is & ~true_is)), np.sum(weights * (~pred_is & true_is))
    assert float(metric.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-5)
    restored = metrics.DiceCoefficient.from_config(metric.get_config())
    assert restored.class_id == 2 and restored.threshold == metric.threshold


def test_training_metrics_match_numpy_inside_evaluate():
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(loss="binary_crossentropy", metrics=metrics.training_metrics(1))
    x = RNG.normal(size=(3, 6, 6, 2)).astype("float32")
    y = RNG.integers(0, 2, (3, 6, 6))
    cells = (model.predict(x, verbose=0)[..., 0] > 0.5).astype(int)
    results = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    assert results["accuracy"] == pytest.approx(metrics.pixel_accuracy(cells, y), rel=1e-6)
    assert results["iou_cell"] == pytest.approx(metrics.iou(cells, y)[1], rel=1e-5)
    assert results["dice_cell"] == pytest.approx(metrics.dice(cells, y)[1], rel=1e-5)


def test_softmax_training_metrics_use_argmax():
    prob = RNG.dirichlet(np.ones(3), size=(2, 4, 4)).astype("float32")
    labels = RNG.integers(0, 3, (2, 4, 4))
    accuracy, mean_iou, dice_cell = metrics.training_metrics(3)
    mean_iou.update_state(labels, prob)
    dice_cell.update_state(labels, prob)
    pred = prob.argmax(-1)
    assert float(mean_iou.result()) == pytest.approx(np.nanmean(metrics.iou(pred, labels, 3)), rel=1e-5)
    assert float(dice_cell.result()) == pytest.approx(metrics.dice(pred, labels, 3)[1], rel=1e-5)
    with pytest.raises(ValueError):
        metrics.training_metrics(0)


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
    perfect = metrics.isbi_scores(masks[0].astype(float), masks[0], thresholds=[0.5])
    assert perfect["v_rand"] == pytest.approx(1.0) and perfect["v_info"] == pytest.approx(1.0)
    merged = masks[0].astype(float)
    merged[:, 256] = 1.0  # open a gap through every membrane crossing the middle column
    worse = metrics.isbi_scores(merged, masks[0], thresholds=[0.5])
    assert worse["v_rand"] < 0.999 and worse["v_info"] < 0.999
    rows = metrics.evaluate_segmentation(np.stack([merged, masks[1].astype(float)]), None, masks)
    assert rows[1]["v_rand"] == pytest.approx(1.0) and rows[0]["v_rand"] < 1.0

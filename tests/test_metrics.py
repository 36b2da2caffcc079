"""Tests for unet_tutorial.metrics: hand-computed values and independent checks."""

import math
import sys
import types

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from unet_tutorial import challenge, metrics  # noqa: E402

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
    with pytest.raises(ValueError, match="class indices 0..1; for more classes pass n_classes"):
        metrics.dice(PRED * 2, TRUTH)


# ---------------------------------------------------- evaluation report
def two_cells():
    """Truth 5 x 7: a membrane column at x = 3 between two 15-pixel cells."""
    mask = np.ones((5, 7), int)
    mask[:, 3] = 0
    return mask


def test_evaluate_segmentation_rows_match_the_single_metrics():
    mask = two_cells()
    noisy = np.clip(mask + RNG.normal(0, 0.3, mask.shape), 0, 1)
    probs, masks = np.stack([mask.astype(float), noisy]), np.stack([mask, mask])
    rows = metrics.evaluate_segmentation(probs, None, masks, threshold=0.5)
    assert [row["image"] for row in rows] == [0, 1, "stack"]
    assert all(tuple(row) == metrics.ROW_KEYS for row in rows)
    cells = (noisy > 0.5).astype(int)
    # the same numbers, to the last bit, as the functions chapter 1 teaches
    assert rows[1]["pixel_error"] == metrics.pixel_error(cells, mask)
    assert [rows[1]["iou_membrane"], rows[1]["iou_cell"]] == list(metrics.iou(cells, mask))
    assert rows[1]["dice_cell"] == metrics.dice(cells, mask)[1]
    # V_Rand and V_Info at the one threshold chosen for the stack, as the challenge does
    stack = challenge.isbi_scores(probs, masks)
    column = list(stack["thresholds"]).index(stack["threshold"])
    cells_at_t = challenge.thinned_cell_labels(noisy > stack["threshold"])
    truth = challenge._connected_components(mask, connectivity=1)
    expected = challenge.segmentation_scores(cells_at_t, truth)["v_rand"]
    assert rows[1]["v_rand"] == pytest.approx(expected)
    assert rows[1]["v_rand"] == pytest.approx(stack["v_rand_slices"][1, column])
    assert (rows[0]["v_rand"] + rows[1]["v_rand"]) / 2 == pytest.approx(stack["v_rand"])
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
    with pytest.raises(ValueError, match="same shape"):
        metrics.evaluate_segmentation(np.stack([mask, mask]).astype(float), None, mask[None])
    with pytest.raises(ValueError, match="0/255: use mask // 255"):
        metrics.evaluate_segmentation(mask[None].astype(float), None, mask[None] * 255)


def test_format_table_lays_out_every_row():
    rows = [{"image": 0, "v_rand": 0.5, "v_info": math.nan}, {"image": "mean", "v_rand": 0.25, "v_info": 1.0}]
    lines = metrics.format_table(rows, digits=2).splitlines()
    assert len(lines) == 4 and lines[0].split() == ["image", "v_rand", "v_info"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["0", "0.50", "nan"] and lines[3].split() == ["mean", "0.25", "1.00"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


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

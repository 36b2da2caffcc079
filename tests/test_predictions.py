"""Tests of unet_tutorial.predictions: 8-bit PNGs and the ISBI TIFF stack."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_tutorial import predictions


def read_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L"
        return np.asarray(image)


@pytest.fixture
def probs():
    rng = np.random.default_rng(0)
    return rng.random((3, 12, 10)).astype(np.float32)


# --------------------------------------------------------------------------- conversions


def test_to_uint8_known_values():
    values = np.array([0.0, 0.2, 0.5, 1.0, 1 + 1e-7, -1e-7], dtype=np.float32)
    np.testing.assert_array_equal(predictions.to_uint8(values), [0, 51, 128, 255, 255, 0])
    assert predictions.to_uint8(values).dtype == np.uint8


def test_binarize_is_strictly_above_threshold():
    prob = np.array([0.1, 0.5, 0.50001, 0.9])
    np.testing.assert_array_equal(predictions.binarize(prob, 0.5), [False, False, True, True])
    np.testing.assert_array_equal(predictions.binarize(prob, 0.0), [True] * 4)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 127"):
        predictions.binarize(prob, 127)  # chapter 5 prints this message


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.array([[0.2, np.nan]]), ValueError, "^prob contains NaN or infinite values; check the model's"),
        (np.array([0.2, 3.0]), ValueError, "sigmoid"),
        (np.array([-0.5, 0.2]), ValueError, "in \\[0, 1\\]"),
        (np.array([0, 255], np.uint8), ValueError, "divide 8-bit images by 255"),
    ],
)
def test_probabilities_are_checked(bad, error, message):
    with pytest.raises(error, match=message):
        predictions.to_uint8(bad)


# --------------------------------------------------------------------------- PNGs


def test_save_predictions_round_trip(tmp_path, probs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. skimage's "low contrast image" must not appear
        written = predictions.save_predictions(probs, tmp_path / "out", threshold=0.4)
    assert [p.name for p in written] == [
        "000_prob.png",
        "000_mask.png",
        "001_prob.png",
        "001_mask.png",
        "002_prob.png",
        "002_mask.png",
    ]
    for i, prob in enumerate(probs):
        np.testing.assert_array_equal(
            read_png(tmp_path / "out" / f"{i:03d}_prob.png"), np.round(prob.astype(np.float64) * 255)
        )
        np.testing.assert_array_equal(
            read_png(tmp_path / "out" / f"{i:03d}_mask.png"), np.where(prob > 0.4, 255, 0)
        )


def test_save_predictions_accepts_channel_axis_lists_and_names(tmp_path, probs):
    predictions.save_predictions(probs[..., None], tmp_path / "a", names=["x", "y", "z"])
    assert sorted(os.listdir(tmp_path / "a")) == [
        "x_mask.png",
        "x_prob.png",
        "y_mask.png",
        "y_prob.png",
        "z_mask.png",
        "z_prob.png",
    ]
    maps = [probs[0], probs[1][:5, :7]]  # different sizes, e.g. a folder of mixed images
    predictions.save_predictions(maps, tmp_path / "b", names=["big", "small"])
    assert read_png(tmp_path / "b" / "small_prob.png").shape == (5, 7)
    predictions.save_predictions(probs[0], tmp_path / "c")  # a single (H, W) map
    assert sorted(os.listdir(tmp_path / "c")) == ["000_mask.png", "000_prob.png"]


@pytest.mark.parametrize(
    "names, message",
    [
        (["a", "a", "b"], "3 different names"),
        (["a"], "3 different names"),
    ],
)
def test_save_predictions_checks_names(tmp_path, probs, names, message):
    with pytest.raises(ValueError, match=message):
        predictions.save_predictions(probs, tmp_path, names=names)
    assert not list(tmp_path.iterdir())


def test_save_predictions_rejects_multichannel_arrays(tmp_path, probs):
    with pytest.raises(ValueError, match="one class's channel"):
        predictions.save_predictions(np.stack([probs] * 3, axis=-1), tmp_path)


def test_save_predictions_never_overwrites_unless_asked(tmp_path, probs):
    predictions.save_predictions(probs, tmp_path)
    (tmp_path / "001_mask.png").write_bytes(b"user data")
    (tmp_path / "000_prob.png").unlink()
    with pytest.raises(FileExistsError, match="001_mask.png"):
        predictions.save_predictions(probs, tmp_path)
    assert not (tmp_path / "000_prob.png").exists(), "nothing may be written when refusing"
    assert (tmp_path / "001_mask.png").read_bytes() == b"user data"
    predictions.save_predictions(probs, tmp_path, overwrite=True)
    np.testing.assert_array_equal(read_png(tmp_path / "001_mask.png"), np.where(probs[1] > 0.5, 255, 0))


def test_prediction_paths_match_saved_files(tmp_path, probs):
    written = predictions.save_predictions(probs, tmp_path, names=["a", "b", "c"])
    pairs = predictions.prediction_paths(tmp_path, ["a", "b", "c"])
    assert [p for pair in pairs for p in pair] == written


# --------------------------------------------------------------------------- ISBI TIFF


def test_isbi_submission_round_trip(tmp_path, probs):
    path = predictions.save_isbi_submission(probs, tmp_path / "sub" / "isbi.tif")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == len(probs)
        stack = tif.asarray()
    assert stack.dtype == np.float32 and stack.shape == probs.shape
    np.testing.assert_array_equal(stack, probs)


def test_isbi_submission_refuses_overwrite_and_bad_input(tmp_path, probs):
    path = tmp_path / "isbi.tif"
    path.write_bytes(b"earlier submission")
    with pytest.raises(FileExistsError, match="isbi.tif"):
        predictions.save_isbi_submission(probs, path)
    assert path.read_bytes() == b"earlier submission"
    predictions.save_isbi_submission(probs, path, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(path), probs)
    with pytest.raises(ValueError, match=".tif"):
        predictions.save_isbi_submission(probs, tmp_path / "isbi.png")
    with pytest.raises(ValueError, match="one size"):
        predictions.save_isbi_submission([probs[0], probs[1][:4]], tmp_path / "mixed.tif")
    with pytest.raises(ValueError, match="probabilities"):
        predictions.save_isbi_submission(probs * 255, tmp_path / "scaled.tif")


def test_isbi_polarity_matches_the_challenge_evaluation(tmp_path):
    """The saved stack, scored the challenge's way against its labels, is perfect; inverted it is not."""
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if not root:
        pytest.skip("set UNET_TUTORIAL_DATA to the folder holding isbi2012/ to run this test on real labels")
    from unet_tutorial import challenge

    labels = tifffile.imread(Path(root) / "isbi2012" / "train-labels.tif")[:2]
    cells = (labels == 255).astype(np.float32)
    path = predictions.save_isbi_submission(cells, tmp_path / "perfect.tif")
    saved = tifffile.imread(path)
    mask = (labels == 255).astype(np.uint8)
    assert challenge.isbi_scores(saved, mask)["v_rand"] == pytest.approx(1.0)
    assert challenge.isbi_scores(1 - saved, mask)["v_rand"] < 0.5


@pytest.mark.parametrize("bad", ["../b", "sub/b", "", ".."])
def test_names_with_folders_are_refused_and_nothing_is_written(tmp_path, bad):
    with pytest.raises(ValueError, match="plain file names"):
        predictions.save_predictions(np.zeros((1, 4, 4)), tmp_path / "out", names=[bad])
    assert not (tmp_path / "b_prob.png").exists() and not (tmp_path / "out").exists()

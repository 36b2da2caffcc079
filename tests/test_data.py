"""Tests of unet_tutorial.data: finding the ISBI 2012 stacks on disk, the split, the fallback, scaling.

Tests on the real stacks need UNET_TUTORIAL_DATA (a folder holding isbi2012/) and are
skipped without it; the others use tiny stacks with the expected shape patched. Downloads
are tested in test_download.py.
"""

import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unet_tutorial import data, download, synthetic

SHARED_ROOT = os.environ.get("UNET_TUTORIAL_DATA")
needs_shared = pytest.mark.skipif(
    not SHARED_ROOT or not (Path(SHARED_ROOT) / "isbi2012").is_dir(),
    reason="set UNET_TUTORIAL_DATA to a folder holding isbi2012/ to test the real stacks",
)
TINY_SHAPE = (3, 8, 8)
FILES = download.ISBI2012_FILES


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache, no data folder from the environment, no mirror that answers."""
    monkeypatch.setenv("UNET_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNET_TUTORIAL_DATA", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("UNET_TUTORIAL_MIRRORS", f"http://127.0.0.1:{sock.getsockname()[1]}/")
    return tmp_path / "cache" / "isbi2012"


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(download, "ISBI2012_SHAPE", TINY_SHAPE)


def write_tiny_stacks(folder, marker=0):
    """Valid tiny stacks; the volume's first pixel is ``marker`` to tell copies apart."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(marker)
    volume = rng.integers(0, 256, TINY_SHAPE, dtype=np.uint8)
    volume.flat[0] = marker
    labels = np.where(rng.random(TINY_SHAPE) < 0.7, 255, 0).astype(np.uint8)
    test = rng.integers(0, 256, TINY_SHAPE, dtype=np.uint8)
    for name, array in zip(FILES, (volume, labels, test)):
        tifffile.imwrite(folder / name, array, photometric="minisblack")
    return volume, labels, test


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- #
# The real stacks
# --------------------------------------------------------------------------- #


@needs_shared
def test_shared_copy_loads_with_right_shapes_values_and_pixels():
    dataset = data.load_isbi2012(SHARED_ROOT, download=False)
    assert dataset.source == Path(SHARED_ROOT) / "isbi2012"
    for array in (dataset.train_images, dataset.train_masks, dataset.test_images):
        assert array.shape == (30, 512, 512) and array.dtype == np.uint8
    stored = tifffile.imread(Path(SHARED_ROOT) / "isbi2012" / "train-labels.tif")
    np.testing.assert_array_equal(dataset.train_masks, (stored == 255).astype(np.uint8))
    assert 0.15 < 1 - dataset.train_masks.mean() < 0.30  # about 22 % membrane
    assert download.verify_pixels(dataset) == {name: True for name in FILES}
    assert not dataset.is_synthetic and dataset.note == ""


@needs_shared
def test_shared_copy_found_through_environment_variable(monkeypatch):
    monkeypatch.setenv("UNET_TUTORIAL_DATA", SHARED_ROOT)
    assert data.load_isbi2012(download=False).source == Path(SHARED_ROOT) / "isbi2012"


@needs_shared
def test_split_of_real_data_is_slices_0_to_24_and_25_to_29():
    dataset = data.load_isbi2012(SHARED_ROOT, download=False)
    x_train, y_train, x_val, y_val = data.split_isbi2012(dataset)
    np.testing.assert_array_equal(x_train, dataset.train_images[:25])
    np.testing.assert_array_equal(y_val, dataset.train_masks[25:])
    assert x_val.shape == y_val.shape == (5, 512, 512) and y_train.shape == (25, 512, 512)


@needs_shared
def test_fallback_returns_real_data_when_available():
    dataset = data.load_isbi2012_or_synthetic(SHARED_ROOT, download=False)
    assert not dataset.is_synthetic and dataset.note == ""


# --------------------------------------------------------------------------- #
# Search order and checks on disk (tiny stacks)
# --------------------------------------------------------------------------- #


def test_search_order_is_data_dir_then_environment_then_cache(tiny, tmp_path, monkeypatch, cache):
    in_data_dir = write_tiny_stacks(tmp_path / "mine", marker=1)[0]
    in_env = write_tiny_stacks(tmp_path / "env" / "isbi2012", marker=2)[0]
    in_cache = write_tiny_stacks(cache, marker=3)[0]
    monkeypatch.setenv("UNET_TUTORIAL_DATA", str(tmp_path / "env"))
    first = data.load_isbi2012(tmp_path / "mine", download=False)
    assert first.source == tmp_path / "mine"
    np.testing.assert_array_equal(first.train_images, in_data_dir)
    second = data.load_isbi2012(download=False)
    assert second.source == tmp_path / "env" / "isbi2012"
    np.testing.assert_array_equal(second.train_images, in_env)
    monkeypatch.delenv("UNET_TUTORIAL_DATA")
    third = data.load_isbi2012(download=False)
    assert third.source == cache
    np.testing.assert_array_equal(third.train_images, in_cache)


def test_data_dir_may_be_the_parent_of_isbi2012_and_labels_become_0_1(tiny, tmp_path):
    volume, labels, test = write_tiny_stacks(tmp_path / "root" / "isbi2012", marker=4)
    dataset = data.load_isbi2012(tmp_path / "root", download=False)
    assert dataset.source == tmp_path / "root" / "isbi2012"
    np.testing.assert_array_equal(dataset.train_masks, labels // 255)
    np.testing.assert_array_equal(dataset.test_images, test)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        data.load_isbi2012(tmp_path / "nope")


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "non_binary_labels", "not_a_tiff"])
def test_corrupt_file_in_data_dir_is_named_and_left_untouched(tiny, tmp_path, damage):
    folder = tmp_path / "mine"
    write_tiny_stacks(folder)
    target = folder / ("train-labels.tif" if damage == "non_binary_labels" else "train-volume.tif")
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "wrong_shape":
        tifffile.imwrite(target, np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    elif damage == "non_binary_labels":
        tifffile.imwrite(target, np.full(TINY_SHAPE, 7, np.uint8), photometric="minisblack")
    else:
        target.write_text("not an image")
    before = snapshot(folder)
    with pytest.raises(download.CorruptFileError) as info:
        data.load_isbi2012(folder)
    message = str(info.value)
    assert str(target) in message and "expected" in message and "found" in message and "Replace it" in message
    assert snapshot(folder) == before


def test_corrupt_file_in_cache_says_delete_it_and_is_kept(tiny, cache):
    write_tiny_stacks(cache)
    damaged = cache / "test-volume.tif"
    damaged.write_bytes(damaged.read_bytes()[:-60])
    before = snapshot(cache)
    with pytest.raises(download.CorruptFileError, match="Delete it") as info:
        data.load_isbi2012()
    assert str(damaged) in str(info.value)
    assert snapshot(cache) == before


# --------------------------------------------------------------------------- #
# Data set object, split, fallback
# --------------------------------------------------------------------------- #


def numbered_dataset(n=30):
    """Slice i of every stack is filled with i (train) or 100 + i (masks)."""
    ramp = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    return data.Isbi2012(ramp, ramp + 100, ramp, source=None)


def test_split_keeps_order_and_returns_copies():
    dataset = numbered_dataset()
    x_train, y_train, x_val, y_val = data.split_isbi2012(dataset)
    assert x_train[:, 0, 0].tolist() == list(range(25))
    assert x_val[:, 0, 0].tolist() == list(range(25, 30))
    assert y_val[:, 0, 0].tolist() == list(range(125, 130))
    assert len(y_train) == 25
    x_val[:] = 0
    assert dataset.train_images[29, 0, 0] == 29
    assert data.split_isbi2012(dataset, n_val=2)[2][:, 0, 0].tolist() == [28, 29]


@pytest.mark.parametrize("n_val", [0, 30, -1, 2.5, True])
def test_split_rejects_bad_n_val(n_val):
    with pytest.raises(ValueError, match="n_val"):
        data.split_isbi2012(numbered_dataset(), n_val=n_val)


def test_dataset_is_frozen_with_a_short_repr():
    dataset = numbered_dataset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.note = "x"
    assert len(repr(dataset)) < 200 and "(30, 4, 4)" in repr(dataset)


def test_fallback_to_synthetic_warns_and_says_why_and_how(cache):
    with pytest.warns(UserWarning, match="SYNTHETIC") as warned:
        dataset = data.load_isbi2012_or_synthetic(n_synthetic=2, seed=3)
    assert str(warned[0].message) == dataset.note
    assert dataset.is_synthetic and dataset.source is None
    for expected in ("SYNTHETIC", "Why:", str(cache), "no answer", "To fix"):
        assert expected in dataset.note
    images, masks = synthetic.synthetic_membranes(2, 512, seed=3)
    np.testing.assert_array_equal(dataset.train_images, images)
    np.testing.assert_array_equal(dataset.train_masks, masks)
    np.testing.assert_array_equal(dataset.test_images, synthetic.synthetic_test_stack(2, 512, seed=3))
    assert not np.array_equal(dataset.test_images, images)
    assert download.verify_pixels(dataset) == {name: False for name in FILES}


def test_fallback_on_a_damaged_file_says_which(tiny, tmp_path):
    folder = tmp_path / "mine"
    write_tiny_stacks(folder)
    (folder / "train-volume.tif").write_text("not an image")
    with pytest.warns(UserWarning, match="train-volume.tif"):
        assert data.load_isbi2012_or_synthetic(folder, n_synthetic=1).is_synthetic


# --------------------------------------------------------------------------- #
# Scaling
# --------------------------------------------------------------------------- #


def test_to_float_known_values():
    np.testing.assert_allclose(data.to_float(np.array([0, 51, 255], np.uint8)), [0, 0.2, 1], atol=1e-7)
    np.testing.assert_allclose(data.to_float(np.array([0, 65535], np.uint16)), [0, 1])
    np.testing.assert_allclose(data.to_float(np.array([-127, 127], np.int8)), [-1, 1])
    np.testing.assert_array_equal(data.to_float(np.array([True, False])), [1, 0])
    floats = data.to_float(np.array([3.5, -2.0]))
    assert floats.dtype == np.float32 and floats.tolist() == [3.5, -2.0]
    assert data.to_float(np.zeros((2, 3), np.uint8)).dtype == np.float32


def test_percentile_normalize_known_values():
    ramp = np.arange(101, dtype=np.uint16)  # percentile p of 0..100 is p
    result = data.percentile_normalize(ramp, low=10, high=90)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, np.clip((ramp.astype(float) - 10) / 80, 0, 1), atol=1e-6)
    np.testing.assert_allclose(data.percentile_normalize(ramp * 100.0, 0, 100), ramp / 100, atol=1e-6)
    assert data.percentile_normalize(np.full((4, 4), 7)).tolist() == np.zeros((4, 4)).tolist()


@pytest.mark.parametrize("low, high", [(50, 50), (-1, 99), (10, 101), (90, 10)])
def test_percentile_normalize_rejects_bad_percentiles(low, high):
    with pytest.raises(ValueError):
        data.percentile_normalize(np.arange(10), low, high)


def test_percentile_normalize_rejects_nan_and_infinity():
    with pytest.raises(ValueError, match="NaN"):
        data.percentile_normalize(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="nan_to_num"):
        data.percentile_normalize(np.array([0.0, np.inf]))

"""Tests of unet_tutorial.data.

Tests on the real ISBI 2012 stacks need UNET_TUTORIAL_DATA (a folder holding
isbi2012/) and are skipped without it. Download tests run against a local HTTP
server on 127.0.0.1, never the internet; most use tiny fake stacks with the
expected shape patched to (3, 8, 8).
"""

import dataclasses
import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from unet_tutorial import data

SHARED_ROOT = os.environ.get("UNET_TUTORIAL_DATA")
needs_shared = pytest.mark.skipif(
    not SHARED_ROOT or not (Path(SHARED_ROOT) / "isbi2012").is_dir(),
    reason="set UNET_TUTORIAL_DATA to a folder holding isbi2012/ to test the real stacks",
)
TINY_SHAPE = (3, 8, 8)
FILES = data.ISBI2012_FILES


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Private cache, no data folder from the environment, local traffic never proxied."""
    monkeypatch.setenv("UNET_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNET_TUTORIAL_DATA", raising=False)
    monkeypatch.delenv("UNET_TUTORIAL_MIRRORS", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path / "cache" / "isbi2012"


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(data, "ISBI2012_SHAPE", TINY_SHAPE)


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


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def snapshot(folder):
    """File name -> (bytes hash, mtime) for every file below folder."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requested.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (root folder, base URL, requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    requested = []
    handler = type("Handler", (_QuietHandler,), {"requested": requested})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", requested
    httpd.shutdown()
    httpd.server_close()


def publish_mirrors(root, source_folder):
    """good/ = copies; truncated/ = first half; tampered/ = same length, bytes flipped."""
    for kind in ("good", "truncated", "tampered"):
        (root / kind).mkdir()
    for name in FILES:
        payload = (source_folder / name).read_bytes()
        (root / "good" / name).write_bytes(payload)
        (root / "truncated" / name).write_bytes(payload[: len(payload) // 2])
        flipped = bytearray(payload)
        for i in range(len(flipped) // 2, len(flipped) // 2 + 16):
            flipped[i] ^= 0xFF
        (root / "tampered" / name).write_bytes(bytes(flipped))
    return {name: md5_of(source_folder / name) for name in FILES}


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


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
    assert set(np.unique(dataset.train_masks)) == {0, 1}
    assert 0.15 < 1 - dataset.train_masks.mean() < 0.30  # about 22 % membrane
    assert data.verify_pixels(dataset) == {name: True for name in FILES}
    assert not dataset.is_synthetic and dataset.note == ""


@needs_shared
def test_shared_copy_found_through_environment_variable(monkeypatch):
    monkeypatch.setenv("UNET_TUTORIAL_DATA", SHARED_ROOT)
    assert data.load_isbi2012(download=False).source == Path(SHARED_ROOT) / "isbi2012"


@needs_shared
def test_download_of_real_stacks_falls_back_past_a_truncated_mirror(server, isolated_env):
    root, base, _ = server
    md5 = publish_mirrors(root, Path(SHARED_ROOT) / "isbi2012")
    dataset = data.load_isbi2012(mirrors=[base + "truncated/", base + "good/"], md5=md5)
    assert dataset.source == isolated_env
    assert data.verify_pixels(dataset) == {name: True for name in FILES}
    assert sorted(p.name for p in isolated_env.iterdir()) == sorted(FILES)


@needs_shared
def test_split_of_real_data_is_slices_0_to_24_and_25_to_29():
    dataset = data.load_isbi2012(SHARED_ROOT, download=False)
    x_train, y_train, x_val, y_val = data.split_isbi2012(dataset)
    np.testing.assert_array_equal(x_train, dataset.train_images[:25])
    np.testing.assert_array_equal(y_val, dataset.train_masks[25:])
    assert x_val.shape == y_val.shape == (5, 512, 512) and y_train.shape == (25, 512, 512)


# --------------------------------------------------------------------------- #
# Search order and on-disk checks (tiny stacks)
# --------------------------------------------------------------------------- #


def test_search_order_is_data_dir_then_environment_then_cache(tiny, tmp_path, monkeypatch, isolated_env):
    in_data_dir = write_tiny_stacks(tmp_path / "mine", marker=1)[0]
    in_env = write_tiny_stacks(tmp_path / "env" / "isbi2012", marker=2)[0]
    in_cache = write_tiny_stacks(isolated_env, marker=3)[0]
    monkeypatch.setenv("UNET_TUTORIAL_DATA", str(tmp_path / "env"))

    first = data.load_isbi2012(tmp_path / "mine", download=False)
    assert first.source == tmp_path / "mine"
    np.testing.assert_array_equal(first.train_images, in_data_dir)

    second = data.load_isbi2012(download=False)
    assert second.source == tmp_path / "env" / "isbi2012"
    np.testing.assert_array_equal(second.train_images, in_env)

    monkeypatch.delenv("UNET_TUTORIAL_DATA")
    third = data.load_isbi2012(download=False)
    assert third.source == isolated_env
    np.testing.assert_array_equal(third.train_images, in_cache)


def test_data_dir_may_be_the_parent_of_isbi2012(tiny, tmp_path):
    volume, labels, test = write_tiny_stacks(tmp_path / "root" / "isbi2012", marker=4)
    dataset = data.load_isbi2012(tmp_path / "root", download=False)
    assert dataset.source == tmp_path / "root" / "isbi2012"
    np.testing.assert_array_equal(dataset.train_masks, labels // 255)
    np.testing.assert_array_equal(dataset.test_images, test)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        data.load_isbi2012(tmp_path / "nope")


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "non_binary_labels", "not_a_tiff"])
def test_corrupt_file_in_data_dir_is_named_and_left_untouched(tiny, tmp_path, server, damage):
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
    _, base, requested = server
    with pytest.raises(data.CorruptFileError) as info:
        data.load_isbi2012(folder, mirrors=[base])
    message = str(info.value)
    assert str(target) in message and "expected" in message and "found" in message
    assert "Replace it" in message
    assert snapshot(folder) == before
    assert requested == []  # a damaged user file does not trigger a download


def test_corrupt_file_in_cache_says_delete_it_and_is_kept(tiny, isolated_env):
    write_tiny_stacks(isolated_env)
    damaged = isolated_env / "test-volume.tif"
    damaged.write_bytes(damaged.read_bytes()[:-60])
    before = snapshot(isolated_env)
    with pytest.raises(data.CorruptFileError, match="Delete it") as info:
        data.load_isbi2012()
    assert str(damaged) in str(info.value)
    assert snapshot(isolated_env) == before


# --------------------------------------------------------------------------- #
# Downloads from a local server (tiny stacks)
# --------------------------------------------------------------------------- #


def test_tampered_first_mirror_falls_back_to_the_next(tiny, tmp_path, server, isolated_env):
    root, base, requested = server
    volume, labels, test = write_tiny_stacks(tmp_path / "original", marker=5)
    md5 = publish_mirrors(root, tmp_path / "original")
    dataset = data.load_isbi2012(mirrors=[base + "tampered/", base + "good/"], md5=md5)
    np.testing.assert_array_equal(dataset.train_images, volume)
    np.testing.assert_array_equal(dataset.train_masks, labels // 255)
    np.testing.assert_array_equal(dataset.test_images, test)
    assert {name: md5_of(isolated_env / name) for name in FILES} == md5
    assert requested[:2] == ["/tampered/train-volume.tif", "/good/train-volume.tif"]


def test_all_bad_mirrors_give_clear_error_and_leave_nothing_in_cache(tiny, tmp_path, server, isolated_env):
    root, base, _ = server
    write_tiny_stacks(tmp_path / "original")
    md5 = publish_mirrors(root, tmp_path / "original")
    mirrors = [base + "truncated/", base + "tampered/"]
    with pytest.raises(data.DataUnavailableError) as info:
        data.load_isbi2012(mirrors=mirrors, md5=md5)
    message = str(info.value)
    assert mirrors[0] + "train-volume.tif" in message and mirrors[1] + "train-volume.tif" in message
    assert "hash" in message.lower()
    assert not isolated_env.exists() or list(isolated_env.iterdir()) == []


def test_no_network_and_no_data_lists_folders_and_urls(tmp_path, isolated_env):
    (tmp_path / "empty").mkdir()
    offline = closed_port_url()
    with pytest.raises(data.DataUnavailableError) as info:
        data.load_isbi2012(tmp_path / "empty", mirrors=[offline])
    message = str(info.value)
    for expected in (str(tmp_path / "empty"), str(isolated_env), "UNET_TUTORIAL_DATA", offline, *FILES):
        assert expected in message
    assert not isolated_env.exists() or list(isolated_env.iterdir()) == []


def test_download_false_never_contacts_a_mirror(server, isolated_env):
    _, base, requested = server
    with pytest.raises(data.DataUnavailableError, match="download=False"):
        data.load_isbi2012(download=False, mirrors=[base])
    assert requested == []


def test_downloads_go_to_cache_never_into_a_partial_data_dir(tiny, tmp_path, server, isolated_env):
    root, base, _ = server
    write_tiny_stacks(tmp_path / "original", marker=6)
    md5 = publish_mirrors(root, tmp_path / "original")
    partial = tmp_path / "partial"
    write_tiny_stacks(partial, marker=7)
    (partial / "test-volume.tif").unlink()
    before = snapshot(partial)
    dataset = data.load_isbi2012(partial, mirrors=[base + "good/"], md5=md5)
    assert dataset.source == isolated_env
    assert dataset.train_images.flat[0] == 6
    assert snapshot(partial) == before


def test_only_files_missing_from_cache_are_downloaded(tiny, tmp_path, server, isolated_env):
    root, base, requested = server
    write_tiny_stacks(tmp_path / "original", marker=8)
    md5 = publish_mirrors(root, tmp_path / "original")
    isolated_env.mkdir(parents=True)
    (isolated_env / "train-labels.tif").write_bytes((tmp_path / "original" / "train-labels.tif").read_bytes())
    data.load_isbi2012(mirrors=[base + "good/"], md5=md5)
    assert sorted(requested) == ["/good/test-volume.tif", "/good/train-volume.tif"]


def test_corrupt_cached_file_is_reported_before_downloading_the_rest(tiny, server, isolated_env):
    _, base, requested = server
    isolated_env.mkdir(parents=True)
    damaged = isolated_env / "train-labels.tif"
    damaged.write_bytes(b"II*\x00 partial download")
    before = snapshot(isolated_env)
    with pytest.raises(data.CorruptFileError, match="train-labels.tif"):
        data.load_isbi2012(mirrors=[base])
    assert requested == [] and snapshot(isolated_env) == before


def test_mirrors_can_come_from_the_environment(tiny, tmp_path, server, monkeypatch):
    root, base, requested = server
    write_tiny_stacks(tmp_path / "original", marker=9)
    md5 = publish_mirrors(root, tmp_path / "original")
    monkeypatch.setenv("UNET_TUTORIAL_MIRRORS", f"{closed_port_url()}, {base}good")
    assert data.load_isbi2012(md5=md5).train_images.flat[0] == 9
    assert len(requested) == 3


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


def test_verify_pixels_rejects_other_data():
    assert data.verify_pixels(numbered_dataset()) == {name: False for name in FILES}
    with pytest.raises(TypeError):
        data.verify_pixels(np.zeros((30, 512, 512), np.uint8))


def test_fallback_to_synthetic_says_why_and_how(isolated_env):
    offline = closed_port_url()
    dataset = data.load_isbi2012_or_synthetic(n_synthetic=2, seed=3, mirrors=[offline])
    assert dataset.is_synthetic and dataset.source is None
    assert "SYNTHETIC" in dataset.note and str(isolated_env) in dataset.note and offline in dataset.note
    images, masks = data.synthetic_membranes(2, 512, seed=3)
    np.testing.assert_array_equal(dataset.train_images, images)
    np.testing.assert_array_equal(dataset.train_masks, masks)
    assert dataset.test_images.shape == (2, 512, 512)
    assert not np.array_equal(dataset.test_images, images)
    assert data.verify_pixels(dataset) == {name: False for name in FILES}


@needs_shared
def test_fallback_returns_real_data_when_available():
    dataset = data.load_isbi2012_or_synthetic(SHARED_ROOT, download=False)
    assert not dataset.is_synthetic and dataset.note == ""
    assert dataset.train_images.shape == (30, 512, 512)


# --------------------------------------------------------------------------- #
# Synthetic membranes
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def synthetic():
    return data.synthetic_membranes(3, size=256, seed=11)


def test_synthetic_shapes_dtypes_and_binary_masks(synthetic):
    images, masks = synthetic
    assert images.shape == masks.shape == (3, 256, 256)
    assert images.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1}
    assert images.std() > 20  # not a flat image


def test_synthetic_membrane_fraction_and_contrast(synthetic):
    images, masks = synthetic
    for image, mask in zip(images, masks):
        assert 0.12 < 1 - mask.mean() < 0.32
        assert image[mask == 1].mean() - image[mask == 0].mean() > 30  # membranes are dark


def test_synthetic_cells_are_many_components_of_varied_size(synthetic):
    for mask in synthetic[1]:
        labels, _ = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        big = sizes[sizes >= 50]
        assert len(big) >= 10
        assert big.max() > 3 * np.median(big)


def test_synthetic_is_reproducible_and_seed_dependent(synthetic):
    again = data.synthetic_membranes(3, size=256, seed=11)
    np.testing.assert_array_equal(again[0], synthetic[0])
    np.testing.assert_array_equal(again[1], synthetic[1])
    other = data.synthetic_membranes(1, size=256, seed=12)
    assert (other[1][0] != synthetic[1][0]).mean() > 0.1
    prefix = data.synthetic_membranes(2, size=256, seed=11)  # slice i does not depend on n
    np.testing.assert_array_equal(prefix[0], synthetic[0][:2])


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": 2, "size": 8}, {"n": 2, "seed": -3}, {"n": 1.5}])
def test_synthetic_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        data.synthetic_membranes(**kwargs)


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #


def test_to_float_known_values():
    np.testing.assert_allclose(data.to_float(np.array([0, 51, 255], np.uint8)), [0, 0.2, 1], atol=1e-7)
    np.testing.assert_allclose(data.to_float(np.array([0, 65535], np.uint16)), [0, 1])
    np.testing.assert_allclose(data.to_float(np.array([-127, 127], np.int8)), [-1, 1])
    np.testing.assert_array_equal(data.to_float(np.array([True, False])), [1, 0])
    floats = data.to_float(np.array([3.5, -2.0]))
    assert floats.dtype == np.float32 and floats.tolist() == [3.5, -2.0]
    assert data.to_float(np.zeros((2, 3), np.uint8)).dtype == np.float32
    with pytest.raises(TypeError):
        data.to_float(np.array(["a"]))


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


def test_percentile_normalize_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        data.percentile_normalize(np.array([0.0, np.nan, 1.0]))


# --------------------------------------------------------------------------- #
# Palettes
# --------------------------------------------------------------------------- #


def test_camvid_palette_has_12_distinct_classes():
    assert len(data.CAMVID_PALETTE) == 12
    assert list(data.CAMVID_PALETTE)[0] == "Sky" and list(data.CAMVID_PALETTE)[-1] == "Unlabelled"
    assert len(set(data.CAMVID_PALETTE.values())) == 12


def test_mask_to_classes_and_back_round_trip():
    classes = np.random.default_rng(0).integers(0, 12, (5, 7))
    rgb = data.classes_to_rgb(classes, data.CAMVID_PALETTE)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[classes == 0][0]) == data.CAMVID_PALETTE["Sky"]
    np.testing.assert_array_equal(data.mask_to_classes(rgb, data.CAMVID_PALETTE), classes)
    palette = np.array([[0, 0, 0], [255, 255, 255], [10, 20, 30]])
    mask = np.array([[[10, 20, 30], [0, 0, 0], [255, 255, 255]]], np.uint8)
    assert data.mask_to_classes(mask, palette).tolist() == [[2, 0, 1]]


def test_unknown_colour_is_reported_with_pixel_count():
    mask = data.classes_to_rgb(np.zeros((4, 4), int), data.CAMVID_PALETTE)
    mask[0, :3] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\) in 3 pixels"):
        data.mask_to_classes(mask, data.CAMVID_PALETTE)


def test_palette_and_class_errors():
    with pytest.raises(ValueError, match="same colour twice"):
        data.mask_to_classes(np.zeros((2, 2, 3), np.uint8), [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="palette"):
        data.mask_to_classes(np.zeros((2, 2, 3), np.uint8), [[0, 0]])
    with pytest.raises(ValueError, match="12 colours"):
        data.classes_to_rgb(np.array([12]), data.CAMVID_PALETTE)
    with pytest.raises(TypeError):
        data.classes_to_rgb(np.array([0.5]), data.CAMVID_PALETTE)


# --------------------------------------------------------------------------- #
# load_folder
# --------------------------------------------------------------------------- #


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 and array.shape[-1] == 3 else "minisblack")
    else:
        Image.fromarray(array).save(path, **kwargs)


def squares(height=16, width=16, offset=0):
    mask = np.zeros((height, width), np.uint8)
    mask[offset : offset + 8, offset : offset + 8] = 1
    return mask


def test_gray_png_with_0_255_masks_sorted_naturally(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for stem in ("10", "2", "1"):
        images[stem] = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        save(tmp_path / "img" / f"{stem}.png", images[stem])
        save(tmp_path / "msk" / f"{stem}.png", squares(offset=int(stem) % 5) * 255)
    (tmp_path / "img" / "notes.txt").write_text("ignored")
    loaded = data.load_folder(tmp_path / "img", tmp_path / "msk")
    assert loaded.names == ["1", "2", "10"]
    assert loaded.images.shape == (3, 16, 16) and loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images[2], images["10"])
    np.testing.assert_array_equal(loaded.masks[2], squares(offset=0))
    np.testing.assert_array_equal(loaded.masks[1], squares(offset=2))
    assert loaded.masks.dtype == np.uint8


def test_rgb_png_images_with_0_1_tiff_masks(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    save(tmp_path / "img" / "a.png", rgb)
    save(tmp_path / "msk" / "a.tif", squares(12, 10))
    images, masks, names = data.load_folder(tmp_path / "img", tmp_path / "msk")
    assert images.shape == (1, 12, 10, 3) and names == ["a"]
    np.testing.assert_array_equal(images[0], rgb)
    np.testing.assert_array_equal(masks[0], squares(12, 10))


def test_mixed_gray_and_rgb_and_as_gray(tmp_path):
    gray = np.full((8, 8), 200, np.uint8)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # pure red, half transparent
    save(tmp_path / "a.png", gray)
    save(tmp_path / "b.png", rgba)
    auto = data.load_folder(tmp_path).images
    assert auto.shape == (2, 8, 8, 3)
    assert (auto[0] == 200).all() and auto[1, 0, 0].tolist() == [255, 0, 0]
    as_gray = data.load_folder(tmp_path, as_gray=True).images
    pillow_gray = np.asarray(Image.new("RGB", (1, 1), (255, 0, 0)).convert("L"))[0, 0]
    assert as_gray.shape == (2, 8, 8) and abs(int(as_gray[1, 0, 0]) - int(pillow_gray)) <= 1
    assert data.load_folder(tmp_path, as_gray=False).images.shape == (2, 8, 8, 3)


def test_different_sizes_give_lists_and_16_bit_is_kept(tmp_path):
    big = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    save(tmp_path / "img" / "big.tif", big)
    save(tmp_path / "img" / "small.png", np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    save(tmp_path / "msk" / "big.png", np.zeros((20, 30), np.uint8))
    save(tmp_path / "msk" / "small.png", squares(8, 8) * 255)
    images, masks, names = data.load_folder(tmp_path / "img", tmp_path / "msk")
    assert isinstance(images, list) and isinstance(masks, list) and names == ["big", "small"]
    assert images[0].dtype == images[1].dtype == np.uint16
    np.testing.assert_array_equal(images[0], big)
    assert masks[1].tolist() == squares(8, 8).tolist()


def test_palette_masks_become_class_indices(tmp_path):
    classes = np.random.default_rng(2).integers(0, 12, (16, 16))
    save(tmp_path / "img" / "x.jpg", np.zeros((16, 16, 3), np.uint8))  # JPEG images are fine
    save(tmp_path / "msk" / "x_mask.png", data.classes_to_rgb(classes, data.CAMVID_PALETTE))
    loaded = data.load_folder(tmp_path / "img", tmp_path / "msk", palette=data.CAMVID_PALETTE, mask_suffix="_mask")
    np.testing.assert_array_equal(loaded.masks[0], classes)


def test_unknown_palette_colour_names_file_colour_and_count(tmp_path):
    rgb = data.classes_to_rgb(np.zeros((8, 8), int), data.CAMVID_PALETTE)
    rgb[0, :5] = (9, 9, 9)
    save(tmp_path / "img" / "x.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "x.png", rgb)
    with pytest.raises(ValueError, match=r"x\.png.*\(9, 9, 9\) in 5 pixels"):
        data.load_folder(tmp_path / "img", tmp_path / "msk", palette=data.CAMVID_PALETTE)


def test_jpeg_binary_masks_are_thresholded_and_jpeg_colour_masks_refused(tmp_path):
    rows, cols = np.mgrid[:32, :32]
    mask = ((rows - 15.3) ** 2 + (cols - 13.7) ** 2 < 81).astype(np.uint8)  # a disk
    save(tmp_path / "img" / "m.png", np.zeros((32, 32), np.uint8))
    save(tmp_path / "msk" / "m.jpg", mask * 255, quality=75)
    stored = np.asarray(Image.open(tmp_path / "msk" / "m.jpg"))
    assert not np.isin(stored, (0, 255)).all()  # the JPEG really is lossy
    loaded = data.load_folder(tmp_path / "img", tmp_path / "msk")
    np.testing.assert_array_equal(loaded.masks[0], mask)
    with pytest.raises(ValueError, match="JPEG"):
        data.load_folder(tmp_path / "img", tmp_path / "msk", palette=data.CAMVID_PALETTE)


def test_unpaired_files_are_named(tmp_path):
    save(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "img" / "b.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "c.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"images without a mask.*b\.png.*masks without an image.*c\.png"):
        data.load_folder(tmp_path / "img", tmp_path / "msk")


def test_size_mismatch_names_both_files(tmp_path):
    save(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "a.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r"Size mismatch: .*img.a\.png is 8x8.*msk.a\.png is 9x8"):
        data.load_folder(tmp_path / "img", tmp_path / "msk")


def test_non_binary_and_colour_masks_without_palette_are_refused(tmp_path):
    save(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8) % 3)
    with pytest.raises(ValueError, match=r"a\.png is not a binary mask"):
        data.load_folder(tmp_path / "img", tmp_path / "msk")
    save(tmp_path / "msk" / "a.png", data.classes_to_rgb(np.eye(8, dtype=int), data.CAMVID_PALETTE))
    with pytest.raises(ValueError, match="palette="):
        data.load_folder(tmp_path / "img", tmp_path / "msk")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        data.load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no PNG, TIFF or JPEG"):
        data.load_folder(tmp_path / "empty")
    save(tmp_path / "dup" / "a.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "dup" / "a.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="share the stem"):
        data.load_folder(tmp_path / "dup")
    save(tmp_path / "stack" / "s.tif", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="stack"):
        data.load_folder(tmp_path / "stack")
    with pytest.raises(TypeError):
        data.load_folder(tmp_path / "dup", as_gray="yes")

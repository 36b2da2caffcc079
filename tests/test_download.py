"""Tests of unet_tutorial.download: mirrors in both layouts, pixel checks, the cache.

Downloads come from a local HTTP server on 127.0.0.1, never the internet. It serves the
real ISBI 2012 stacks when UNET_TUTORIAL_DATA is set (a folder holding isbi2012/), which
also checks the package's checksums against them; otherwise small synthetic stacks whose
checksums the tests put in the place of the real ones.
"""

import functools
import hashlib
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_tutorial import data, download

SHARED_ROOT = os.environ.get("UNET_TUTORIAL_DATA")
HAVE_SHARED = bool(SHARED_ROOT) and (Path(SHARED_ROOT) / "isbi2012").is_dir()
FILES = download.ISBI2012_FILES
TINY_SHAPE = (10, 8, 8)
BAD = 7  # the slice the tests damage


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache, no data folder or mirrors from the environment, no proxy for 127.0.0.1."""
    monkeypatch.setenv("UNET_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNET_TUTORIAL_DATA", raising=False)
    monkeypatch.delenv("UNET_TUTORIAL_MIRRORS", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path / "cache" / "isbi2012"


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def originals():
    """{file name: stack}: the real stacks, or tiny synthetic ones (labels 0/255 as stored)."""
    if HAVE_SHARED:
        return {name: tifffile.imread(Path(SHARED_ROOT) / "isbi2012" / name) for name in FILES}
    rng = np.random.default_rng(0)
    return {
        "train-volume.tif": rng.integers(0, 256, TINY_SHAPE, dtype=np.uint8),
        "train-labels.tif": np.where(rng.random(TINY_SHAPE) < 0.7, 255, 0).astype(np.uint8),
        "test-volume.tif": rng.integers(0, 256, TINY_SHAPE, dtype=np.uint8),
    }


@pytest.fixture
def stacks(originals, monkeypatch):
    """The stacks the package takes for ISBI 2012's: their checksums replace the real ones if tiny."""
    if not HAVE_SHARED:
        monkeypatch.setattr(download, "ISBI2012_SHAPE", TINY_SHAPE)
        monkeypatch.setattr(download, "PIXEL_SHA256", {name: sha256(s) for name, s in originals.items()})
        slices = {name: [sha256(page)[:16] for page in s] for name, s in originals.items()}
        monkeypatch.setattr(download, "SLICE_SHA256", slices)
    return originals


def png_path(root, name, index):
    return root / download.PNG_FOLDERS[name] / f"{index}.png"


@pytest.fixture(scope="module")
def www(originals, tmp_path_factory):
    """Served folders: stacks/ (three TIFFs) and pngs/ (train/image, train/label, test)."""
    root = tmp_path_factory.mktemp("www")
    (root / "stacks").mkdir()
    for name, stack in originals.items():
        tifffile.imwrite(root / "stacks" / name, stack, photometric="minisblack")
        for i, page in enumerate(stack):
            png_path(root / "pngs", name, i).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(page).save(png_path(root / "pngs", name, i))
    return root


def png_variant(www, kind):
    """A copy of pngs/ (links to its files) with slice BAD of the labels missing, truncated or tampered."""
    folder = www / kind
    if not folder.exists():
        for path in (www / "pngs").rglob("*.png"):
            target = folder / path.relative_to(www / "pngs")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
        bad = png_path(folder, "train-labels.tif", BAD)
        good = np.asarray(Image.open(bad))
        bad.unlink()
        if kind == "truncated":
            payload = png_path(www / "pngs", "train-labels.tif", BAD).read_bytes()
            bad.write_bytes(payload[: len(payload) // 2])
        elif kind == "tampered":  # a valid PNG, one pixel changed
            changed = good.copy()
            changed[3, 4] = 255 - changed[3, 4]
            Image.fromarray(changed).save(bad)
    return folder


class _Handler(http.server.SimpleHTTPRequestHandler):
    requested: list

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requested.append(self.path)
        super().do_GET()


@pytest.fixture
def server(www):
    """Serve www on 127.0.0.1; yields (base URL, requested paths)."""
    requested = []
    handler = type("Handler", (_Handler,), {"requested": requested})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", requested
    httpd.shutdown()
    httpd.server_close()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def use_mirrors(monkeypatch, *bases):
    monkeypatch.setenv("UNET_TUTORIAL_MIRRORS", ", ".join(bases))


def snapshot(folder):
    """Relative path -> (content hash, mtime) of every file below folder."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_loaded(dataset, stacks, cache):
    assert dataset.source == cache
    np.testing.assert_array_equal(dataset.train_images, stacks["train-volume.tif"])
    np.testing.assert_array_equal(dataset.train_masks, stacks["train-labels.tif"] // 255)
    np.testing.assert_array_equal(dataset.test_images, stacks["test-volume.tif"])
    assert download.verify_pixels(dataset) == {name: True for name in FILES}
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)


# --------------------------------------------------------------------------- #
# The two layouts
# --------------------------------------------------------------------------- #


def test_stacks_layout(stacks, server, cache, monkeypatch):
    base, requested = server
    use_mirrors(monkeypatch, base + "stacks")
    assert_loaded(data.load_isbi2012(), stacks, cache)
    assert sorted(requested) == sorted(f"/stacks/{name}" for name in FILES)


def test_png_layout(stacks, server, cache, monkeypatch):
    base, requested = server
    use_mirrors(monkeypatch, base + "pngs/")
    assert_loaded(data.load_isbi2012(), stacks, cache)
    n = len(stacks["train-volume.tif"])
    assert f"/pngs/train/label/{n - 1}.png" in requested and len(requested) == 3 + 3 * n


def test_the_default_mirrors_include_zhixuhaos_png_slices():
    assert "https://raw.githubusercontent.com/zhixuhao/unet/master/data/membrane/" in download.MIRRORS
    assert download.PNG_FOLDERS == {
        "train-volume.tif": "train/image",
        "train-labels.tif": "train/label",
        "test-volume.tif": "test",
    }


@pytest.mark.skipif(not HAVE_SHARED, reason="set UNET_TUTORIAL_DATA to check the real checksums")
def test_checksums_are_those_of_the_real_stacks(originals):
    for name, stack in originals.items():
        assert sha256(stack) == download.PIXEL_SHA256[name]
        assert [sha256(page)[:16] for page in stack] == download.SLICE_SHA256[name]


# --------------------------------------------------------------------------- #
# Damaged mirrors: refused by name, nothing bad in the cache
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kind, reason",
    [("missing", "HTTP Error 404"), ("truncated", "not a readable image"), ("tampered", f"slice {BAD}")],
)
def test_a_bad_png_slice_is_refused_by_name(stacks, www, server, cache, monkeypatch, kind, reason):
    base, _ = server
    png_variant(www, kind)
    use_mirrors(monkeypatch, base + kind)
    with pytest.raises(download.DataUnavailableError) as info:
        data.load_isbi2012()
    culprit = [line for line in str(info.value).splitlines() if f"train/label/{BAD}.png" in line]
    assert len(culprit) == 1 and reason in culprit[0], str(info.value)
    # the good stacks were kept, the bad one never reached the cache
    assert sorted(p.name for p in cache.iterdir()) == ["test-volume.tif", "train-volume.tif"]


def test_the_next_mirror_replaces_a_bad_one(stacks, www, server, cache, monkeypatch):
    base, requested = server
    png_variant(www, "tampered")
    use_mirrors(monkeypatch, base + "tampered", base + "pngs")
    assert_loaded(data.load_isbi2012(), stacks, cache)
    assert f"/pngs/train/label/{BAD}.png" in requested
    assert "/pngs/train/image/0.png" not in requested  # only the missing stack was fetched again


def test_a_tampered_tiff_stack_is_refused_naming_the_slice(stacks, www, server, cache, monkeypatch):
    base, _ = server
    folder = www / "tampered_stacks"
    if not folder.exists():
        shutil.copytree(www / "stacks", folder)
        changed = stacks["test-volume.tif"].copy()
        changed[BAD, 0, 0] ^= 1
        tifffile.imwrite(folder / "test-volume.tif", changed, photometric="minisblack")
    use_mirrors(monkeypatch, base + "tampered_stacks")
    with pytest.raises(download.DataUnavailableError) as info:
        data.load_isbi2012()
    assert (
        f"tampered_stacks/test-volume.tif: refused, its pixels differ from ISBI 2012's test-volume.tif "
        f"in slice(s) [{BAD}]" in str(info.value)
    )
    assert "tampered_stacks/test/0.png: HTTP Error 404" in str(info.value)  # then looked for PNG slices
    assert not (cache / "test-volume.tif").exists()


def test_an_unreachable_mirror_is_asked_once_then_the_next_one_used(stacks, server, cache, monkeypatch):
    base, _ = server
    offline = closed_port_url()
    use_mirrors(monkeypatch, offline, base + "stacks")
    assert_loaded(data.load_isbi2012(), stacks, cache)
    use_mirrors(monkeypatch, offline)
    for path in cache.iterdir():
        path.unlink()
    with pytest.raises(download.DataUnavailableError) as info:
        data.load_isbi2012()
    assert str(info.value).count(offline) == 2  # one attempt, and the list of mirrors tried
    assert "no answer" in str(info.value)


# --------------------------------------------------------------------------- #
# What the user had is never overwritten
# --------------------------------------------------------------------------- #


def test_user_files_and_cached_stacks_are_kept(stacks, www, server, cache, tmp_path, monkeypatch):
    base, requested = server
    partial = tmp_path / "mine"  # the user's folder lacks one stack
    partial.mkdir()
    for name in FILES[:2]:
        shutil.copy(www / "stacks" / name, partial / name)
    cache.mkdir(parents=True)
    shutil.copy(www / "stacks" / "train-labels.tif", cache / "train-labels.tif")
    before_user, before_cache = snapshot(partial), snapshot(cache)
    use_mirrors(monkeypatch, base + "pngs")
    assert_loaded(data.load_isbi2012(partial), stacks, cache)
    assert snapshot(partial) == before_user
    assert snapshot(cache)["train-labels.tif"] == before_cache["train-labels.tif"]
    assert not any("label" in path for path in requested)


def test_a_damaged_cached_stack_is_reported_before_any_download(stacks, server, cache, monkeypatch):
    base, requested = server
    cache.mkdir(parents=True)
    damaged = cache / "train-labels.tif"
    damaged.write_bytes(b"II*\x00 partial download")
    use_mirrors(monkeypatch, base + "stacks")
    with pytest.raises(download.CorruptFileError, match="Delete it") as info:
        data.load_isbi2012()
    assert str(damaged) in str(info.value)
    assert requested == [] and damaged.read_bytes() == b"II*\x00 partial download"


def test_download_false_never_contacts_a_mirror(server, monkeypatch):
    base, requested = server
    use_mirrors(monkeypatch, base + "stacks")
    with pytest.raises(download.DataUnavailableError, match=r"download=False"):
        data.load_isbi2012(download=False)
    assert requested == []


def test_no_data_anywhere_lists_folders_attempts_and_the_fix(tmp_path, cache, monkeypatch):
    (tmp_path / "empty").mkdir()
    offline = closed_port_url()
    use_mirrors(monkeypatch, offline)
    with pytest.raises(download.DataUnavailableError) as info:
        data.load_isbi2012(tmp_path / "empty")
    message = str(info.value)
    for expected in (
        str(tmp_path / "empty"),
        str(cache),
        "UNET_TUTORIAL_DATA",
        "UNET_TUTORIAL_MIRRORS",
        "train/label/N.png",
        offline,
        *FILES,
    ):
        assert expected in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_verify_pixels_rejects_other_data():
    ramp = np.arange(30, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    assert download.verify_pixels(data.Isbi2012(ramp, ramp, ramp, source=None)) == {
        name: False for name in FILES
    }
    with pytest.raises(TypeError, match="Isbi2012"):
        download.verify_pixels(np.zeros((30, 512, 512), np.uint8))

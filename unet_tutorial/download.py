"""Tooling: downloading the ISBI 2012 stacks and checking them pixel by pixel.

Not a subject of the book: :func:`unet_tutorial.data.load_isbi2012` calls it when no folder
holds the three stacks, and chapter 1 calls :func:`verify_pixels`.

A mirror is a base URL that holds either the three stacks (``train-volume.tif``,
``train-labels.tif``, ``test-volume.tif``) or one PNG per slice, as the repository
zhixuhao/unet does: ``train/image/N.png``, ``train/label/N.png`` and ``test/N.png`` for
N = 0..29. Whatever the layout, a download is kept only when its decoded pixels have the
SHA-256 sums of the ISBI 2012 stacks; it is then written into the cache as a TIFF stack.
Files already on disk are read and checked, never replaced.
"""

from __future__ import annotations

import io
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .files import sha256_of_pixels as _sha256
from .files import write_atomically

__all__ = [
    "ISBI2012_FILES",
    "ISBI2012_SHAPE",
    "MIRRORS",
    "PIXEL_SHA256",
    "PNG_FOLDERS",
    "SLICE_SHA256",
    "CorruptFileError",
    "DataUnavailableError",
    "cache_dir",
    "download_isbi2012",
    "find_isbi2012",
    "not_found_message",
    "read_stack",
    "verify_pixels",
]

ISBI2012_FILES = ("train-volume.tif", "train-labels.tif", "test-volume.tif")
ISBI2012_SHAPE = (30, 512, 512)
LABELS_FILE = "train-labels.tif"

#: Folder of each stack's slices in the PNG layout: slice i is ``f"{folder}/{i}.png"``.
PNG_FOLDERS = {
    "train-volume.tif": "train/image",
    "train-labels.tif": "train/label",
    "test-volume.tif": "test",
}

#: Base URLs tried in turn; ``$UNET_TUTORIAL_MIRRORS`` (base URLs separated by commas or
#: spaces) replaces them. The challenge's own site (plain http, often down), then the PNG
#: slices of zhixuhao/unet on GitHub.
MIRRORS = (
    "http://brainiac2.mit.edu/isbi_challenge/sites/default/files/",
    "https://raw.githubusercontent.com/zhixuhao/unet/master/data/membrane/",
)

#: SHA-256 of each stack's decoded pixels (``array.tobytes()``: C order, uint8, labels as
#: stored, 255 = cell and 0 = membrane). They hold for any faithful copy, whatever its format.
PIXEL_SHA256 = {
    "train-volume.tif": "200da3d452d726e6c9ca1ce04b869d4edb727320d23b516d01cce707dc8c4760",
    "train-labels.tif": "a7cb64000a1a7e542682927e19c91339f58f9f178e0bcce4e207371116f0ca36",
    "test-volume.tif": "1b58fa7ec1d0ff9d39a855622db3ff66a97863036339b0d04be51b2f5a99b0e9",
}

#: The first 16 hex digits of the SHA-256 of every slice's pixels, slice 0 first: they
#: name the slice that differs when a copy is refused.
SLICE_SHA256 = {
    "train-volume.tif": """
        e235f967447919aa d555e1494bd1dd95 a7df6a4d2eb47d18 c2ab6a6142011f90 a14e585a72c74f03 bda1e6c8b13abe29
        348c5f717ce8fd07 6cc44fac7b7c8abf 60a539e9ae544143 2813dcf790b5abe1 5f488f7e11cad210 d8296c04f02230b9
        45150651d46b8d90 3f6d7332c8a4d418 64c72b75e35eaa26 697e6542ab58fd52 a9cc355ddeb20144 2ef981d0324442d9
        ba8939696a7e31e1 02c701220f4599e3 9b6b0273e27f3f8e 4501aed07c1ba965 6a9a6d35c4130306 bdcb92f8f6417e94
        67544e02f4f69c40 ef3513913f07049a 78457f8c8c220af0 0da76c31bf7216a1 e4fc52d63bf1f11e 0ca1dce6222eae36
    """.split(),
    "train-labels.tif": """
        8de677a890c9bfc0 877f0209e3842b0b bc751dd39651b824 51f76825393bc0ca 8b478b5e19677c8f db188c1d67e48c0c
        cf1286315b0be9b3 4042734499c8319f f69c3a7908ad53f8 9ad99838377cd812 7121c3b41ed6dc08 96db15851cc34575
        b10f1ed85f8e6edf 3819e3064010a70f 8d0a3fd02f4989b1 2e9e28c2282eb31b 1c3f220c260a05b6 964752eb393e06c6
        be888bac7a89d6a8 3b5e7f90540e4809 92bebd22d1a16d76 1a89eb7dd608a29b 86454777e88d34c0 7c8a4a0ef281dc19
        44302d1ced5f01be aa1f7f9ec43a7da7 ad3d7c259ac0976d 658d0bb60cfbd7c8 df063c9f830cbb15 4e876c4cf877d9ec
    """.split(),
    "test-volume.tif": """
        8412ea455808271e d700b62f43da51ef 1110c4807dc37aaa ba895f867601653d cc5e2f94f2a143f1 0e38c3f7bb483448
        fd6f2b24ddc36ab6 a741c15eb484e2e1 90c2074c592f4f04 7c5f7f4bebd71231 b2107fe06abbbcf9 7b71361b9ab113a8
        915610d009564a5b c13a85b09d2c252a 4e1b2bba39643322 0bc9b93dcf56a2ef 4dd87d61b3625d0d f3a638965dcbf682
        290edac9ca2676e8 04e97fc6ec193dc6 abdc294782053844 a614a44460de274e d8b156805397bf6b 8beb329c06856028
        b329a35ef4ebdfec 39bde7b49c6aa2fe dddb7378265f2d72 730a882eeb42172d 7e3b46b97e96c913 394d78fea641defd
    """.split(),
}

_TIMEOUT_S = 60


class DataUnavailableError(FileNotFoundError):
    """No folder holds the ISBI 2012 stacks and no mirror gave a good copy."""


class CorruptFileError(ValueError):
    """A data file exists but its content is not what it should be."""


class _Refused(Exception):
    """A mirror answered, but not with a good copy of what was asked for."""


class _Unreachable(Exception):
    """A mirror did not answer; it is not asked for the other files."""


# --------------------------------------------------------------------------- #
# Checking pixels
# --------------------------------------------------------------------------- #


def _mismatch(name, stack) -> str | None:
    """Why ``stack`` is not ISBI 2012's stack ``name``; None when its pixels are exactly those."""
    if stack.shape != tuple(ISBI2012_SHAPE) or stack.dtype != np.uint8:
        return f"found shape {stack.shape} and dtype {stack.dtype}, expected {tuple(ISBI2012_SHAPE)} uint8"
    if _sha256(stack) == PIXEL_SHA256[name]:
        return None
    wrong = [i for i, page in enumerate(stack) if _sha256(page)[:16] != SLICE_SHA256[name][i]]
    return f"its pixels differ from ISBI 2012's {name} in slice(s) {wrong or 'unknown'}"


def verify_pixels(dataset) -> dict[str, bool]:
    """Compare a loaded data set's pixels with the SHA-256 sums of the ISBI 2012 stacks.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    dataset : unet_tutorial.data.Isbi2012
        As returned by :func:`unet_tutorial.data.load_isbi2012`.

    Returns
    -------
    dict of str to bool
        For each file name, whether the pixels are exactly ISBI 2012's (the masks are
        mapped back to the stored 0/255 first). All False for synthetic data.
    """
    from .data import Isbi2012  # here, not at the top: data imports this module

    if not isinstance(dataset, Isbi2012):
        raise TypeError(f"verify_pixels expects an Isbi2012 data set, got {type(dataset).__name__}.")
    stored = {
        "train-volume.tif": dataset.train_images,
        "train-labels.tif": np.asarray(dataset.train_masks, np.uint8) * np.uint8(255),
        "test-volume.tif": dataset.test_images,
    }
    return {name: _mismatch(name, np.asarray(array)) is None for name, array in stored.items()}


# --------------------------------------------------------------------------- #
# Files on disk
# --------------------------------------------------------------------------- #


def cache_dir() -> Path:
    """Folder where downloaded ISBI 2012 stacks are kept (it may not exist yet).

    ``$UNET_TUTORIAL_CACHE/isbi2012`` if that variable is set, otherwise
    ``pooch.os_cache("unet_tutorial")/isbi2012``.
    """
    root = os.environ.get("UNET_TUTORIAL_CACHE")
    if root:
        return Path(root).expanduser() / "isbi2012"
    import pooch

    return Path(pooch.os_cache("unet_tutorial")) / "isbi2012"


class _Collect(logging.Handler):
    """Keeps the warnings that tifffile logs (it reports broken page chains that way)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _read_tiff_checked(path: Path) -> np.ndarray:
    """Read a TIFF; any exception or tifffile warning means a damaged file."""
    collector, logger = _Collect(), logging.getLogger("tifffile")
    logger.addHandler(collector)
    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for damaged files
        raise CorruptFileError(f"an unreadable TIFF ({type(error).__name__}: {error})") from error
    finally:
        logger.removeHandler(collector)
    if collector.messages:
        raise CorruptFileError(f"a damaged TIFF ({collector.messages[0]})")
    return array


def _fix_advice(path: Path) -> str:
    if path.parent.resolve() == cache_dir().resolve():
        return (
            f"Delete it (it is only a cached download: rm '{path}') and call "
            "load_isbi2012() again to download a fresh copy."
        )
    return (
        f"Replace it with a good copy or move it out of {path.parent}; "
        f"load_isbi2012() then downloads a fresh copy into {cache_dir()}."
    )


def read_stack(path) -> np.ndarray:
    """Read one ISBI 2012 stack from disk and check its shape, type and label values.

    Not taught in a chapter; :func:`unet_tutorial.data.load_isbi2012` uses it.

    Raises
    ------
    CorruptFileError
        The file is damaged or not the stack it is named after; the message says what was
        found and how to fix it. The file itself is never modified.
    """
    path = Path(path)
    expected = f"a readable TIFF stack of shape {tuple(ISBI2012_SHAPE)} and dtype uint8"
    if path.name == LABELS_FILE:
        expected += " holding only the values 0 and 255"
    try:
        array = _read_tiff_checked(path)
        if array.shape != tuple(ISBI2012_SHAPE) or array.dtype != np.uint8:
            raise CorruptFileError(f"shape {array.shape} and dtype {array.dtype}")
        if path.name == LABELS_FILE and not np.isin(array, (0, 255)).all():
            others = np.setdiff1d(np.unique(array), (0, 255))
            raise CorruptFileError(f"other values too, e.g. {others[:5].tolist()}")
    except CorruptFileError as error:
        raise CorruptFileError(
            f"{path} is not a usable copy of the ISBI 2012 file {path.name}: expected {expected}, "
            f"found {error}. The file was left untouched. {_fix_advice(path)}"
        ) from None
    return array


def not_found_message(searched, attempts) -> str:
    """What :class:`DataUnavailableError` says: the folders searched, the downloads tried, the fix.

    Parameters
    ----------
    searched : list of pathlib.Path
        The folders looked in, in order.
    attempts : list of str or None
        One line per failed download; None when downloading was disabled.
    """
    lines = [
        "The ISBI 2012 data set was not found and could not be downloaded.",
        "",
        "Folders searched, in order:",
    ]
    for folder in searched:
        present = [name for name in ISBI2012_FILES if (folder / name).is_file()]
        state = "has " + ", ".join(present) + " only" if present else "has none of the files"
        label = " (download cache)" if folder == cache_dir() else ""
        lines.append(f"  - {folder}{label}: {state if folder.is_dir() else 'does not exist'}")
    if attempts is None:
        lines += ["", "Downloading was disabled (download=False)."]
    else:
        lines += ["", "Download attempts:", *(f"  - {attempt}" for attempt in attempts)]
    lines += [
        "",
        f"To fix: put {', '.join(ISBI2012_FILES)} together into one folder: the cache",
        f"  {cache_dir()}, or isbi2012/ inside $UNET_TUTORIAL_DATA, or a folder passed as data_dir=... .",
        "  Or set $UNET_TUTORIAL_MIRRORS to a base URL that holds the three stacks, or the PNG slices",
        "  train/image/N.png, train/label/N.png and test/N.png. The mirrors tried:",
        *(f"  {base}" for base in _mirrors()),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Downloading
# --------------------------------------------------------------------------- #


def _mirrors() -> tuple[str, ...]:
    """$UNET_TUTORIAL_MIRRORS if set, else MIRRORS; each ending in '/'."""
    env = os.environ.get("UNET_TUTORIAL_MIRRORS", "").strip()
    bases = re.split(r"[,\s]+", env) if env else MIRRORS
    return tuple(base if base.endswith("/") else base + "/" for base in bases if base)


def _decode_tiff(payload: bytes) -> np.ndarray:
    return tifffile.imread(io.BytesIO(payload))


def _decode_png(payload: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as image:
        return np.asarray(image)


def _fetch(url: str, decode) -> np.ndarray:
    """Download ``url`` and decode it; raises _Refused or _Unreachable saying why not."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            payload = response.read()
    except urllib.error.HTTPError as error:  # the mirror answered: it has no such file
        raise _Refused(f"{url}: {error}") from None
    except (urllib.error.URLError, OSError) as error:
        raise _Unreachable(f"{url}: no answer ({getattr(error, 'reason', error)})") from None
    except Exception as error:  # e.g. the connection closed mid-file
        raise _Refused(f"{url}: {type(error).__name__}: {error}") from None
    try:
        return decode(payload)
    except Exception as error:  # decoders raise many types for damaged files
        raise _Refused(f"{url}: refused, not a readable image ({type(error).__name__}: {error})") from None


def _checked(name, stack, where) -> np.ndarray:
    problem = _mismatch(name, stack)
    if problem:
        raise _Refused(f"{where}: refused, {problem}")
    return stack


def _checked_slice(name, index, page, url) -> np.ndarray:
    if page.shape != tuple(ISBI2012_SHAPE[1:]) or page.dtype != np.uint8:
        raise _Refused(
            f"{url}: refused, found shape {page.shape} and dtype {page.dtype}, "
            f"expected {tuple(ISBI2012_SHAPE[1:])} uint8"
        )
    if _sha256(page)[:16] != SLICE_SHA256[name][index]:
        raise _Refused(f"{url}: refused, its pixels are not those of slice {index} of ISBI 2012's {name}")
    return page


def _stack_from(base, name, attempts) -> np.ndarray | None:
    """Stack ``name`` from one mirror: its TIFF, else its PNG slices; None if neither is good.

    Each refusal is appended to ``attempts``; a mirror that does not answer raises _Unreachable.
    """
    print(f"Downloading {base}{name}")
    try:
        return _checked(name, _fetch(base + name, _decode_tiff), base + name)
    except _Refused as why:
        attempts.append(str(why))
    folder = f"{base}{PNG_FOLDERS[name]}/"
    print(f"Downloading {name} as {ISBI2012_SHAPE[0]} PNG slices from {folder}")
    try:
        pages = [
            _checked_slice(name, i, _fetch(f"{folder}{i}.png", _decode_png), f"{folder}{i}.png")
            for i in range(ISBI2012_SHAPE[0])
        ]
        return _checked(name, np.stack(pages), f"{folder}*.png")
    except _Refused as why:
        attempts.append(str(why))
        return None


def _save(stack, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: tifffile.imwrite(temporary, stack, photometric="minisblack"))


def download_isbi2012(searched) -> Path:
    """Download the stacks missing from the cache, keep those whose pixels are right.

    Not taught in a chapter; :func:`unet_tutorial.data.load_isbi2012` calls it.

    Mirrors are tried in turn (:data:`MIRRORS` or ``$UNET_TUTORIAL_MIRRORS``), each for the
    stacks still missing; a stack is written into the cache only after its pixels matched
    :data:`PIXEL_SHA256`. Stacks already in the cache are checked first and kept as they are.

    Parameters
    ----------
    searched : list of pathlib.Path
        The folders looked in before, for the error message.

    Returns
    -------
    pathlib.Path
        The cache folder, now holding the three stacks.

    Raises
    ------
    DataUnavailableError
        No mirror gave a good copy of every stack; the message lists each attempt.
    CorruptFileError
        A stack already in the cache is damaged (it is left there; the message says so).
    """
    cache = cache_dir()
    for name in ISBI2012_FILES:  # a damaged cached stack is reported before downloading anything
        if (cache / name).is_file():
            read_stack(cache / name)
    attempts = []
    for base in _mirrors():
        try:
            for name in [name for name in ISBI2012_FILES if not (cache / name).is_file()]:
                stack = _stack_from(base, name, attempts)
                if stack is not None:
                    _save(stack, cache / name)
        except _Unreachable as why:
            attempts.append(str(why))
        if all((cache / name).is_file() for name in ISBI2012_FILES):
            return cache
    raise DataUnavailableError(not_found_message(searched, attempts))


def find_isbi2012(data_dir=None, download=True) -> Path:
    """The first folder holding all three stacks, downloading them into the cache if none does.

    Not taught in a chapter; :func:`unet_tutorial.data.load_isbi2012` calls it. The folders
    searched, in order: ``data_dir`` itself, ``data_dir/isbi2012``,
    ``$UNET_TUTORIAL_DATA/isbi2012`` and :func:`cache_dir`.

    Raises
    ------
    FileNotFoundError
        ``data_dir`` is not an existing folder.
    DataUnavailableError, CorruptFileError
        As for :func:`download_isbi2012`; with ``download=False``, nothing found.
    """
    folder = None if data_dir is None else Path(data_dir).expanduser()
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(
            f"data_dir={str(data_dir)!r} is not an existing folder. Pass the folder holding "
            f"{', '.join(ISBI2012_FILES)} (or its parent holding isbi2012/), or leave "
            "data_dir=None to use $UNET_TUTORIAL_DATA and the download cache."
        )
    folders = [] if folder is None else [folder, folder / "isbi2012"]
    if os.environ.get("UNET_TUTORIAL_DATA"):
        folders.append(Path(os.environ["UNET_TUTORIAL_DATA"]).expanduser() / "isbi2012")
    folders.append(cache_dir())
    found = [folder for folder in folders if all((folder / name).is_file() for name in ISBI2012_FILES)]
    if not found and not download:
        raise DataUnavailableError(not_found_message(folders, attempts=None))
    return found[0] if found else download_isbi2012(folders)

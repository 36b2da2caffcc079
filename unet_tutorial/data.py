"""Data sets of the book: ISBI 2012, a synthetic stand-in, and the reader's own folders.

Everything here takes and returns NumPy arrays. The ISBI 2012 stacks are found on
disk or downloaded once into a user cache; when neither works the chapters fall
back to :func:`synthetic_membranes` so that they still run offline.

Search order of :func:`load_isbi2012`:

1. ``data_dir`` (the folder itself, then ``data_dir/isbi2012``);
2. ``$UNET_TUTORIAL_DATA/isbi2012``;
3. the cache ``pooch.os_cache("unet_tutorial")/isbi2012``, or
   ``$UNET_TUTORIAL_CACHE/isbi2012`` when that variable is set.

The first folder holding all three files is used. Downloads only ever go into the
cache; files elsewhere are read, never written, moved or deleted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "CAMVID_PALETTE",
    "ISBI2012_FILES",
    "ISBI2012_SHAPE",
    "MD5",
    "MIRRORS",
    "PIXEL_SHA256",
    "CorruptFileError",
    "DataUnavailableError",
    "FolderData",
    "Isbi2012",
    "classes_to_rgb",
    "isbi2012_cache_dir",
    "load_folder",
    "load_isbi2012",
    "load_isbi2012_or_synthetic",
    "mask_to_classes",
    "percentile_normalize",
    "split_isbi2012",
    "synthetic_membranes",
    "to_float",
    "verify_pixels",
]

# --------------------------------------------------------------------------- #
# ISBI 2012: constants
# --------------------------------------------------------------------------- #

ISBI2012_FILES = ("train-volume.tif", "train-labels.tif", "test-volume.tif")
ISBI2012_SHAPE = (30, 512, 512)
LABELS_FILE = "train-labels.tif"

#: Base URLs tried in turn; the file name is appended. Override per call with
#: ``mirrors=`` or for a whole session with ``$UNET_TUTORIAL_MIRRORS``
#: (base URLs separated by commas or spaces).
MIRRORS = (
    "http://brainiac2.mit.edu/isbi_challenge/sites/default/files/",
    "https://raw.githubusercontent.com/zhixuhao/unet/master/data/membrane/",
)

#: Published MD5 checksums of the downloadable files.
MD5 = {
    "train-volume.tif": "465461edbe0254630c4ec5577f1e7764",
    "train-labels.tif": "657fe6b728c6dd0152e295c6d800001d",
    "test-volume.tif": "9767660d7abe4e0ecbdd0061a16058ad",
}

#: SHA-256 of the decoded pixels (``array.tobytes()``, C order, uint8, labels as
#: stored: 255 = cell, 0 = membrane). Unlike file checksums these also hold for
#: faithful copies re-encoded by other tools.
PIXEL_SHA256 = {
    "train-volume.tif": "200da3d452d726e6c9ca1ce04b869d4edb727320d23b516d01cce707dc8c4760",
    "train-labels.tif": "a7cb64000a1a7e542682927e19c91339f58f9f178e0bcce4e207371116f0ca36",
    "test-volume.tif": "1b58fa7ec1d0ff9d39a855622db3ff66a97863036339b0d04be51b2f5a99b0e9",
}

_DOWNLOAD_TIMEOUT_S = 60


class DataUnavailableError(FileNotFoundError):
    """No complete copy of a data set was found and none could be downloaded."""


class CorruptFileError(ValueError):
    """A data file exists but its content is not what it should be."""


@dataclass(frozen=True, eq=False, repr=False)
class Isbi2012:
    """The ISBI 2012 stacks (or their synthetic stand-in).

    Taught in chapter 1 (Semantic segmentation).

    Attributes
    ----------
    train_images : numpy.ndarray
        (30, 512, 512) uint8 electron micrographs.
    train_masks : numpy.ndarray
        (30, 512, 512) uint8, 1 = cell interior, 0 = membrane.
    test_images : numpy.ndarray
        (30, 512, 512) uint8; their labels were never published.
    source : pathlib.Path or None
        Folder the files were read from; None for synthetic data.
    is_synthetic : bool
        True when the arrays come from :func:`synthetic_membranes`.
    note : str
        Empty for real data; for synthetic data, why real data was unavailable
        and how to get it. Chapters print it.
    """

    train_images: np.ndarray
    train_masks: np.ndarray
    test_images: np.ndarray
    source: Path | None
    is_synthetic: bool = False
    note: str = ""

    def __repr__(self) -> str:
        kind = "synthetic" if self.is_synthetic else f"from {self.source}"
        return (
            f"Isbi2012({kind}: train_images{self.train_images.shape}, "
            f"train_masks{self.train_masks.shape}, test_images{self.test_images.shape})"
        )


# --------------------------------------------------------------------------- #
# ISBI 2012: finding, checking and downloading the files
# --------------------------------------------------------------------------- #


def isbi2012_cache_dir() -> Path:
    """Folder where downloaded ISBI 2012 files are kept.

    Taught in chapter 1 (Semantic segmentation).

    Returns
    -------
    pathlib.Path
        ``$UNET_TUTORIAL_CACHE/isbi2012`` if that variable is set, otherwise
        ``pooch.os_cache("unet_tutorial")/isbi2012``. It may not exist yet.
    """
    root = os.environ.get("UNET_TUTORIAL_CACHE")
    if root:
        return Path(root).expanduser() / "isbi2012"
    import pooch

    return Path(pooch.os_cache("unet_tutorial")) / "isbi2012"


def _candidate_folders(data_dir) -> list[tuple[str, Path]]:
    """(label, folder) pairs in search order, without duplicates."""
    candidates = []
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"data_dir={str(data_dir)!r} is not an existing folder. Pass the folder "
                f"holding {', '.join(ISBI2012_FILES)} (or its parent holding isbi2012/), "
                "or leave data_dir=None to use $UNET_TUTORIAL_DATA and the download cache."
            )
        candidates += [("data_dir", folder), ("data_dir/isbi2012", folder / "isbi2012")]
    env_root = os.environ.get("UNET_TUTORIAL_DATA")
    if env_root:
        candidates.append(("$UNET_TUTORIAL_DATA/isbi2012", Path(env_root).expanduser() / "isbi2012"))
    candidates.append(("download cache", isbi2012_cache_dir()))
    unique, seen = [], set()
    for label, folder in candidates:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((label, folder))
    return unique


def _mirror_list(mirrors) -> tuple[str, ...]:
    """Mirrors from the argument, else $UNET_TUTORIAL_MIRRORS, else MIRRORS."""
    if mirrors is None:
        env = os.environ.get("UNET_TUTORIAL_MIRRORS", "")
        mirrors = re.split(r"[,\s]+", env.strip()) if env.strip() else MIRRORS
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    mirrors = tuple(m if m.endswith("/") else m + "/" for m in mirrors if m)
    if not mirrors:
        raise ValueError("mirrors is empty: give at least one base URL, e.g. MIRRORS[0].")
    return mirrors


def _read_tiff_checked(path: Path) -> np.ndarray:
    """Read a TIFF; any exception or tifffile warning means a damaged file."""
    import tifffile

    class _Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    # tifffile reports broken page chains through logging, not exceptions.
    collector = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(collector)
    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for damaged files
        raise CorruptFileError(f"unreadable TIFF ({type(error).__name__}: {error})") from error
    finally:
        logger.removeHandler(collector)
    if collector.messages:
        raise CorruptFileError(f"damaged TIFF structure ({collector.messages[0]})")
    return array


def _fix_advice(path: Path, in_cache: bool) -> str:
    urls = ", ".join(m + path.name for m in _mirror_list(None))
    if in_cache:
        return (
            f"Delete it (it is only a cached download: rm '{path}') and call "
            "load_isbi2012() again to download a fresh copy."
        )
    return (
        f"Replace it with a good copy (e.g. {urls}) or move it out of {path.parent}; "
        f"load_isbi2012() then downloads a fresh copy into {isbi2012_cache_dir()}."
    )


def _load_isbi_file(path: Path, in_cache: bool) -> np.ndarray:
    """Read one ISBI stack and check its content; the file itself is never modified."""
    expected = f"a readable TIFF stack of shape {ISBI2012_SHAPE} and dtype uint8"
    if path.name == LABELS_FILE:
        expected += " holding only the values 0 and 255"
    try:
        array = _read_tiff_checked(path)
        found = None
        if array.shape != tuple(ISBI2012_SHAPE) or array.dtype != np.uint8:
            found = f"shape {array.shape} and dtype {array.dtype}"
        elif path.name == LABELS_FILE:
            values = np.unique(array)
            if not np.isin(values, (0, 255)).all():
                found = f"the values {_short_list(values.tolist())}"
        if found:
            raise CorruptFileError(found)
    except CorruptFileError as error:
        raise CorruptFileError(
            f"{path} is not a usable copy of the ISBI 2012 file {path.name}: expected "
            f"{expected}, found {error}. The file was left untouched. "
            + _fix_advice(path, in_cache)
        ) from None
    return array


def _short_list(values, limit=10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in all)"


def _load_folder_stacks(folder: Path, in_cache: bool) -> Isbi2012:
    volume, labels, test = (_load_isbi_file(folder / name, in_cache) for name in ISBI2012_FILES)
    masks = (labels == 255).astype(np.uint8)
    return Isbi2012(volume, masks, test, source=folder)


def _download_file(name, cache, mirrors, md5) -> list[str]:
    """Try each mirror in turn; return the failure reasons (empty on success)."""
    import pooch

    progressbar = importlib.util.find_spec("tqdm") is not None
    failures = []
    for base in mirrors:
        url = base + name
        downloader = None
        if url.startswith(("http://", "https://")):
            downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=_DOWNLOAD_TIMEOUT_S)
        try:
            # pooch writes to a temporary file and renames it only when the MD5
            # matches, so a bad download never appears under the final name.
            pooch.retrieve(
                url,
                known_hash=f"md5:{md5[name]}",
                fname=name,
                path=cache,
                progressbar=progressbar,
                downloader=downloader,
            )
            return []
        except Exception as error:  # network, HTTP and checksum errors alike
            reason = str(error).split(". ")[0].strip()[:160]
            failures.append(f"{url}: {type(error).__name__}: {reason}")
    return failures


def _unavailable_message(folders, mirrors, failures) -> str:
    lines = ["The ISBI 2012 data set was not found and could not be downloaded.", ""]
    lines.append("Folders searched, in order:")
    for label, folder in folders:
        present = [n for n in ISBI2012_FILES if (folder / n).is_file()]
        state = (
            "does not exist"
            if not folder.is_dir()
            else ("has " + ", ".join(present) + " only" if present else "has none of the files")
        )
        lines.append(f"  - {folder} ({label}): {state}")
    if failures is None:
        lines += ["", "Downloading was disabled (download=False)."]
    else:
        lines += ["", "Download attempts:"] + [f"  - {f}" for f in failures]
    cache = folders[-1][1]
    lines += [
        "",
        f"To fix: put {', '.join(ISBI2012_FILES)} together into one folder:",
        f"  {cache} (the cache), or isbi2012/ inside $UNET_TUTORIAL_DATA, or any folder",
        "  passed as data_dir=... . The files can be downloaded from:",
    ]
    lines += [f"  {base}{{{','.join(ISBI2012_FILES)}}}" for base in mirrors]
    return "\n".join(lines)


def load_isbi2012(data_dir=None, download=True, *, mirrors=None, md5=None) -> Isbi2012:
    """Load the ISBI 2012 EM membrane segmentation stacks.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Folder holding ``train-volume.tif``, ``train-labels.tif`` and
        ``test-volume.tif`` (or its parent holding ``isbi2012/``). Searched
        first, then ``$UNET_TUTORIAL_DATA/isbi2012``, then the cache
        (:func:`isbi2012_cache_dir`).
    download : bool
        Download files missing from the cache when no folder holds all three.
        Downloads go into the cache only.
    mirrors : sequence of str, optional
        Base URLs tried in turn (default: ``$UNET_TUTORIAL_MIRRORS`` or
        :data:`MIRRORS`).
    md5 : dict, optional
        Expected MD5 per file name for downloads (default :data:`MD5`).

    Returns
    -------
    Isbi2012
        Masks converted to 1 = cell interior, 0 = membrane.

    Raises
    ------
    DataUnavailableError
        No folder holds the files and downloading is disabled or failed on
        every mirror; the message lists the folders searched and the URLs.
    CorruptFileError
        A file is present but damaged (not a (30, 512, 512) uint8 TIFF stack,
        or labels not 0/255). It is never used, modified or deleted.

    Notes
    -----
    Files on disk are checked by content, so faithful re-encoded copies work;
    :func:`verify_pixels` compares the pixels with :data:`PIXEL_SHA256`.
    """
    folders = _candidate_folders(data_dir)
    cache = folders[-1][1]
    for _, folder in folders:
        if all((folder / name).is_file() for name in ISBI2012_FILES):
            return _load_folder_stacks(folder, in_cache=folder == cache)
    mirrors = _mirror_list(mirrors)
    if not download:
        raise DataUnavailableError(_unavailable_message(folders, mirrors, None))
    md5 = dict(MD5 if md5 is None else md5)
    missing = [name for name in ISBI2012_FILES if not (cache / name).is_file()]
    for name in ISBI2012_FILES:  # check what the cache has before downloading the rest
        if name not in missing:
            _load_isbi_file(cache / name, in_cache=True)
    for name in missing:
        failures = _download_file(name, cache, mirrors, md5)
        if failures:  # no point trying the other files: the set stays incomplete
            raise DataUnavailableError(_unavailable_message(folders, mirrors, failures))
    return _load_folder_stacks(cache, in_cache=True)


def verify_pixels(dataset: Isbi2012) -> dict[str, bool]:
    """Compare a loaded data set's pixels with the published SHA-256 checksums.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    dataset : Isbi2012
        As returned by :func:`load_isbi2012`.

    Returns
    -------
    dict of str to bool
        For each file name in :data:`PIXEL_SHA256`, whether the pixels match
        (masks are mapped back to the stored 0/255 first). All False for
        synthetic data.
    """
    if not isinstance(dataset, Isbi2012):
        raise TypeError(f"verify_pixels expects an Isbi2012 data set, got {type(dataset).__name__}.")
    arrays = {
        "train-volume.tif": dataset.train_images,
        "train-labels.tif": np.asarray(dataset.train_masks, dtype=np.uint8) * np.uint8(255),
        "test-volume.tif": dataset.test_images,
    }
    result = {}
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        ok = data.dtype == np.uint8 and data.shape == tuple(ISBI2012_SHAPE)
        result[name] = bool(ok and hashlib.sha256(data.tobytes()).hexdigest() == PIXEL_SHA256[name])
    return result


def split_isbi2012(dataset: Isbi2012 | None = None, n_val: int = 5):
    """Split the training stack into the book's fixed train / validation parts.

    Taught in chapter 1 (Semantic segmentation).

    The last ``n_val`` slices are held out (slices 0-24 train, 25-29 validation
    by default). There is no shuffling: neighbouring slices are correlated, so a
    random split would leak near-copies into validation.

    Parameters
    ----------
    dataset : Isbi2012, optional
        Defaults to :func:`load_isbi2012` ().
    n_val : int
        Number of validation slices, at least 1 and fewer than the stack.

    Returns
    -------
    x_train, y_train, x_val, y_val : numpy.ndarray
        Copies, so editing them leaves ``dataset`` unchanged.
    """
    if dataset is None:
        dataset = load_isbi2012()
    n = len(dataset.train_images)
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or not 1 <= n_val < n:
        raise ValueError(f"n_val must be an integer from 1 to {n - 1} (the stack has {n} slices), got {n_val!r}.")
    cut = n - int(n_val)
    images, masks = dataset.train_images, dataset.train_masks
    return images[:cut].copy(), masks[:cut].copy(), images[cut:].copy(), masks[cut:].copy()


# --------------------------------------------------------------------------- #
# A synthetic EM-like stand-in
# --------------------------------------------------------------------------- #


def _smooth_field(rng, size, n_waves, max_cycles) -> np.ndarray:
    """Random smooth field: a sum of plane waves, zero mean, about unit std."""
    coords = np.arange(size, dtype=np.float32) * np.float32(2 * np.pi / size)
    field = np.zeros((size, size), np.float32)
    for _ in range(n_waves):
        cycles_y, cycles_x = rng.uniform(-max_cycles, max_cycles, 2)
        along_y = coords * np.float32(cycles_y) + np.float32(rng.uniform(0, 2 * np.pi))
        along_x = coords * np.float32(cycles_x)
        # sin(a + b) as two outer products: much cheaper than a 2-D sine.
        field += np.outer(np.sin(along_y), np.cos(along_x))
        field += np.outer(np.cos(along_y), np.sin(along_x))
    return field / np.float32(np.sqrt(n_waves / 2))


def _cell_seeds(rng, size) -> np.ndarray:
    """Seed points whose density varies smoothly, so cell sizes vary."""
    mean_diameter = rng.uniform(36, 56)
    density = np.exp(0.7 * _smooth_field(rng, size, 4, 2.0))
    n_cells = size * size / (np.pi / 4 * mean_diameter**2)
    n_candidates = max(4, int(np.ceil(n_cells * density.max() / density.mean())))
    candidates = rng.uniform(0, size, (n_candidates, 2))
    rows, cols = candidates.astype(int).clip(0, size - 1).T
    keep = rng.uniform(0, density.max(), n_candidates) < density[rows, cols]
    seeds = candidates[keep]
    return seeds if len(seeds) >= 2 else candidates[:2]


def _membrane_layout(rng, size):
    """Perturbed Voronoi cells: (membrane bool, cell id, distance to membrane centre)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    seeds = _cell_seeds(rng, size)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    # Warping the sampling grid bends the straight Voronoi edges into curves.
    warp_y = 4 * _smooth_field(rng, size, 6, 4.0) + 1.5 * _smooth_field(rng, size, 6, 14.0)
    warp_x = 4 * _smooth_field(rng, size, 6, 4.0) + 1.5 * _smooth_field(rng, size, 6, 14.0)
    points = np.stack([(grid_y + warp_y).ravel(), (grid_x + warp_x).ravel()], axis=1)
    distances, nearest = cKDTree(seeds).query(points, k=2, workers=-1)
    first, second = seeds[nearest[:, 0]], seeds[nearest[:, 1]]
    separation = np.maximum(np.linalg.norm(second - first, axis=1), 1e-6)
    # Exact distance to the bisector between the two nearest seeds.
    to_edge = (distances[:, 1] ** 2 - distances[:, 0] ** 2) / (2 * separation)
    to_edge = to_edge.reshape(size, size).astype(np.float32)
    # Membrane where the edge distance is below a spatially varying half-width,
    # scaled so that a chosen fraction of pixels (ISBI: about 22 %) is membrane.
    relative_width = np.exp(0.35 * _smooth_field(rng, size, 5, 3.0))
    ratio = to_edge / relative_width
    threshold = np.quantile(ratio, rng.uniform(0.16, 0.22))
    membrane = ratio < threshold
    # Round the sharp cell corners (only ever adds membrane, so cells stay apart).
    membrane |= ndimage.gaussian_filter((~membrane).astype(np.float32), 2.5) < 0.5
    return membrane, nearest[:, 0].reshape(size, size), to_edge - threshold * relative_width


def _vesicle_impulses(rng, size, n_cells) -> np.ndarray:
    """Clusters of single-pixel impulses (blurred later into vesicles)."""
    impulses = np.zeros((size, size), np.float32)
    for centre in rng.uniform(0, size, (max(1, n_cells // 4), 2)):
        spots = centre + rng.normal(0, rng.uniform(4, 10), (rng.poisson(12), 2))
        rows, cols = spots.astype(int).T
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        impulses[rows[inside], cols[inside]] = 1.0
    return impulses


def _synthetic_slice(rng, size):
    from scipy import ndimage

    membrane, cell_id, inside_depth = _membrane_layout(rng, size)
    n_cells = int(cell_id.max()) + 1
    image = rng.uniform(0.58, 0.74, n_cells).astype(np.float32)[cell_id]
    membrane_tone = 0.27 + 0.06 * _smooth_field(rng, size, 4, 3.0)
    image = np.where(membrane, membrane_tone, image)
    deep_inside = inside_depth > 4  # organelles keep clear of the membranes
    # Organelles: dark irregular blobs from thresholded smoothed noise.
    blobs = ndimage.gaussian_filter(rng.standard_normal((size, size), np.float32), rng.uniform(3, 6))
    organelles = (blobs > 1.9 * blobs.std()) & deep_inside
    image -= np.float32(rng.uniform(0.2, 0.3)) * organelles
    # Vesicles: small dark dots in clusters.
    sigma = 1.3
    vesicles = ndimage.gaussian_filter(_vesicle_impulses(rng, size, n_cells), sigma)
    image -= 0.3 * np.minimum(1, vesicles * (2 * np.pi * sigma**2)) * deep_inside
    mottle = ndimage.gaussian_filter(rng.standard_normal((size, size), np.float32), 2.0)
    image += 0.07 / mottle.std() * mottle  # cloudy cytoplasm
    image += 0.08 * rng.standard_normal((size, size), np.float32)  # grain, softened by the blur
    image = ndimage.gaussian_filter(image, rng.uniform(0.9, 1.4))
    image *= 1 + 0.08 * _smooth_field(rng, size, 3, 1.5)  # uneven illumination
    image += rng.uniform(0.03, 0.06) * rng.standard_normal((size, size), np.float32)
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return pixels, (~membrane).astype(np.uint8)


def _synthetic_stack(n, size, seed_sequence):
    images = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    # One child stream per slice: slice i does not depend on n.
    for i, child in enumerate(seed_sequence.spawn(n)):
        images[i], masks[i] = _synthetic_slice(np.random.default_rng(child), size)
    return images, masks


def _check_synthetic_args(n, size, seed):
    for name, value, low in (("n", n, 0), ("size", size, 16), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def synthetic_membranes(n: int, size: int = 512, seed: int = 0):
    """Generate an EM-like membrane segmentation data set.

    Taught in chapter 1 (Semantic segmentation), as the stand-in when ISBI 2012 cannot be
    loaded, and chapter 7 (Your own data and pretrained encoders), as a folder to practise on.

    Cells are perturbed Voronoi regions of varied size and shape, separated by
    dark membranes of varied width (18-25 % of pixels, like ISBI's 22 %), with
    dark organelle-like blobs, vesicle clusters, grain, blur, uneven
    illumination and noise. It lets chapters run without the real data; models
    trained on it do not transfer to real EM images.

    Parameters
    ----------
    n : int
        Number of slices.
    size : int
        Height and width in pixels (at least 16). Cell size does not scale
        with it.
    seed : int
        Same seed, same data. Slice ``i`` does not depend on ``n``.

    Returns
    -------
    images : numpy.ndarray
        (n, size, size) uint8.
    masks : numpy.ndarray
        (n, size, size) uint8, 1 = cell interior, 0 = membrane.
    """
    _check_synthetic_args(n, size, seed)
    return _synthetic_stack(int(n), int(size), np.random.SeedSequence(int(seed)))


def load_isbi2012_or_synthetic(
    data_dir=None, download=True, n_synthetic=30, seed=0, *, mirrors=None, md5=None
) -> Isbi2012:
    """Load ISBI 2012, or fall back to synthetic data so a chapter still runs.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    data_dir, download, mirrors, md5
        As for :func:`load_isbi2012`.
    n_synthetic : int
        Slices in each synthetic stack (512 x 512).
    seed : int
        Seed of the synthetic training stack; the test stack uses another
        stream derived from it.

    Returns
    -------
    Isbi2012
        Real data with ``note == ""``, or synthetic data with
        ``is_synthetic=True`` and a ``note`` saying why the real data was
        unavailable and how to get it. Print the note.
    """
    _check_synthetic_args(n_synthetic, 512, seed)
    try:
        return load_isbi2012(data_dir, download, mirrors=mirrors, md5=md5)
    except (FileNotFoundError, CorruptFileError) as error:
        reason = str(error)
    images, masks = synthetic_membranes(n_synthetic, 512, seed)
    test_images, _ = _synthetic_stack(int(n_synthetic), 512, np.random.SeedSequence([int(seed), 0x7E57]))
    note = (
        "NOTE: the real ISBI 2012 data was unavailable, so this run uses "
        f"{n_synthetic} SYNTHETIC EM-like slices (unet_tutorial.data.synthetic_membranes, "
        f"seed={seed}); figures and scores will differ from the book's.\n"
        f"Why:\n{reason}"
    )
    return Isbi2012(images, masks, test_images, source=None, is_synthetic=True, note=note)


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #


def to_float(images) -> np.ndarray:
    """Convert images to float32 for a network.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    images : array_like
        Integer images are divided by their dtype's maximum (uint8 by 255,
        uint16 by 65535; negative values of signed types stay negative).
        Booleans become 0/1. Floats are only cast to float32, not rescaled.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    array = np.asarray(images)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return (array / np.float64(np.iinfo(array.dtype).max)).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise TypeError(f"to_float expects integer, boolean or float images, got dtype {array.dtype}.")


def percentile_normalize(image, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Stretch intensities between two percentiles to [0, 1].

    Taught in chapter 7 (Your own data and pretrained encoders).

    Robust to a few extreme pixels and to any bit depth (8, 12, 16-bit,
    float), which makes microscopy images from different instruments
    comparable. Percentiles are taken over the whole array: call it per image
    to normalise images separately.

    Parameters
    ----------
    image : array_like
        Any real-valued array; must be finite.
    low, high : float
        Percentiles mapped to 0 and 1, with ``0 <= low < high <= 100``.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1]; all zeros for a constant image.
    """
    array = np.asarray(image)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise TypeError(f"percentile_normalize expects a real-valued image, got dtype {array.dtype}.")
    if not 0 <= low < high <= 100:
        raise ValueError(f"Need 0 <= low < high <= 100, got low={low}, high={high}.")
    if array.size == 0:
        raise ValueError("percentile_normalize got an empty image.")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("percentile_normalize got NaN or infinite values; replace them first (np.nan_to_num).")
    lo, hi = np.percentile(array, [low, high])
    if hi <= lo:
        return np.zeros(array.shape, np.float32)
    return np.clip((array - lo) / (hi - lo), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- #
# The reader's own data
# --------------------------------------------------------------------------- #

#: The 12 CamVid classes with the colours used by SegNet-style CamVid label
#: images. Class index = position (Sky = 0, ..., Unlabelled = 11).
CAMVID_PALETTE = {
    "Sky": (128, 128, 128),
    "Building": (128, 0, 0),
    "Pole": (192, 192, 128),
    "Road": (128, 64, 128),
    "Pavement": (60, 40, 222),
    "Tree": (128, 128, 0),
    "SignSymbol": (192, 128, 128),
    "Fence": (64, 64, 128),
    "Car": (64, 0, 128),
    "Pedestrian": (64, 64, 0),
    "Bicyclist": (0, 128, 192),
    "Unlabelled": (0, 0, 0),
}

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_LOSSY_EXTENSIONS = (".jpg", ".jpeg")


class FolderData(NamedTuple):
    """What :func:`load_folder` returns.

    ``images`` and ``masks`` are arrays when all items share shape and dtype,
    lists of arrays otherwise; ``masks`` is None without ``masks_dir``.
    """

    images: np.ndarray | list
    masks: np.ndarray | list | None
    names: list


def _palette_array(palette) -> np.ndarray:
    """(K, 3) uint8 colours from a dict {name: rgb} or an array-like of rgb."""
    colours = list(palette.values()) if isinstance(palette, dict) else palette
    try:
        array = np.asarray(colours)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError("palette must be a dict {name: (r, g, b)} or a (K, 3) array of RGB colours.")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
        raise ValueError("palette colours must be integers from 0 to 255.")
    array = array.astype(np.uint8)
    if len(np.unique(array, axis=0)) != len(array):
        raise ValueError("palette contains the same colour twice; each class needs its own colour.")
    return array


def _colour_codes(rgb) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def mask_to_classes(rgb_mask, palette) -> np.ndarray:
    """Turn a colour-coded mask into class indices.

    Taught in chapter 1 (Semantic segmentation) and chapter 7 (Your own data and pretrained
    encoders).

    Parameters
    ----------
    rgb_mask : array_like
        (..., 3) uint8 colours.
    palette : dict or array_like
        {name: (r, g, b)} (class = insertion order) or a (K, 3) array, e.g.
        :data:`CAMVID_PALETTE`.

    Returns
    -------
    numpy.ndarray
        (...) class indices, uint8 (int32 beyond 256 classes).

    Raises
    ------
    ValueError
        If a colour is not in the palette; the message gives the colours and
        how many pixels have each.
    """
    colours = _palette_array(palette)
    mask = np.asarray(rgb_mask)
    if mask.ndim < 1 or mask.shape[-1] != 3:
        raise ValueError(f"rgb_mask must have 3 colour channels last, got shape {mask.shape}.")
    if not np.issubdtype(mask.dtype, np.integer) or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError("rgb_mask must hold 8-bit colours (integers 0 to 255).")
    codes = _colour_codes(mask)
    palette_codes = _colour_codes(colours)
    order = np.argsort(palette_codes)
    sorted_codes = palette_codes[order]
    position = np.searchsorted(sorted_codes, codes).clip(0, len(sorted_codes) - 1)
    known = sorted_codes[position] == codes
    if not known.all():
        unknown, counts = np.unique(codes[~known], return_counts=True)
        worst = np.argsort(counts)[::-1][:5]
        listed = ", ".join(
            f"{(int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255)} in {n} pixels"
            for c, n in zip(unknown[worst], counts[worst])
        )
        raise ValueError(
            f"{len(unknown)} colour(s) are not in the palette: {listed}"
            f"{' ...' if len(unknown) > 5 else ''}. Add them to the palette or fix the mask "
            "(masks must be saved losslessly, e.g. PNG, not JPEG)."
        )
    dtype = np.uint8 if len(colours) <= 256 else np.int32
    return order[position].astype(dtype)


def classes_to_rgb(classes, palette) -> np.ndarray:
    """Colour class indices with a palette (the inverse of :func:`mask_to_classes`).

    Taught in chapter 1 (Semantic segmentation) and chapter 7 (Your own data and pretrained
    encoders).

    Parameters
    ----------
    classes : array_like
        Integer class indices from 0 to K - 1.
    palette : dict or array_like
        As for :func:`mask_to_classes`.

    Returns
    -------
    numpy.ndarray
        (..., 3) uint8.
    """
    colours = _palette_array(palette)
    indices = np.asarray(classes)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"classes must be integer class indices, got dtype {indices.dtype}.")
    if indices.size and (indices.min() < 0 or indices.max() >= len(colours)):
        raise ValueError(
            f"classes hold values {indices.min()}..{indices.max()} but the palette has "
            f"{len(colours)} colours (valid indices 0..{len(colours) - 1})."
        )
    return colours[indices]


def _natural_key(path: Path):
    """Sort '2.png' before '10.png'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.stem)]


def _image_files(folder, what) -> dict[str, Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} is not an existing folder.")
    files = {}
    for path in sorted(folder.iterdir(), key=_natural_key):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in files:
            raise ValueError(
                f"{files[path.stem].name} and {path.name} in {folder} share the stem "
                f"{path.stem!r}; images and masks are paired by stem, so keep only one."
            )
        files[path.stem] = path
    if not files:
        raise FileNotFoundError(f"{what} {folder} holds no PNG, TIFF or JPEG files.")
    return files


def _read_image_file(path: Path) -> np.ndarray:
    """Read one 2-D image as (H, W) or (H, W, 3); alpha channels are dropped."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                array, axes = tif.series[0].asarray(), tif.series[0].axes
            if array.ndim == 3 and axes.startswith("S") and array.shape[0] in (3, 4):
                array = np.moveaxis(array, 0, -1)  # planar RGB -> channels last
            elif array.ndim == 3 and not axes.endswith("S"):
                raise ValueError(
                    f"it is a stack of {array.shape[0]} images (axes {axes}); "
                    "load_folder expects one 2-D image per file"
                )
        else:
            from PIL import Image

            with Image.open(path) as image:
                if image.mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                array = np.asarray(image)
    except Exception as error:
        raise ValueError(f"Could not read {path}: {error}") from error
    if array.ndim == 3 and array.shape[-1] in (1, 2):
        array = array[..., 0]  # grey (+ alpha)
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]  # drop alpha
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3):
        return array
    raise ValueError(f"{path} has unsupported shape {array.shape}; expected (H, W) or (H, W, 3).")


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, the usual RGB to grey conversion, keeping the dtype."""
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(rgb.dtype, np.integer):
        return np.rint(luma).astype(rgb.dtype)
    return luma.astype(rgb.dtype)


def _binary_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    if mask.ndim == 3:
        if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
            raise ValueError(
                f"{path} is a colour mask; pass palette=... (e.g. CAMVID_PALETTE or a dict "
                "{name: (r, g, b)}) to turn its colours into class indices."
            )
        mask = mask[..., 0]
    if path.suffix.lower() in _LOSSY_EXTENSIONS:
        # JPEG blurs the 0/255 edges; thresholding at mid-grey restores them.
        return (mask >= 128).astype(np.uint8)
    values = np.unique(mask)
    if np.isin(values, (0, 1)).all():
        return mask.astype(np.uint8)
    top = np.iinfo(mask.dtype).max if np.issubdtype(mask.dtype, np.integer) else 255
    if np.isin(values, (0, top)).all():
        return (mask == top).astype(np.uint8)
    raise ValueError(
        f"{path} is not a binary mask: it holds the values {_short_list(values.tolist())}. "
        f"Binary masks must hold only 0 and 1, or only 0 and {top}; colour-coded "
        "multi-class masks need palette=... ."
    )


def _palette_mask(mask: np.ndarray, path: Path, palette) -> np.ndarray:
    if path.suffix.lower() in _LOSSY_EXTENSIONS:
        raise ValueError(
            f"{path} is a JPEG: lossy compression changes colours, so a colour-coded mask "
            "cannot be decoded reliably. Save masks as PNG or TIFF."
        )
    if mask.ndim == 2:
        mask = np.repeat(mask[..., None], 3, axis=-1)
    try:
        return mask_to_classes(mask, palette)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _stack_if_uniform(arrays: list):
    same = all(a.shape == arrays[0].shape and a.dtype == arrays[0].dtype for a in arrays)
    return np.stack(arrays) if same else arrays


def _pair_files(images, masks, mask_suffix, images_dir, masks_dir):
    expected = {stem: stem + mask_suffix for stem in images}
    lonely_images = [images[s].name for s, m in expected.items() if m not in masks]
    lonely_masks = [p.name for m, p in masks.items() if m not in set(expected.values())]
    if lonely_images or lonely_masks:
        problems = []
        if lonely_images:
            problems.append(f"images without a mask in {masks_dir}: {_short_list(lonely_images, 5)}")
        if lonely_masks:
            problems.append(f"masks without an image in {images_dir}: {_short_list(lonely_masks, 5)}")
        raise ValueError(
            "Images and masks must pair up by file stem"
            + (f" (mask stem = image stem + {mask_suffix!r})" if mask_suffix else "")
            + "; found " + "; ".join(problems) + "."
        )
    return [(images[s], masks[expected[s]]) for s in images]


def load_folder(images_dir, masks_dir=None, palette=None, as_gray=None, *, mask_suffix="") -> FolderData:
    """Load your own images (and masks) from folders.

    Taught in chapter 7 (Your own data and pretrained encoders).

    Images and masks are PNG, TIFF or JPEG files paired by file stem
    (``a.png`` with ``a.tif`` is fine), sorted naturally (``2`` before ``10``).
    Files with other extensions and hidden files are ignored.

    Parameters
    ----------
    images_dir : str or os.PathLike
        Folder of images (grey or RGB, any bit depth; alpha is dropped).
    masks_dir : str or os.PathLike, optional
        Folder of masks. Without a palette, masks must be binary: 0/1 or
        0/255 (or 0/65535) -> 0/1. With a palette, RGB colours -> class
        indices via :func:`mask_to_classes`.
    palette : dict or array_like, optional
        E.g. :data:`CAMVID_PALETTE`.
    as_gray : bool, optional
        None: grey if every image is grey, otherwise RGB (grey images get 3
        equal channels). True: RGB converted to grey (ITU-R 601 luma).
        False: always RGB.
    mask_suffix : str
        Mask stem = image stem + suffix, e.g. ``"_mask"``.

    Returns
    -------
    FolderData
        ``(images, masks, names)``: arrays of shape (N, H, W[, 3]) when all
        items share shape and dtype, otherwise lists of arrays; masks are
        uint8 (None without ``masks_dir``); names are the image stems.

    Raises
    ------
    ValueError
        Unpaired files, image/mask size mismatch, non-binary masks, or
        colours missing from the palette; the message names the file.

    Notes
    -----
    Masks should be lossless (PNG or TIFF). JPEG masks are accepted only for
    binary 0/255 masks, which are thresholded at 128 to undo compression
    artefacts; JPEG colour masks are refused.
    """
    if as_gray not in (None, True, False):
        raise TypeError(f"as_gray must be None, True or False, got {as_gray!r}.")
    image_files = _image_files(images_dir, "images_dir")
    images = [_read_image_file(p) for p in image_files.values()]
    colour = as_gray is False or (as_gray is None and any(a.ndim == 3 for a in images))
    if colour:
        images = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1) for a in images]
    else:
        images = [_to_gray(a) if a.ndim == 3 else a for a in images]
    names = list(image_files)
    if masks_dir is None:
        return FolderData(_stack_if_uniform(images), None, names)
    pairs = _pair_files(image_files, _image_files(masks_dir, "masks_dir"), mask_suffix, images_dir, masks_dir)
    masks = []
    for image, (image_path, mask_path) in zip(images, pairs):
        raw = _read_image_file(mask_path)
        if raw.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"Size mismatch: {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"its mask {mask_path} is {raw.shape[1]}x{raw.shape[0]}; masks must match their image."
            )
        masks.append(_binary_mask(raw, mask_path) if palette is None else _palette_mask(raw, mask_path, palette))
    return FolderData(_stack_if_uniform(images), _stack_if_uniform(masks), names)

"""Tooling: a synthetic stand-in for the ISBI 2012 stacks, so that chapters run offline.

Not a subject of the book: :func:`unet_tutorial.data.load_isbi2012_or_synthetic` falls back
to it when the real data cannot be loaded, and chapter 8 builds a practice folder from it.
The output is fixed by the seed; tests and chapters rely on it staying bit-identical.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["synthetic_isbi2012", "synthetic_membranes", "synthetic_test_stack"]


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

    Taught in chapter 8 (Your own data and pretrained encoders), as a folder to practise on;
    chapter 1's data loader falls back to it when ISBI 2012 cannot be loaded.

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


def synthetic_test_stack(n: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """Test images to go with ``synthetic_membranes(n, size, seed)``, from another random stream.

    Not taught in a chapter; :func:`unet_tutorial.data.load_isbi2012_or_synthetic` uses it.

    Returns
    -------
    numpy.ndarray
        (n, size, size) uint8, different from the training images of the same seed.
    """
    _check_synthetic_args(n, size, seed)
    return _synthetic_stack(int(n), int(size), np.random.SeedSequence([int(seed), 0x7E57]))[0]


def synthetic_isbi2012(n: int, seed: int, why: str):
    """An :class:`unet_tutorial.data.Isbi2012` of ``n`` synthetic 512 x 512 slices, with a warning.

    Not taught in a chapter; :func:`unet_tutorial.data.load_isbi2012_or_synthetic` falls back to it.
    Its ``note``, also issued as the warning, says that the real data was unavailable and ``why``.
    """
    from unet_tutorial.data import Isbi2012  # here, not at the top: data imports this module

    note = (
        f"NOTE: the real ISBI 2012 data was unavailable, so this run uses {n} SYNTHETIC "
        f"EM-like slices (unet_tutorial.synthetic.synthetic_membranes, seed={seed}); figures and "
        f"scores will differ from the book's.\nWhy:\n{why}"
    )
    warnings.warn(note, stacklevel=3)
    images, masks = synthetic_membranes(n, 512, seed)
    test_images = synthetic_test_stack(n, 512, seed)
    return Isbi2012(images, masks, test_images, source=None, is_synthetic=True, note=note)

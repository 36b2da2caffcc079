"""Tests for unet_tutorial.weights (chapter 6, Weight maps)."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from unet_tutorial import weights

W0, SIGMA = 10.0, 5.0


def paper_term(total_distance, w0=W0, sigma=SIGMA):
    return w0 * math.exp(-(total_distance**2) / (2 * sigma**2))


def two_squares(value=1):
    """Two 10x6 squares side by side with a 3-pixel gap (columns 9, 10, 11)."""
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 3:9] = value
    mask[5:15, 12:18] = value
    return mask


def random_blobs(seed, shape=(48, 56), threshold=0.25):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    return (smooth > threshold * smooth.std()).astype(np.uint8)


def random_voronoi(seed, shape=(24, 28), n_seeds=9):
    """Instance image where every pixel belongs to a cell, so cells touch everywhere."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, bool)
    seeds[tuple(rng.integers(0, s, n_seeds) for s in shape)] = True
    seed_labels, _ = ndimage.label(seeds, structure=np.ones((3, 3)))
    _, (rows, cols) = ndimage.distance_transform_edt(seed_labels == 0, return_indices=True)
    return seed_labels[rows, cols].astype(np.int32)


def brute_force_border_term(instances, w0=W0, sigma=SIGMA):
    """Exact term from pairwise pixel distances, without any distance transform."""
    coords = np.indices(instances.shape).reshape(2, -1).T.astype(float)
    flat = instances.ravel()
    per_cell = []
    for cell in np.unique(flat[flat > 0]):
        cell_coords = coords[flat == cell]
        gaps = np.sqrt(((coords[:, None, :] - cell_coords[None, :, :]) ** 2).sum(-1))
        per_cell.append(gaps.min(axis=1))
    if len(per_cell) < 2:
        return np.zeros(instances.shape)
    two = np.sort(np.stack(per_cell), axis=0)[:2]
    return (w0 * np.exp(-((two[0] + two[1]) ** 2) / (2 * sigma**2))).reshape(instances.shape)


# ------------------------------------------------------------ hand-made values
@pytest.mark.parametrize("value", [1, 255])
def test_two_squares_border_term_matches_hand_values(value):
    term = weights.border_term(two_squares(value), border_on="everywhere")
    # In the gap, distances to the two squares add up to the column gap 12 - 8 = 4.
    for col in (9, 10, 11):
        assert term[7, col] == pytest.approx(paper_term(4.0), rel=1e-6)
    # Read literally, the formula also holds inside a cell.
    # Facing edge pixel of a square: d1 = 0, d2 = 4. Two columns further in: d2 = 6.
    assert term[7, 8] == pytest.approx(paper_term(4.0), rel=1e-6)
    assert term[7, 6] == pytest.approx(paper_term(6.0), rel=1e-6)
    # Two rows above the gap centre: both squares are sqrt(2^2 + 2^2) away.
    assert term[3, 10] == pytest.approx(paper_term(2 * math.sqrt(8)), rel=1e-6)


@pytest.mark.parametrize("value", [1, 255])
def test_default_border_term_is_zero_on_cells_and_unchanged_between_them(value):
    mask = two_squares(value)
    term = weights.border_term(mask)
    everywhere = weights.border_term(mask, border_on="everywhere")
    cells = mask > 0
    assert np.all(term[cells] == 0)
    assert np.array_equal(term[~cells], everywhere[~cells])
    assert term[7, 10] == pytest.approx(paper_term(4.0), rel=1e-6)


def test_default_weight_map_is_exactly_the_class_term_on_every_cell_pixel():
    for mask in (two_squares(), random_blobs(7)):
        cells = mask > 0
        for method in (weights.weight_map, weights.weight_map_reference):
            result = method(mask)
            assert np.array_equal(result[cells], weights.class_weight_map(mask)[cells])
            assert result[~cells].max() > weights.class_weight_map(mask)[~cells].max()


def test_border_on_rejects_unknown_values():
    with pytest.raises(ValueError, match="border_on must be 'background' or 'everywhere'"):
        weights.weight_map(two_squares(), border_on="cells")
    with pytest.raises(ValueError, match="border_on"):
        weights.weight_maps(two_squares()[None], border_on="all")


def test_two_squares_weight_map_adds_balanced_class_weights():
    mask = two_squares()
    # 600 pixels: 120 cell, 480 background -> 600/(2*480) and 600/(2*120).
    background, cell = 0.625, 2.5
    result = weights.weight_map(mask)
    assert result.dtype == np.float32 and result.shape == mask.shape
    assert result[7, 10] == pytest.approx(background + paper_term(4.0), rel=1e-6)
    assert result[7, 8] == pytest.approx(cell, rel=1e-6)
    everywhere = weights.weight_map(mask, border_on="everywhere")
    assert everywhere[7, 8] == pytest.approx(cell + paper_term(4.0), rel=1e-6)
    # Top row above the gap: 5 rows up and 2 columns across to either square.
    assert result[0, 10] == pytest.approx(background + paper_term(2 * math.hypot(5, 2)), rel=1e-6)
    # Far corner: d1 + d2 = 13 + hypot(5, 21), the term is ~4e-10, below the fast cut-off.
    assert result[0, 29] == pytest.approx(background, abs=1e-4)


def test_diagonal_corner_contact_gives_two_cells():
    mask = np.zeros((12, 12), np.uint8)
    mask[2:6, 2:6] = 1
    mask[6:10, 6:10] = 1  # touches the first square only at a corner
    assert weights.cell_instances(mask).max() == 2  # 4-connectivity keeps them apart
    term = weights.border_term(mask, border_on="everywhere")
    assert term[5, 5] == pytest.approx(paper_term(math.sqrt(2)), rel=1e-6)
    assert term[6, 6] == pytest.approx(paper_term(math.sqrt(2)), rel=1e-6)
    # The background pixel beside the contact is 1 and 1 away from the two cells.
    assert weights.border_term(mask)[5, 6] == pytest.approx(paper_term(2.0), rel=1e-6)


# --------------------------------------------------- fast versus exact methods
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_and_fast_match_brute_force_distances(seed):
    instances = ndimage.label(random_blobs(seed, shape=(18, 20)))[0]  # 4-connected
    assert instances.max() >= 2
    everywhere = brute_force_border_term(instances)
    for border_on, expected in (("everywhere", everywhere), ("background", everywhere * (instances == 0))):
        reference = (
            weights.weight_map_reference(
                instances, class_weights=None, labels="instance", border_on=border_on
            )
            - 1.0
        )
        fast = weights.border_term(instances, labels="instance", border_on=border_on)
        np.testing.assert_allclose(reference, expected, atol=1e-5)
        np.testing.assert_allclose(fast, expected, atol=1e-4)


@pytest.mark.parametrize("seed", [2, 3, 4])
@pytest.mark.parametrize("w0, sigma", [(10.0, 5.0), (5.0, 2.0), (20.0, 9.0)])
def test_fast_matches_reference_on_random_blobs(seed, w0, sigma):
    mask = random_blobs(seed)
    assert weights.cell_instances(mask).max() >= 5
    fast = weights.weight_map(mask, w0=w0, sigma=sigma)
    reference = weights.weight_map_reference(mask, w0=w0, sigma=sigma)
    assert np.abs(fast - reference).max() < 1e-3


@pytest.mark.parametrize("tol", [0.05, 0.5])
def test_fast_error_stays_within_tolerance(tol):
    # A loose tolerance crops hard; the proven bound |error| <= tol must still hold.
    mask = random_blobs(5, shape=(64, 64))
    fast = weights.border_term(mask, tol=tol)
    reference = weights.weight_map_reference(mask, class_weights=None) - 1.0
    error = np.abs(fast - reference).max()
    assert error <= tol + 1e-5
    assert error > 0  # the cropping really happened, so the bound was exercised


def test_isbi_labels_fast_matches_reference():
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if not root:
        pytest.skip("UNET_TUTORIAL_DATA is not set; it should name a folder holding isbi2012/.")
    tifffile = pytest.importorskip("tifffile")
    labels = tifffile.imread(Path(root) / "isbi2012" / "train-labels.tif")[:2]
    for label in labels:
        instances, count = ndimage.label(label == 255, structure=ndimage.generate_binary_structure(2, 1))
        assert count > 100
        fast = weights.weight_map(instances, labels="instance")
        assert np.array_equal(fast, weights.weight_map(label))  # binary input = its components
        reference = weights.weight_map_reference(instances, labels="instance")
        assert np.abs(fast - reference).max() < 1e-3


# ----------------------------------------------------------------- class term
def test_balanced_class_weights_average_to_one_and_follow_formula():
    mask = random_blobs(6)
    n_cell = int(mask.sum())
    n_background = mask.size - n_cell
    class_map = weights.class_weight_map(mask)
    assert class_map.mean() == pytest.approx(1.0, rel=1e-6)
    assert class_map[mask == 1][0] == pytest.approx(mask.size / (2 * n_cell))
    assert class_map[mask == 0][0] == pytest.approx(mask.size / (2 * n_background))


@pytest.mark.parametrize("explicit", [{0: 0.5, 1: 3.0}, (0.5, 3.0), [0.5, 3.0], np.array([0.5, 3.0])])
def test_explicit_class_weights(explicit):
    mask = two_squares()
    class_map = weights.class_weight_map(mask, explicit)
    assert set(np.unique(class_map[mask == 0])) == {0.5}
    assert set(np.unique(class_map[mask == 1])) == {3.0}
    np.testing.assert_allclose(
        weights.weight_map(mask, class_weights=explicit), class_map + weights.border_term(mask), rtol=1e-6
    )


def test_no_class_weights_means_one():
    mask = two_squares()
    assert np.all(weights.class_weight_map(mask, None) == 1.0)
    np.testing.assert_allclose(weights.weight_map(mask, class_weights=None), 1.0 + weights.border_term(mask))


def test_single_cell_has_no_border_term():
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 5:12] = 255
    assert np.all(weights.border_term(mask) == 0)
    np.testing.assert_array_equal(weights.weight_map(mask), weights.class_weight_map(mask))
    np.testing.assert_array_equal(weights.weight_map_reference(mask), weights.class_weight_map(mask))


@pytest.mark.parametrize("fill", [0, 1])
def test_one_class_masks_get_weight_one(fill):
    mask = np.full((10, 12), fill, np.uint8)
    for function in (weights.weight_map, weights.weight_map_reference):
        result = function(mask)
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, np.ones(mask.shape, np.float32))


# -------------------------------------------------------------- input handling
def test_instance_input_equals_binary_components():
    mask = random_blobs(7)
    components = weights.cell_instances(mask)
    expected = weights.weight_map(mask)
    np.testing.assert_array_equal(weights.weight_map(components), expected)
    # Renumbered ids (sparse, huge) describe the same cells.
    sparse = np.where(components > 0, components * 7 + 3, 0)
    huge = np.where(components > 0, components.astype(np.int64) + 10**12, 0)
    np.testing.assert_array_equal(weights.weight_map(sparse), expected)
    np.testing.assert_array_equal(weights.weight_map(huge), expected)


def test_label_reading_modes():
    mask = two_squares()
    assert weights.border_term(mask, labels="instance").max() == 0  # one instance with id 1
    assert weights.border_term(mask, labels="binary").max() > 0
    np.testing.assert_array_equal(weights.weight_map(mask.astype(bool)), weights.weight_map(mask))
    np.testing.assert_array_equal(weights.weight_map(mask.astype(np.float64)), weights.weight_map(mask))
    three_values = mask.astype(np.int32)
    three_values[5:15, 12:18] = 2
    assert weights.cell_instances(three_values).max() == 2  # auto reads {0, 1, 2} as instances


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (np.zeros((2, 8, 8)), ValueError, "2-D"),
        (np.zeros(8), ValueError, "2-D"),
        (np.array([[0.0, 0.5], [1.0, 2.0]]), TypeError, "integer labels"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), TypeError, "integer labels"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "dtype"),
    ],
)
def test_bad_masks_raise_clear_errors(bad, error, words):
    functions = (
        weights.weight_map,
        weights.weight_map_reference,
        weights.border_term,
        weights.class_weight_map,
    )
    for function in functions:
        with pytest.raises(error, match=words):
            function(bad)


def test_bad_parameters_raise_clear_errors():
    mask = two_squares()
    with pytest.raises(ValueError, match="labels='binary'"):
        weights.weight_map(np.array([[0, 1], [2, 3]]), labels="binary")
    with pytest.raises(ValueError, match="labels must be"):
        weights.weight_map(mask, labels="semantic")
    for bad in ("equal", (1.0, 2.0, 3.0), {1: 2.0}, (-1.0, 2.0), (1.0, math.inf), 3.0, ("a", "b")):
        with pytest.raises(ValueError, match="class_weights must be 'balanced', None"):
            weights.weight_map(mask, class_weights=bad)
    for function in (weights.weight_map, weights.weight_map_reference):
        with pytest.raises(ValueError, match="w0"):
            function(mask, w0=-1.0)
        with pytest.raises(ValueError, match="sigma"):
            function(mask, sigma=0.0)
    with pytest.raises(ValueError, match="tol"):
        weights.border_term(mask, tol=0.0)


def test_zero_w0_gives_class_weights_only():
    mask = two_squares()
    np.testing.assert_array_equal(weights.weight_map(mask, w0=0.0), weights.class_weight_map(mask))


def test_input_is_not_modified():
    mask = two_squares()
    before = mask.copy()
    weights.weight_map(mask)
    weights.binary_with_borders(weights.cell_instances(mask))
    np.testing.assert_array_equal(mask, before)


# -------------------------------------------------------------- touching cells
def touching_squares():
    instances = np.zeros((8, 12), np.int32)
    instances[2:6, 2:6] = 1
    instances[2:6, 6:10] = 2
    return instances


def test_separation_border_on_touching_squares():
    instances = touching_squares()
    background_near_both = [(1, 5), (1, 6), (6, 5), (6, 6)]
    expected_1 = np.zeros(instances.shape, bool)
    expected_1[2:6, 5] = True  # one-pixel line on the side of the smaller label
    for pixel in background_near_both:
        expected_1[pixel] = True
    expected_2 = expected_1.copy()
    expected_2[2:6, 6] = True
    np.testing.assert_array_equal(weights.separation_border(instances, width=1), expected_1)
    np.testing.assert_array_equal(weights.separation_border(instances, width=2), expected_2)

    assert ndimage.label(instances > 0)[1] == 1  # as a plain binary mask they merge
    for width in (1, 2):
        binary = weights.binary_with_borders(instances, width=width)
        assert binary.dtype == np.uint8 and set(np.unique(binary)) == {0, 1}
        assert ndimage.label(binary, structure=np.ones((3, 3)))[1] == 2
        assert binary.sum() == 32 - 4 * width


def brute_force_separation(instances, width):
    height, cols = instances.shape
    result = np.zeros(instances.shape, bool)
    for r in range(height):
        for c in range(cols):
            block = instances[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            nearby = set(block[block > 0].tolist())
            result[r, c] = len(nearby) >= 2 and (width == 2 or instances[r, c] < max(nearby))
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separation_border_matches_definition_and_separates_cells(seed):
    instances = random_voronoi(seed)
    instances[random_blobs(seed, shape=instances.shape, threshold=1.0) == 1] = 0  # some background
    for width in (1, 2):
        np.testing.assert_array_equal(
            weights.separation_border(instances, width), brute_force_separation(instances, width)
        )
        binary = weights.binary_with_borders(instances, width)
        components, count = ndimage.label(binary, structure=np.ones((3, 3)))
        for component in range(1, count + 1):
            assert len(np.unique(instances[components == component])) == 1  # never two cells in one piece


def test_separation_border_rejects_bad_width():
    with pytest.raises(ValueError, match="width"):
        weights.separation_border(touching_squares(), width=3)


# -------------------------------------------------------------------- stacks
def small_stack():
    return np.stack([random_blobs(seed, shape=(24, 28)) for seed in (8, 9)])


def test_weight_maps_without_cache_stacks_weight_map():
    masks = small_stack()
    result = weights.weight_maps(masks, sigma=3.0)
    assert result.shape == masks.shape and result.dtype == np.float32
    for mask, single in zip(masks, result):
        np.testing.assert_array_equal(single, weights.weight_map(mask, sigma=3.0))


def test_weight_maps_cache_hit_miss_and_location(tmp_path, monkeypatch):
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    cache = tmp_path / "nested" / "cache"
    masks = small_stack()
    first = weights.weight_maps(masks, cache_dir=cache, class_weights={0: 1.0, 1: 2.0})
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 and all(f.startswith("nested/cache/weight_maps-") for f in files)
    assert {Path(f).suffix for f in files} == {".npy", ".sha256"}

    def must_not_run(*args, **kwargs):
        raise AssertionError("weight_map was called although the cache should have been used")

    monkeypatch.setattr(weights, "weight_map", must_not_run)
    # Same parameters, spelled as a pair instead of a dict.
    again = weights.weight_maps(masks, cache_dir=cache, class_weights=(1.0, 2.0))
    np.testing.assert_array_equal(again, first)
    with pytest.raises(AssertionError, match="cache"):
        weights.weight_maps(masks, cache_dir=cache, class_weights=(1.0, 2.0), sigma=4.0)  # params changed
    with pytest.raises(AssertionError, match="cache"):
        weights.weight_maps(masks[::-1], cache_dir=cache, class_weights=(1.0, 2.0))  # masks changed
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("damage", ["garbage", "flipped_value", "missing_checksum"])
def test_weight_maps_recomputes_damaged_cache_with_warning(tmp_path, damage):
    masks = small_stack()
    expected = weights.weight_maps(masks, cache_dir=tmp_path)
    (array_path,) = tmp_path.glob("*.npy")
    if damage == "garbage":
        array_path.write_bytes(b"not a numpy file")
    elif damage == "flipped_value":
        damaged = expected.copy()
        damaged[0, 0, 0] += 1.0
        np.save(array_path, damaged)
    else:
        next(tmp_path.glob("*.sha256")).unlink()
    with pytest.warns(RuntimeWarning, match="damaged"):
        result = weights.weight_maps(masks, cache_dir=tmp_path)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(np.load(array_path), expected)  # repaired for next time
    np.testing.assert_array_equal(weights.weight_maps(masks, cache_dir=tmp_path), expected)


def test_weight_maps_bad_input(tmp_path):
    with pytest.raises(ValueError, match="for one mask use weight_map"):
        weights.weight_maps(two_squares())
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("user data")
    with pytest.raises(FileExistsError):
        weights.weight_maps(small_stack(), cache_dir=not_a_folder)
    assert not_a_folder.read_text() == "user data"


def test_separation_border_keeps_huge_ids_apart():
    small_ids = touching_squares().astype(np.int64)
    huge_ids = np.where(small_ids > 0, small_ids + 2**60, 0)  # beyond float64's exact integers
    for width in (1, 2):
        np.testing.assert_array_equal(
            weights.separation_border(huge_ids, width), weights.separation_border(small_ids, width)
        )


def test_huge_ids_without_background_keep_every_cell():
    cells = random_voronoi(4)  # every pixel in a cell
    huge = cells.astype(np.int64) * 10**9  # renumbered for scipy: the smallest id must not become 0
    for width in (1, 2):
        np.testing.assert_array_equal(
            weights.separation_border(huge, width), weights.separation_border(cells, width)
        )
    np.testing.assert_array_equal(
        weights.weight_map(huge, border_on="everywhere"), weights.weight_map(cells, border_on="everywhere")
    )

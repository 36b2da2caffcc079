"""Tests of unet_tutorial.augment: joint transforms, the elastic field, parameter sets."""

import numpy as np
import pytest
from masks import ALL_GEOMETRY
from masks import make_blob_mask as blob_mask
from masks import realistic_mask as load_realistic_mask
from scipy import ndimage

from unet_tutorial import augment

# Each geometric transform alone, and all of them together, at strong settings.
TRANSFORMS = {
    "rotation": dict(rotation_range=30),
    "shift": dict(width_shift_range=0.2, height_shift_range=0.2),
    "shear": dict(shear_range=20),
    "zoom": dict(zoom_range=0.3),
    "flips": dict(horizontal_flip=True, vertical_flip=True),
    "rot90": dict(rot90=True),
    "elastic": dict(elastic=True),
    "legacy": dict(augment.LEGACY_PARAMS),
    "all": dict(ALL_GEOMETRY),
}
SEEDS = (0, 1, 2)


def agreement(image, mask):
    return float(np.mean((image > 0.5) == (mask > 0)))


# --------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("name", TRANSFORMS)
def test_nearest_image_matches_mask_exactly(name):
    """With nearest interpolation for both, any geometric mismatch would show up."""
    realistic_mask = load_realistic_mask()
    params = dict(TRANSFORMS[name], image_order=0)
    image = realistic_mask.astype(np.float32)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        out_image, out_mask = augment.random_transform(image, realistic_mask, rng, **params)
        np.testing.assert_array_equal(out_image, out_mask.astype(np.float32))


@pytest.mark.parametrize("name", TRANSFORMS)
def test_cubic_image_agrees_with_mask_on_blobs(name):
    mask = blob_mask()
    image = mask.astype(np.float32)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        out_image, out_mask = augment.random_transform(image, mask, rng, **TRANSFORMS[name])
        assert agreement(out_image, out_mask) >= 0.995, (name, seed)


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("order", [1, 3])
def test_interpolated_image_differs_from_mask_only_at_boundaries(name, order):
    """Cubic/linear vs nearest may differ by a pixel at label edges, never further."""
    realistic_mask = load_realistic_mask()
    image = realistic_mask.astype(np.float32)
    for seed in SEEDS:
        params = dict(TRANSFORMS[name], image_order=order)
        rng = np.random.default_rng(seed)
        out_image, out_mask = augment.random_transform(image, realistic_mask, rng, **params)
        edges = ndimage.morphological_gradient(out_mask, size=3) > 0
        near_edge = ndimage.binary_dilation(edges, iterations=2)
        disagree = (out_image > 0.5) != (out_mask > 0)
        # a label edge just beyond the image border is invisible in out_mask: skip 2 border pixels
        assert not np.any((disagree & ~near_edge)[2:-2, 2:-2]), (name, seed)
        assert agreement(out_image, out_mask) >= 0.97, (name, seed)  # ISBI membranes: many edges


def test_elastic_deform_aligns_image_mask_and_weights():
    realistic_mask = load_realistic_mask()
    image = realistic_mask.astype(np.float32)
    weights = 1.0 + 4.0 * realistic_mask.astype(np.float32)
    out_image, out_mask, out_weights = augment.elastic_deform(
        image, realistic_mask, np.random.default_rng(3), order=0, weights=weights
    )
    np.testing.assert_array_equal(out_image, out_mask)
    # weights are linear, so near mask edges they may be in between; elsewhere 1 or 5
    flat = ndimage.morphological_gradient(out_mask, size=5) == 0
    flat[:2], flat[-2:], flat[:, :2], flat[:, -2:] = False, False, False, False
    np.testing.assert_allclose(out_weights[flat], 1.0 + 4.0 * out_mask[flat], rtol=1e-6)
    assert flat.mean() > 0.3


def test_weights_get_the_same_geometry_as_the_image():
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.random((96, 96)), 3).astype(np.float64)
    mask = (smooth > smooth.mean()).astype(np.uint8)
    out_image, _, out_weights = augment.random_transform(
        smooth, mask, np.random.default_rng(5), weights=smooth, image_order=1, **TRANSFORMS["all"]
    )
    np.testing.assert_allclose(out_weights, out_image, atol=1e-12)
    assert not np.allclose(out_weights, smooth)  # something did happen


# --------------------------------------------------------------------------- exact transforms
def test_flips_and_rot90_are_exact_array_operations():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (24, 24))
    weights = rng.random((24, 24))
    seen = set()
    for seed in range(40):
        out = augment.random_transform(
            image,
            mask,
            np.random.default_rng(seed),
            weights=weights,
            horizontal_flip=True,
            vertical_flip=True,
            rot90=True,
        )
        match = None
        for lr in (False, True):
            for ud in (False, True):
                for k in range(4):

                    def op(a, lr=lr, ud=ud, k=k):
                        a = np.flip(a, 1) if lr else a
                        a = np.flip(a, 0) if ud else a
                        return np.rot90(a, k, axes=(0, 1))

                    if np.array_equal(out[0], op(image)):
                        match = (lr, ud, k)
                        np.testing.assert_array_equal(out[1], op(mask))
                        np.testing.assert_array_equal(out[2], op(weights))
        assert match is not None, seed
        seen.add(match)
    # 16 combinations (8 distinct results); 40 seeds must show several of them
    assert len({(lr ^ ud, (k + 2 * ud) % 4) for lr, ud, k in seen}) >= 5


def test_rot90_keeps_the_shape_of_non_square_images():
    image = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    mask = (image % 3 == 0).astype(np.uint8)
    results = set()
    for seed in range(20):
        out_image, out_mask = augment.random_transform(image, mask, np.random.default_rng(seed), rot90=True)
        assert out_image.shape == (20, 30)
        results.add(bool(np.array_equal(out_image, np.rot90(image, 2))))
        assert np.array_equal(out_image, image) or np.array_equal(out_image, np.rot90(image, 2))
    assert results == {True, False}


def test_apply_affine_rotation_by_90_degrees_equals_rot90():
    rng = np.random.default_rng(0)
    image = rng.random((31, 31))
    mask = rng.integers(0, 3, (31, 31))
    out_image, out_mask = augment.apply_affine(image, mask, theta=90)
    np.testing.assert_array_equal(out_mask, np.rot90(mask))
    np.testing.assert_allclose(out_image, np.rot90(image), atol=1e-9)


def test_apply_affine_shift_moves_content_down_and_right():
    mask = np.zeros((20, 20), np.uint8)
    mask[5, 7] = 1
    _, out_mask = augment.apply_affine(mask.astype(float), mask, shift=(3, -2), mode="constant")
    assert np.argwhere(out_mask).tolist() == [[8, 5]]


@pytest.mark.filterwarnings("ignore:Please import `affine_transform`:DeprecationWarning")
@pytest.mark.parametrize(
    "params",
    [
        dict(theta=17.0),
        dict(shift=(3.3, -2.2)),
        dict(shear=12.0),
        dict(zoom=(1.2, 0.9)),
        dict(theta=-20.0, shift=(2.0, 5.0), shear=7.0, zoom=(0.9, 1.1)),
    ],
)
def test_apply_affine_reproduces_the_legacy_keras_geometry(params):
    legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
    rng = np.random.default_rng(1)
    image = rng.random((33, 33))
    mask = (image > 0.5).astype(np.uint8)
    out_image, _ = augment.apply_affine(image, mask, order=1, mode="nearest", **params)
    shift, zoom = params.get("shift", (0, 0)), params.get("zoom", (1, 1))
    expected = legacy.apply_affine_transform(
        image[..., None],
        theta=params.get("theta", 0),
        tx=-shift[1],
        ty=-shift[0],
        shear=params.get("shear", 0),
        zx=zoom[1],
        zy=zoom[0],
        row_axis=0,
        col_axis=1,
        channel_axis=2,
        order=1,
        fill_mode="nearest",
    )[..., 0]
    np.testing.assert_allclose(out_image, expected, atol=1e-10)


def test_identity_parameters_return_equal_copies():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    mask = rng.integers(0, 2, (40, 50)).astype(np.uint8)
    weights = rng.random((40, 50)).astype(np.float32)
    for out in (
        augment.random_transform(image, mask, np.random.default_rng(0), weights=weights),
        augment.elastic_deform(image, mask, np.random.default_rng(0), sigma=0.0, weights=weights),
        augment.apply_affine(image, mask, weights=weights),
    ):
        for got, original in zip(out, (image, mask, weights)):
            np.testing.assert_array_equal(got, original)
            assert got.dtype == original.dtype
            assert not np.shares_memory(got, original)


def test_same_seed_reproduces_and_other_seed_differs():
    image = (blob_mask(64) * 200).astype(np.uint8)
    mask = blob_mask(64)
    params = dict(TRANSFORMS["all"], brightness=0.1, contrast=0.2, gamma=0.2)
    first = augment.random_transform(image, mask, np.random.default_rng(42), **params)
    again = augment.random_transform(image, mask, np.random.default_rng(42), **params)
    other = augment.random_transform(image, mask, np.random.default_rng(43), **params)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


# --------------------------------------------------------------------------- labels and dtypes
def test_masks_keep_their_label_set():
    rng = np.random.default_rng(0)
    labels = np.array([0, 3, 7])
    mask = labels[(ndimage.gaussian_filter(rng.random((80, 80)), 3) * 30).astype(int) % 3]
    image = rng.random((80, 80, 2)).astype(np.float32)
    for mode in ("mirror", "constant", "nearest", "reflect", "wrap"):
        _, out_mask = augment.random_transform(
            image, mask, np.random.default_rng(1), fill_mode=mode, **TRANSFORMS["all"]
        )
        assert set(np.unique(out_mask)) <= set(labels.tolist()), mode
        assert out_mask.dtype == mask.dtype
    bool_mask = mask > 0
    _, out_bool = augment.elastic_deform(image, bool_mask, np.random.default_rng(2))
    assert out_bool.dtype == bool


def test_uint8_colour_image_stays_uint8_in_range():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = blob_mask(64)
    out_image, _ = augment.random_transform(image, mask, np.random.default_rng(0), **augment.PAPER_PARAMS)
    assert out_image.dtype == np.uint8 and out_image.shape == image.shape
    # cubic overshoot is clipped; float images stay inside their input range
    out_float, _ = augment.random_transform(
        image / 255.0, mask, np.random.default_rng(0), **TRANSFORMS["all"]
    )
    assert out_float.min() >= 0.0 and out_float.max() <= 1.0


def test_grey_value_changes_touch_the_image_only():
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, (32, 32), dtype=np.uint8)
    mask = blob_mask(32)
    out_image, out_mask = augment.random_transform(image, mask, np.random.default_rng(1), brightness=0.1)
    np.testing.assert_array_equal(out_mask, mask)
    shift = out_image.astype(int) - image.astype(int)
    assert np.all(shift == shift.flat[0]) and 0 < abs(shift.flat[0]) <= 0.1 * 255 + 0.5
    out_image, _ = augment.random_transform(image, mask, np.random.default_rng(1), contrast=0.5)
    # contrast scales deviations from the mean by a single factor
    factor = np.polyfit(image.ravel() - image.mean(), out_image.ravel() - image.mean(), 1)[0]
    assert 0.5 <= factor <= 1.5 and abs(factor - 1) > 0.01
    out_gamma, _ = augment.random_transform(image / 255.0, mask, np.random.default_rng(1), gamma=0.5)
    exponent = np.log(out_gamma) / np.log(image / 255.0)
    np.testing.assert_allclose(exponent, exponent.flat[0], rtol=1e-6)


# --------------------------------------------------------------------------- displacement field
def test_displacement_field_has_sigma_at_the_nodes_and_is_the_bicubic_zoom():
    size, grid, sigma = 65, 3, 10.0
    nodes = np.linspace(0, size - 1, grid).astype(int)  # 0, 32, 64
    samples = []
    for seed in range(300):
        dy, dx = augment.displacement_field((size, size), np.random.default_rng(seed), grid, sigma)
        samples.append(dy[np.ix_(nodes, nodes)])
        samples.append(dx[np.ix_(nodes, nodes)])
    samples = np.array(samples)
    # 5400 normal samples: the std is within a few percent of sigma
    assert abs(samples.std() - sigma) < 0.05 * sigma
    assert abs(samples.mean()) < 0.1 * sigma
    coarse = np.random.default_rng(7).normal(0.0, sigma, (2, grid, grid))
    dy, dx = augment.displacement_field((size, 50), np.random.default_rng(7), grid, sigma)
    factors = (size / grid, 50 / grid)
    np.testing.assert_allclose(dy, ndimage.zoom(coarse[0], factors, order=3, mode="mirror"), atol=1e-9)
    np.testing.assert_allclose(dx, ndimage.zoom(coarse[1], factors, order=3, mode="mirror"), atol=1e-9)


def test_displacement_field_is_smooth():
    dy, dx = augment.displacement_field((128, 128), np.random.default_rng(0), 3, 10.0)
    for component in (dy, dx):
        # nodes 63.5 px apart: neighbouring pixels move almost together
        assert np.abs(np.diff(component, axis=0)).max() < 1.5
        assert np.abs(np.diff(component, axis=1)).max() < 1.5
        assert np.abs(np.diff(component, 2, axis=0)).max() < 0.05
        assert component.std() > 1.0


def test_elastic_deform_reads_each_pixel_at_p_plus_the_field():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((48, 56)), 2)
    mask = (image > image.mean()).astype(np.uint8)
    dy, dx = augment.displacement_field((48, 56), np.random.default_rng(9), 3, 6.0)
    rows, cols = np.mgrid[:48, :56].astype(float)
    coords = np.stack([rows + dy, cols + dx])
    out_image, out_mask = augment.elastic_deform(image, mask, np.random.default_rng(9), sigma=6.0)
    expected = ndimage.map_coordinates(image, coords, order=3, mode="mirror")
    np.testing.assert_allclose(out_image, np.clip(expected, image.min(), image.max()), atol=1e-12)
    np.testing.assert_array_equal(out_mask, ndimage.map_coordinates(mask, coords, order=0, mode="mirror"))


# --------------------------------------------------------------------------- errors
def test_errors_are_clear():
    image, mask = np.zeros((8, 8)), np.zeros((8, 8), np.uint8)
    with pytest.raises(TypeError, match="np.random.default_rng"):
        augment.random_transform(image, mask, np.random.RandomState(0))
    with pytest.raises(TypeError, match="np.random.default_rng"):
        augment.elastic_deform(image, mask, 0)
    with pytest.raises(TypeError, match="np.random.default_rng"):
        augment.displacement_field((8, 8), None)
    with pytest.raises(ValueError, match="mask and weights must be the image's"):
        augment.random_transform(image, np.zeros((8, 9)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="mask and weights must be the image's"):
        augment.elastic_deform(np.zeros((8, 8, 3)), np.zeros((8, 8, 1)), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"shapes \[\(8, 8\), \(8, 8\), \(7, 8\)\]"):
        augment.random_transform(image, mask, np.random.default_rng(0), weights=np.zeros((7, 8)))
    with pytest.raises(ValueError, match="mask and weights must be the image's"):
        augment.random_transform(np.zeros((1, 8, 8, 1)), mask, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Unknown augmentation parameter"):
        augment.random_transform(image, mask, np.random.default_rng(0), rotation=10)
    with pytest.raises(ValueError, match="gamma"):
        augment.random_transform(image, mask, np.random.default_rng(0), gamma=1.5)
    with pytest.raises(ValueError, match="fill_mode"):
        augment.random_transform(image, mask, np.random.default_rng(0), fill_mode="bogus")
    with pytest.raises(ValueError, match="zoom_range"):
        augment.random_transform(image, mask, np.random.default_rng(0), zoom_range=(0.0, 1.2))
    with pytest.raises(ValueError, match="zoom_range"):
        augment.random_transform(image, mask, np.random.default_rng(0), zoom_range=1.0)
    with pytest.raises(ValueError, match="contrast"):
        augment.random_transform(image, mask, np.random.default_rng(0), contrast=1.0)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        augment.random_transform(image + 5, mask, np.random.default_rng(0), brightness=0.1)
    with pytest.raises(ValueError, match="how"):
        augment.keras_elastic_agreement(mask, 0, how="both")


def test_parameter_sets_have_the_documented_values():
    legacy = augment._check_params(augment.LEGACY_PARAMS)
    assert [
        legacy[k] for k in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range")
    ] == [0.2, 0.05, 0.05, 0.05]
    assert legacy["zoom_range"] == (0.95, 1.05)
    assert legacy["horizontal_flip"] and not legacy["elastic"] and legacy["fill_mode"] == "nearest"
    paper = augment._check_params(augment.PAPER_PARAMS)
    assert paper["elastic"] and (paper["elastic_grid"], paper["elastic_sigma"]) == (3, 10.0)
    assert paper["rot90"] and paper["horizontal_flip"] and paper["fill_mode"] == "mirror"
    assert set(augment.LEGACY_PARAMS) <= set(augment.DEFAULT_PARAMS) >= set(augment.PAPER_PARAMS)
    for shared in (augment.DEFAULT_PARAMS, augment.LEGACY_PARAMS, augment.PAPER_PARAMS):
        with pytest.raises(TypeError):
            shared["rotation_range"] = 5  # shared defaults are read-only


def test_default_parameters_are_the_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    mask = rng.integers(0, 3, (12, 16))
    out = augment.random_transform(image, mask, np.random.default_rng(1), **augment.DEFAULT_PARAMS)
    np.testing.assert_array_equal(out[0], image)
    np.testing.assert_array_equal(out[1], mask)


# --------------------------------------------------------------------------- Keras' elastic layer
def test_keras_elastic_layer_misaligns_image_and_mask():
    """Documents Keras 3.15: if this fails, Keras may have fixed the layer; update chapter 2."""
    realistic_mask = load_realistic_mask()
    keras = pytest.importorskip("keras")
    dict_call = augment.keras_elastic_agreement(realistic_mask, seed=3, how="dict")
    same_layer = augment.keras_elastic_agreement(realistic_mask, seed=3, how="same_layer")
    two_layers = augment.keras_elastic_agreement(realistic_mask, seed=3, how="two_layers")
    assert dict_call < 0.995 and same_layer < 0.995
    dy, dx = augment.keras_elastic_displacement((96, 96), seed=3)
    assert dy.std() > 0.5
    if keras.backend.backend() == "torch":
        # On PyTorch the seed does not fix the field: two identically seeded layers differ,
        # and the row and column shifts are drawn independently (what chapter 2 says).
        assert two_layers < 0.995
        again, _ = augment.keras_elastic_displacement((96, 96), seed=3)
        assert not np.allclose(dy, again)
        assert abs(np.corrcoef(dy[24:-24, 24:-24].ravel(), dx[24:-24, 24:-24].ravel())[0, 1]) < 0.5
    else:
        assert two_layers >= 0.98  # two identically seeded layers do share one field
        # the layer moves pixels along the diagonal only
        np.testing.assert_allclose(dy[24:-24, 24:-24], dx[24:-24, 24:-24], atol=1e-3)

"""Tests of unet_tutorial.tiling (and probing): overlap-tile exactness, tile plans, TTA.

References are computed independently of the tiling code: ``np.pad`` mirrors the image,
``models.nearest_valid_sizes`` gives the one-pass input size, and the model predicts
the whole padded image at once.
"""

import os

import keras
import numpy as np
import pytest

from unet_tutorial import models, probing, tiling

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def valid_models():
    """Small seeded valid U-Nets of depth 2, 3 and 4 (no dropout, so predictions are fixed)."""
    return {d: models.unet((None, None, 1), depth=d, base_filters=2, dropout=0, seed=d) for d in (2, 3, 4)}


@pytest.fixture(scope="module")
def same_models():
    return {
        d: models.unet((None, None, 1), padding="same", depth=d, base_filters=2, dropout=0, seed=10 + d)
        for d in (2, 3, 4)
    }


def _image(shape, seed=0, scale=4.0):
    """Random float image; values up to 4 give the tiny random models varied outputs."""
    return (np.random.default_rng(seed).random(shape) * scale).astype(np.float32)


def _predict_whole(model, padded):
    padded = padded if padded.ndim == 3 else padded[..., None]
    return np.asarray(model.predict_on_batch(padded[None]))[0]


def one_pass_valid(model, image, depth, pad_mode="symmetric", shift=0):
    """Mirror by the context, pad further at the bottom/right to a valid size, predict once."""
    c = models.context(depth)
    height, width = image.shape[:2]
    size_h = models.nearest_valid_sizes(height + 2 * c, depth)[1]
    size_w = models.nearest_valid_sizes(width + 2 * c, depth)[1]
    pads = [(c + shift, size_h - height - c - shift), (c + shift, size_w - width - c - shift)]
    pads += [(0, 0)] * (image.ndim - 2)
    out = _predict_whole(model, np.pad(image, pads, mode=pad_mode))[:height, :width]
    return out[..., 0] if out.shape[-1] == 1 else out


def one_pass_same(model, image, depth):
    """Mirror at the bottom/right to a multiple of 2**depth, predict once, crop."""
    step = 2**depth
    height, width = image.shape[:2]
    pads = [(0, -height % step), (0, -width % step)] + [(0, 0)] * (image.ndim - 2)
    out = _predict_whole(model, np.pad(image, pads, mode="symmetric"))[:height, :width]
    return out[..., 0] if out.shape[-1] == 1 else out


# ---- mirror padding ------------------------------------------------------------------


@pytest.mark.parametrize("pad_mode", ["symmetric", "reflect"])
@pytest.mark.parametrize("pads", [(1, 2, 3, 0), (7, 12, 20, 9), (0, 0, 0, 0)])
def test_mirror_pad_matches_numpy_even_beyond_the_image_size(pad_mode, pads):
    image = np.arange(5 * 6 * 2).reshape(5, 6, 2)
    top, bottom, left, right = pads
    expected = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode=pad_mode)
    np.testing.assert_array_equal(tiling.mirror_pad(image, *pads, pad_mode=pad_mode), expected)


def test_mirror_pad_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pad_mode"):
        tiling.mirror_pad(np.zeros((3, 3)), 1, 1, 1, 1, pad_mode="wrap")
    with pytest.raises(ValueError, match="non-negative"):
        tiling.mirror_pad(np.zeros((3, 3)), -1, 1, 1, 1)


# ---- model geometry and plans ----------------------------------------------------------


def _fits_valid_unet(size, depth):
    """Walk the valid U-Net's sizes by hand: -4 and halve going down, x2 and -4 going up."""
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return False
        size //= 2
    size -= 4
    for _ in range(depth):
        size = 2 * size - 4
    return size > 0


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_book_unets_carry_the_geometry_that_probing_measures(valid_models, same_models, depth):
    valid = tiling._geometry(valid_models[depth])
    assert (valid.context, valid.grid, valid.margin) == (models.context(depth), 2**depth, 0)
    fits = [s for s in range(1, 400) if tiling._smallest_fit(valid, s) == s]
    assert fits == [s for s in range(1, 400) if _fits_valid_unet(s, depth)]
    assert probing.geometry(valid_models[depth]) == valid
    same = tiling._geometry(same_models[depth])
    assert (same.context, same.grid, same.smallest) == (0, 2**depth, 2**depth)
    assert same.margin == {2: 24, 3: 48, 4: 96}[depth]
    assert probing.geometry(same_models[depth]) == same


@pytest.mark.parametrize(
    "build",
    [
        lambda: models.unet((140, 140, 3), n_classes=4, depth=3, base_filters=2),
        lambda: models.mini_unet((32, 32, 1), base_filters=2),
        lambda: models.mini_unet((None, None, 2), base_filters=2),
        lambda: models.pretrained_unet((64, 64, 1), weights=None),
    ],
    ids=["fixed valid", "fixed mini", "mini", "pretrained"],
)
def test_geometry_of_other_book_models_agrees_with_probing(build):
    model = build()
    read, measured = tiling._geometry(model), probing.geometry(model)
    if read.fixed_size:  # a model of one size takes no other: its smallest side is not used
        measured = measured._replace(smallest=read.smallest)
    assert read == measured


def test_geometry_of_a_fixed_size_multichannel_model():
    geometry = tiling._geometry(models.unet((140, 140, 3), n_classes=4, depth=3, base_filters=2))
    assert (geometry.context, geometry.fixed_size) == (44, (140, 140))


def test_models_that_are_not_image_to_image_get_a_clear_error():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="height, width, channels"):
        tiling.plan_tiles(dense, (10, 10))


def _check_covering(tiles, length, output, alignment):
    kept = np.zeros(length, int)
    for start, low, high in tiles:
        assert start % alignment == 0, "tiles must sit on the pooling grid"
        assert start <= low < high <= min(start + output, length)
        kept[low:high] += 1
    assert (kept == 1).all(), "every pixel must be kept by exactly one tile"


@pytest.mark.parametrize(
    "length, tile", [(300, 380), (437, 380), (512, 572), (2000, 572), (50, 204), (190, 220)]
)
def test_valid_plans_cover_the_image_on_the_pooling_grid(valid_models, length, tile):
    plan = tiling.plan_tiles(valid_models[4], (length, 7), tile_size=(tile, 572))
    _check_covering(plan.row_tiles, length, tile - 184, 16)
    assert plan.output_size == (tile - 184, 388)


@pytest.mark.parametrize("length, tile", [(300, 256), (512, 512), (1000, 320), (100, 512)])
def test_same_plans_keep_only_pixels_far_from_inner_tile_borders(same_models, length, tile):
    plan = tiling.plan_tiles(same_models[4], (length, 16), tile_size=tile)
    tile_rows = plan.tile_size[0]
    padded = plan.row_tiles[-1][0] + tile_rows
    assert padded % 16 == 0 and padded >= length
    _check_covering(plan.row_tiles, length, tile_rows, 16)
    for start, low, high in plan.row_tiles:
        assert low == start or low - start >= plan.margin
        assert high == length or start + tile_rows - high >= plan.margin


def test_fixed_size_same_model_gets_a_margin_that_fits_its_tile():
    plan = tiling.plan_tiles(models.mini_unet((32, 32, 1), base_filters=2), (100, 90))
    assert plan.tile_size == (32, 32) and 0 < plan.margin <= (32 - 4) // 2
    _check_covering(plan.row_tiles, 100, 32, 4)


def test_default_valid_tile_is_the_papers_and_shrinks_for_small_images(valid_models):
    assert tiling.plan_tiles(valid_models[4], (2000, 2000)).tile_size == (572, 572)
    plan = tiling.plan_tiles(valid_models[4], (100, 300))
    assert plan.tile_size == (284, 492)  # smallest valid tiles with outputs >= 100 and >= 300
    assert plan.output_size[0] >= 100 and plan.output_size[0] - 16 < 100
    assert plan.n_tiles == 1


def test_bad_tile_sizes_name_the_nearest_valid_ones(valid_models):
    with pytest.raises(ValueError, match=r"use \(572, 572\)"):
        tiling.plan_tiles(valid_models[4], (600, 600), tile_size=570)
    with pytest.raises(ValueError, match="less than the pooling grid"):
        tiling.plan_tiles(valid_models[4], (600, 600), tile_size=188)  # 4-pixel output tiles
    fixed = models.unet((92, 92, 1), depth=3, base_filters=2)
    with pytest.raises(ValueError, match=r"use \(92, 92\)"):
        tiling.plan_tiles(fixed, (50, 50), tile_size=100)


# ---- exactness ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "depth, shape, tile",
    [
        (2, (300, 437), 96),
        (2, (512, 512), 136),
        (3, (300, 437), 148),
        (3, (512, 512), 244),
        (4, (300, 437), 284),
        (4, (512, 512), 380),
    ],
)
def test_valid_tiling_equals_one_pass_over_the_mirrored_image(valid_models, depth, shape, tile):
    model, image = valid_models[depth], _image(shape, seed=depth)
    plan = tiling.plan_tiles(model, shape, tile_size=tile)
    assert plan.n_tiles >= 4, "the test must stitch several tiles"
    reference = one_pass_valid(model, image, depth)
    tiled = tiling.predict_tiled(model, image, tile_size=tile, batch_size=3)
    assert tiled.shape == shape and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, reference, atol=TOLERANCE, rtol=0)
    # the tolerance is meaningful: a reference one pixel off is far from it
    assert np.abs(one_pass_valid(model, image, depth, shift=1) - reference).max() > 100 * TOLERANCE


def test_reflect_mirroring_and_default_tiles_are_exact(valid_models):
    image = _image((200, 333), seed=5)
    tiled = tiling.predict_tiled(valid_models[3], image, pad_mode="reflect")
    reference = one_pass_valid(valid_models[3], image, 3, "reflect")
    np.testing.assert_allclose(tiled, reference, atol=TOLERANCE, rtol=0)


def test_batch_size_does_not_change_the_result(valid_models):
    image = _image((150, 170), seed=6)
    one = tiling.predict_tiled(valid_models[2], image, tile_size=80, batch_size=1)
    many = tiling.predict_tiled(valid_models[2], image, tile_size=80, batch_size=7)
    np.testing.assert_allclose(one, many, atol=1e-6, rtol=0)


@pytest.mark.parametrize("depth, tile", [(2, 64), (3, 128), (4, 256)])
def test_same_tiling_with_default_margin_equals_one_pass(same_models, depth, tile, monkeypatch):
    """The default margin (24, 48, 96 px) covers the receptive field's reach exactly."""
    model, image = same_models[depth], _image((300, 330), seed=depth)
    plan = tiling.plan_tiles(model, image.shape, tile_size=tile)
    assert plan.n_tiles >= 4 and plan.margin == {2: 24, 3: 48, 4: 96}[depth]
    reference = one_pass_same(model, image, depth)
    tiled = tiling.predict_tiled(model, image, tile_size=tile)
    np.testing.assert_allclose(tiled, reference, atol=TOLERANCE, rtol=0)
    # one pooling cell less margin leaves seams
    geometry = tiling._geometry(model)
    less = geometry._replace(margin=geometry.margin - 2**depth)
    monkeypatch.setattr(tiling, "_geometry", lambda model: less)
    smaller = tiling.predict_tiled(model, image, tile_size=tile)
    # (how large the seam is depends on the random weights, which differ between backends)
    assert np.abs(smaller - reference).max() > 10 * TOLERANCE


def test_softmax_model_with_channels(valid_models):
    model = models.unet((None, None, 3), n_classes=3, depth=2, base_filters=2, dropout=0, seed=3)
    image = _image((90, 121, 3), seed=7)
    tiled = tiling.predict_tiled(model, image, tile_size=76)
    assert tiled.shape == (90, 121, 3)
    np.testing.assert_allclose(tiled.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tiled, one_pass_valid(model, image, 2), atol=TOLERANCE, rtol=0)


def test_image_smaller_than_the_fixed_tile_of_a_model():
    model = models.unet((124, 124, 1), depth=3, base_filters=2, dropout=0, seed=4)  # output 36
    image = _image((13, 29), seed=8)
    tiled = tiling.predict_tiled(model, image)
    padded = np.pad(image, ((44, 124 - 44 - 13), (44, 124 - 44 - 29)), mode="symmetric")
    np.testing.assert_allclose(tiled, _predict_whole(model, padded)[:13, :29, 0], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_images_are_scaled_to_unit_range(valid_models, dtype):
    top = np.iinfo(dtype).max
    image = (np.random.default_rng(9).random((60, 70)) * top).astype(dtype)
    as_int = tiling.predict_tiled(valid_models[2], image)
    as_float = tiling.predict_tiled(valid_models[2], image.astype(np.float32) / top)
    np.testing.assert_allclose(as_int, as_float, atol=1e-6, rtol=0)
    assert np.abs(tiling.predict_tiled(valid_models[2], image.astype(np.float32)) - as_float).max() > 1e-3


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((40, 40, 3), np.float32), ValueError, r"\(H, W, 1\) image"),
        (np.zeros((2, 40, 40, 1), np.float32), ValueError, "loop over stacks"),
        (np.zeros(40, np.float32), ValueError, r"\(H, W\) or \(H, W, 1\)"),
    ],
)
def test_bad_images_get_clear_errors(valid_models, image, error, match):
    with pytest.raises(error, match=match):
        tiling.predict_tiled(valid_models[2], image)


def test_bad_arguments_get_clear_errors(valid_models):
    image = _image((40, 40))
    with pytest.raises(ValueError, match="pad_mode"):
        tiling.predict_tiled(valid_models[2], image, pad_mode="edge")
    with pytest.raises(ValueError, match="tile_size"):
        tiling.predict_tiled(valid_models[2], image, tile_size=96.0)


# ---- naive tiling ------------------------------------------------------------------------


def _pointwise_model():
    """A 1x1 convolution: no context, and equivariant under flips and rotations."""
    inputs = keras.Input((None, None, 1))
    weight = keras.initializers.Constant(3.0)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=weight)
    return keras.Model(inputs, conv(inputs))


def test_naive_tiling_is_exact_without_context_and_seamy_with_it(valid_models):
    image = _image((70, 90), seed=11)
    pointwise = _pointwise_model()
    np.testing.assert_allclose(
        tiling.naive_tiled(pointwise, image, tile_size=16), tiling.predict_tiled(pointwise, image), atol=1e-6
    )
    model = valid_models[2]  # tile 76 -> output 36: several blocks over 70 x 90
    naive = tiling.naive_tiled(model, image, tile_size=76)
    exact = tiling.predict_tiled(model, image, tile_size=76)
    assert naive.shape == exact.shape == (70, 90)
    assert np.abs(naive - exact).max() > 1e-2
    # one block, mirrored on its own, is exactly the overlap-tile prediction
    small = image[:30, :33]
    np.testing.assert_allclose(
        tiling.naive_tiled(model, small, 76, pad_mode="symmetric"),
        tiling.predict_tiled(model, small, 76),
        atol=1e-6,
    )


# ---- test-time augmentation ---------------------------------------------------------------


def test_dihedral_transforms_are_eight_distinct_invertible_maps():
    x = np.arange(3 * 4 * 2).reshape(3, 4, 2)
    pairs = tiling.dihedral_transforms()
    assert len(pairs) == 8
    images = [forward(x) for forward, _ in pairs]
    np.testing.assert_array_equal(images[0], x)
    assert len({(im.shape, im.tobytes()) for im in images}) == 8
    for (forward, inverse), im in zip(pairs, images):
        np.testing.assert_array_equal(inverse(forward(x)), x)
        assert im.shape[2] == 2 and sorted(im.shape[:2]) == [3, 4]
        assert {tuple(im[0, 0]), tuple(im[0, -1]), tuple(im[-1, 0]), tuple(im[-1, -1])} == {
            tuple(x[0, 0]),
            tuple(x[0, -1]),
            tuple(x[-1, 0]),
            tuple(x[-1, -1]),
        }, "a symmetry of the square maps corners to corners"


def test_tta_of_an_equivariant_model_equals_the_plain_prediction():
    image = _image((37, 52), seed=12)
    model = _pointwise_model()
    np.testing.assert_allclose(
        tiling.predict_tiled(model, image, tta=True), tiling.predict_tiled(model, image), atol=1e-6
    )


def test_tta_is_the_mean_of_the_eight_mapped_back_predictions(valid_models):
    model, image = valid_models[2], _image((45, 61), seed=13)
    manual = []
    for flip in (False, True):
        for turns in range(4):  # written out here, independently of dihedral_transforms
            view = np.rot90(image[:, ::-1] if flip else image, turns)
            back = np.rot90(one_pass_valid(model, view, 2), -turns)
            manual.append(back[:, ::-1] if flip else back)
    manual = np.mean(manual, axis=0)
    tta = tiling.predict_tiled(model, image, tta=True)
    np.testing.assert_allclose(tta, manual, atol=TOLERANCE, rtol=0)
    assert np.abs(tta - tiling.predict_tiled(model, image)).max() > 1e-3


# ---- real data ------------------------------------------------------------------------------


def test_isbi_slice_tiles_exactly(valid_models):
    root = os.environ.get("UNET_TUTORIAL_DATA")
    if not root:
        pytest.skip("UNET_TUTORIAL_DATA is unset: point it at a folder holding isbi2012/ to run this test")
    import tifffile

    image = tifffile.imread(os.path.join(root, "isbi2012", "test-volume.tif"), key=0)
    tiled = tiling.predict_tiled(valid_models[3], image, tile_size=188)
    reference = one_pass_valid(valid_models[3], image.astype(np.float32) / 255, 3)
    np.testing.assert_allclose(tiled, reference, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("pad_mode", ["symmetric", "reflect"])
def test_mirror_window_equals_a_window_of_np_pad(pad_mode):
    image = np.arange(5 * 7 * 2).reshape(5, 7, 2)
    padded = np.pad(image, ((20, 20), (20, 20), (0, 0)), mode=pad_mode)
    for top, left, height, width in [(-20, -20, 45, 47), (-3, 4, 6, 9), (1, 1, 3, 3), (4, -17, 13, 2)]:
        window = tiling.mirror_window(image, top, left, height, width, pad_mode=pad_mode)
        np.testing.assert_array_equal(
            window, padded[top + 20 : top + 20 + height, left + 20 : left + 20 + width]
        )
    one_pixel = tiling.mirror_window(np.array([[7]]), -3, -2, 2, 5, pad_mode=pad_mode)
    np.testing.assert_array_equal(one_pixel, np.full((2, 5), 7))


def test_center_crop_keeps_further_axes_and_explains_odd_margins():
    image = np.arange(6 * 8 * 2).reshape(6, 8, 2)
    np.testing.assert_array_equal(tiling.center_crop(image, (2, 4)), image[2:4, 2:6])
    with pytest.raises(ValueError, match="even number"):
        tiling.center_crop(image, (3, 4))
    with pytest.raises(ValueError, match="size must be a positive int"):
        tiling.center_crop(image, 0)

"""Tests of unet_tutorial.plotting: figures are checked by their axes, titles and drawn data."""

import io
import os
import subprocess
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

from unet_tutorial import plotting


def drawn(ax):
    """The array an axes' first image shows."""
    return np.asarray(ax.images[0].get_array())


# ----------------------------------------------------------------------------- package
def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, unet_tutorial; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------------- overlay
def test_overlay_blends_colour_inside_mask_and_keeps_image_outside():
    image = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    mask = np.array([[True, False], [False, True]])
    out = plotting.overlay(image, mask, color=(0, 1, 0), alpha=0.25)
    grey = image / 255.0
    assert out.shape == (2, 2, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out[0, 0], [0.75 * grey[0, 0], 0.75 * grey[0, 0] + 0.25, 0.75 * grey[0, 0]])
    np.testing.assert_allclose(out[1, 1], [0.75, 1.0, 0.75])
    np.testing.assert_allclose(out[0, 1], [grey[0, 1]] * 3)
    np.testing.assert_allclose(out[1, 0], [grey[1, 0]] * 3)


def test_overlay_treats_nonzero_integers_as_mask_and_floats_as_weights():
    image = np.full((1, 3), 0.5)
    hard = plotting.overlay(image, np.array([[0, 1, 255]]), alpha=1.0)
    np.testing.assert_allclose(hard[0, 0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(hard[0, 1], [1, 0, 0])
    np.testing.assert_allclose(hard[0, 2], [1, 0, 0])
    soft = plotting.overlay(image, np.array([[0.0, 0.5, 1.0]]), alpha=1.0)
    np.testing.assert_allclose(soft[0, 1], [0.75, 0.25, 0.25])


def test_overlay_keeps_rgb_images_and_uint16_scaling():
    rgb = np.zeros((2, 2, 3))
    rgb[..., 2] = 1.0
    out = plotting.overlay(rgb, np.zeros((2, 2), bool))
    np.testing.assert_allclose(out, rgb)
    wide = plotting.overlay(np.full((1, 1), 65535, np.uint16), np.zeros((1, 1), bool))
    np.testing.assert_allclose(wide, 1.0)


@pytest.mark.parametrize(
    "image, mask, kwargs, message",
    [
        (np.zeros((2, 2)), np.zeros((3, 3), bool), {}, "must match"),
        (np.full((2, 2), 2.0), np.zeros((2, 2), bool), {}, r"\[0, 1\]"),
        (np.zeros((2, 2)), np.zeros((2, 2), bool), {"color": (255, 0, 0)}, "color"),
    ],
)
def test_overlay_rejects_bad_input(image, mask, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plotting.overlay(image, mask, **kwargs)


# ----------------------------------------------------------------------------- show_images
def test_show_images_draws_each_image_with_its_title_in_a_grid():
    images = [np.full((4, 5), 40 * (i + 1), dtype=np.uint8) for i in range(6)]
    fig = plotting.show_images(images, titles=[f"t{i}" for i in range(6)], ncols=4, size=2)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == [f"t{i}" for i in range(6)]
    for ax, image in zip(fig.axes, images):
        np.testing.assert_array_equal(drawn(ax), image)
        assert ax.images[0].get_clim() == (0, 255)
    geometry = fig.axes[0].get_subplotspec().get_geometry()
    assert geometry[:2] == (2, 4)
    np.testing.assert_allclose(fig.get_size_inches(), [8, 4])


def test_show_images_draws_masks_on_zero_to_one():
    mask = np.array([[0, 1], [1, 1]], dtype=np.uint8)  # 1 = cell, as unet_tutorial.data returns
    fig = plotting.show_images([mask, mask.astype(bool), mask * 255, mask * 0.5])
    limits = [ax.images[0].get_clim() for ax in fig.axes]
    assert limits[:3] == [(0, 1), (0, 1), (0, 255)]
    assert limits[3] == (0.0, 0.5)  # floats are stretched


def test_show_images_accepts_stacks_single_images_and_channel_axes():
    stack = np.random.default_rng(0).random((3, 4, 4, 1))
    fig = plotting.show_images(stack)
    assert len(fig.axes) == 3
    np.testing.assert_allclose(drawn(fig.axes[2]), stack[2, ..., 0])
    single = plotting.show_images(np.eye(3))
    assert len(single.axes) == 1
    rgb = plotting.show_images([np.zeros((4, 4, 3))])
    assert drawn(rgb.axes[0]).shape == (4, 4, 3)


def test_figures_are_released_by_pyplot():
    import matplotlib.pyplot as plt

    plt.close("all")
    figures = [
        plotting.show_images([np.zeros((2, 2))]),
        plotting.show_prediction(np.zeros((2, 2)), None, np.zeros((2, 2))),
        plotting.show_field(np.zeros((4, 4)), np.zeros((4, 4))),
        plotting.show_feature_maps(np.zeros((2, 2, 2))),
    ]
    assert plt.get_fignums() == []  # closed: shown once, where the caller displays them
    assert all(len(fig.axes) >= 1 for fig in figures)


def test_show_images_renders_to_png():
    fig = plotting.show_images([np.zeros((4, 4), bool)], size=1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "images, kwargs, error",
    [
        ([np.zeros((2, 2))], {"titles": ["a", "b"]}, ValueError),
        ([], {}, ValueError),
        ([np.zeros((2, 2, 5))], {}, ValueError),
        (np.zeros(5), {}, ValueError),
        ("image.png", {}, ValueError),
    ],
)
def test_show_images_rejects_bad_input(images, kwargs, error):
    with pytest.raises(error):
        plotting.show_images(images, **kwargs)


# ----------------------------------------------------------------------------- show_prediction
def test_show_prediction_panels_and_thresholded_mask():
    rng = np.random.default_rng(1)
    prob = rng.random((6, 6))
    truth = (rng.random((6, 6)) > 0.5).astype(np.uint8)
    fig = plotting.show_prediction(rng.random((6, 6)), truth, prob, threshold=0.3)
    *panels, colour_bar = fig.axes  # the probability panel's colour bar comes last
    assert [ax.get_title() for ax in panels] == ["input", "truth", "probability", "prob > 0.3"]
    assert (
        colour_bar.get_ylim() == (0, 1) and fig.axes[2].images[0].get_cmap().name == plotting.PROBABILITY_CMAP
    )
    np.testing.assert_allclose(drawn(fig.axes[2]), prob)
    np.testing.assert_array_equal(drawn(fig.axes[3]), (prob > 0.3).astype(np.uint8))
    assert fig.axes[2].images[0].get_clim() == (0, 1)


def test_show_prediction_crops_larger_input_and_drops_missing_truth():
    image = np.arange(100, dtype=np.float64).reshape(10, 10) / 100
    prob = np.full((6, 6, 1), 0.9)
    fig = plotting.show_prediction(image, None, prob)
    assert [ax.get_title() for ax in fig.axes[:-1]] == ["input", "probability", "prob > 0.5"]
    np.testing.assert_allclose(drawn(fig.axes[0]), image[2:8, 2:8])
    assert drawn(fig.axes[2]).all()


@pytest.mark.parametrize(
    "image_shape, prob, threshold",
    [
        ((7, 7), np.zeros((6, 6)), 0.5),  # odd margin cannot be centred
        ((4, 4), np.zeros((6, 6)), 0.5),  # input smaller than output
        ((6, 6), np.full((6, 6), 1.5), 0.5),  # not a probability
        ((6, 6), np.zeros((6, 6)), 2.0),
        ((6, 6), np.zeros((6, 6, 2)), 0.5),
    ],
)
def test_show_prediction_rejects_bad_input(image_shape, prob, threshold):
    with pytest.raises(ValueError):
        plotting.show_prediction(np.zeros(image_shape), None, prob, threshold=threshold)


# ----------------------------------------------------------------------------- show_field
def test_show_field_draws_grid_lines_through_displaced_positions():
    height, width, step = 20, 30, 8
    rows, cols = np.mgrid[0:height, 0:width].astype(float)
    dy, dx = 0.1 * cols, -0.05 * rows
    fig = plotting.show_field(dy, dx, step=step)
    ax = fig.axes[0]
    row_lines, col_lines = [0, 8, 16, 19], [0, 8, 16, 24, 29]  # every 8th, plus the last
    assert len(ax.lines) == len(row_lines) + len(col_lines)
    x, y = ax.lines[1].get_data()  # second horizontal line: row 8
    np.testing.assert_allclose(x, np.arange(width) - 0.05 * 8)
    np.testing.assert_allclose(y, 8 + 0.1 * np.arange(width))
    x, y = ax.lines[len(row_lines) + 2].get_data()  # third vertical line: column 16
    np.testing.assert_allclose(x, 16 - 0.05 * np.arange(height))
    np.testing.assert_allclose(y, np.arange(height) + 1.6)
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # image coordinates: y grows downwards


def test_show_field_of_zero_field_is_a_square_grid_over_the_image():
    image = np.zeros((16, 16), np.uint8)
    fig = plotting.show_field(np.zeros((16, 16)), np.zeros((16, 16)), step=4, image=image)
    ax = fig.axes[0]
    assert len(ax.images) == 1 and len(ax.lines) == 10  # rows and columns 0, 4, 8, 12, 15
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, 0)
    np.testing.assert_allclose(x, np.arange(16))
    x, y = ax.lines[4].get_data()
    np.testing.assert_allclose(y, 15)
    assert ax.get_title() == "max displacement 0.0 px"


def test_show_field_rejects_bad_input():
    with pytest.raises(ValueError, match="of one shape"):
        plotting.show_field(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="step"):
        plotting.show_field(np.zeros((4, 4)), np.zeros((4, 4)), step=0)
    with pytest.raises(ValueError, match="image"):
        plotting.show_field(np.zeros((4, 4)), np.zeros((4, 4)), image=np.zeros((5, 5)))


# ----------------------------------------------------------------------------- feature maps
def test_show_feature_maps_shows_first_n_channels():
    maps = np.random.default_rng(2).random((1, 5, 5, 12)).astype(np.float32)
    fig = plotting.show_feature_maps(maps, n=8)
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes] == [f"channel {c}" for c in range(8)]
    np.testing.assert_allclose(drawn(fig.axes[5]), maps[0, ..., 5], rtol=1e-6)
    few = plotting.show_feature_maps(maps[0, ..., :3], n=8)
    assert len(few.axes) == 3


def test_show_feature_maps_rejects_batches_and_bad_shapes():
    with pytest.raises(ValueError, match="one image's"):
        plotting.show_feature_maps(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError):
        plotting.show_feature_maps(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        plotting.show_feature_maps(np.zeros((4, 4, 3)), n=0)

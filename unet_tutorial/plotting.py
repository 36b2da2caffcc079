"""Figures for the chapters: image grids, mask overlays, predictions, deformation fields.

Every function that draws returns a :class:`matplotlib.figure.Figure` that pyplot has
already let go of (``plt.close``): it is shown exactly once, where you display it, and
figures do not pile up in pyplot's list. In a notebook, end the cell with the call (or
pass the figure to ``display``) to see it; ``fig.savefig(...)`` writes it to a file.
pyplot still makes each figure, so that in a notebook the inline backend is loaded and
registers its PNG display of figures; closing it at once stops the backend from also
showing it at the end of the cell, which would draw it twice. The functions work with any
backend (the tests use Agg).

One-channel images are drawn on fixed ranges where that is what they mean: booleans and
integer 0/1 masks on 0..1, other uint8 images on 0..255, so a mask or image that is all
one value does not look half grey; other types are stretched from their minimum to their
maximum.

matplotlib is imported only when a figure is made, so ``import unet_tutorial`` stays
light.

Taught in chapter 1 (Semantic segmentation), where images and masks are first shown.
"""

from __future__ import annotations

import numpy as np

from unet_tutorial import tiling

__all__ = ["PROBABILITY_CMAP", "show_images", "overlay", "show_prediction", "show_field", "show_feature_maps"]

#: The one colour map of probability maps in the book: 0 black, 1 pale yellow.
PROBABILITY_CMAP = "magma"


def _new_figure(width, height):
    """A figure of ``width`` x ``height`` inches that pyplot has let go of (module notes)."""
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(figure)
    return figure


def _as_displayable(image, what="image"):
    """(H, W) or (H, W, 3|4) array; a trailing channel of size 1 is dropped."""
    array = np.asarray(image)
    array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    if array.ndim != 2 and not (array.ndim == 3 and array.shape[-1] in (3, 4)):
        raise ValueError(f"{what} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}.")
    return array


def _grey_limits(array):
    """(vmin, vmax) of a panel: (0, 1) for masks, (0, 255) for other uint8 images, else stretched."""
    if array.ndim != 2:
        return None, None
    integers = np.issubdtype(array.dtype, np.integer)
    if array.dtype == bool or (integers and 0 <= array.min() <= array.max() <= 1):
        return 0, 1
    return (0, 255) if array.dtype == np.uint8 else (None, None)


def _show(panels, ncols, size):
    """A figure of (title, array, cmap, (vmin, vmax)) panels, ``ncols`` a row, each ``size`` inches."""
    nrows = -(-len(panels) // ncols)
    figure = _new_figure(ncols * size, nrows * size)
    for index, (title, array, cmap, (vmin, vmax)) in enumerate(panels):
        ax = figure.add_subplot(nrows, ncols, index + 1)
        array = array.astype(np.uint8) if array.dtype == bool else array
        ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(str(title))
        ax.set_axis_off()
    return figure


def show_images(images, titles=None, cmap="gray", ncols=None, size=3):
    """Show images side by side, ``ncols`` a row (default all, at most 4), each ``size`` inches square.

    ``images`` is a list of (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) images, a stack (N, H, W[, C]), or
    one (H, W) image: wrap one RGB image in a list. ``cmap`` colours one-channel images, drawn on fixed
    ranges for masks and uint8 images (module notes). ``titles``: one per image.
    Taught in chapter 1 (Semantic segmentation).
    """
    images = [images] if isinstance(images, np.ndarray) and images.ndim == 2 else list(images)
    arrays = [_as_displayable(image, f"images[{i}]") for i, image in enumerate(images)]
    titles = [""] * len(arrays) if titles is None else list(titles)
    if not arrays or len(titles) != len(arrays):
        raise ValueError(f"got {len(arrays)} images and {len(titles)} titles; pass images, one title each.")
    ncols = min(len(arrays), 4 if ncols is None else ncols)
    return _show([(title, a, cmap, _grey_limits(a)) for title, a in zip(titles, arrays)], ncols, size)


def overlay(image, mask, color=(1, 0, 0), alpha=0.4):
    """Tint the pixels of a mask on an image: ``(1 - alpha * m) * image + alpha * m * color``, (H, W, 3).

    ``image`` is (H, W), (H, W, 1) or (H, W, 3): integers are divided by their dtype's maximum, floats
    must lie in [0, 1]. The (H, W) ``mask`` tints where it is non-zero, or for floats in proportion to
    its value (e.g. probabilities). ``color`` is RGB from 0 to 1.
    Taught in chapter 1 (Semantic segmentation).

    Examples
    --------
    >>> overlay(np.array([[0, 255]], np.uint8), np.array([[True, False]]), color=(0, 0, 1), alpha=0.5)
    array([[[0. , 0. , 0.5],
            [1. , 1. , 1. ]]])
    """
    rgb = _as_unit_float(_as_displayable(image), "image")
    rgb = np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb
    weight = _as_displayable(mask, "mask")
    if rgb.shape[-1] != 3 or weight.shape != rgb.shape[:2]:
        raise ValueError(f"mask {np.shape(mask)} must match image {np.shape(image)}, (H, W) or (H, W, 3).")
    integer = weight.dtype == bool or np.issubdtype(weight.dtype, np.integer)
    weight = (weight != 0).astype(np.float64) if integer else _as_unit_float(weight, "mask")
    tint = np.asarray(color, dtype=np.float64)
    if tint.shape != (3,) or tint.min() < 0 or tint.max() > 1:
        raise ValueError(f"color must be three numbers from 0 to 1 (r, g, b), got {color!r}.")
    strength = alpha * weight[..., None]
    return (1 - strength) * rgb + strength * tint


def _as_unit_float(array, what):
    """``array`` as float64 in [0, 1]; integers are divided by their dtype's maximum."""
    if np.issubdtype(array.dtype, np.integer):
        return array / float(np.iinfo(array.dtype).max)
    array = array.astype(np.float64)
    if np.nanmin(array) < 0 or np.nanmax(array) > 1:
        raise ValueError(f"float {what} must lie in [0, 1]; rescale it first (data.percentile_normalize).")
    return array


def show_prediction(image, truth, prob, threshold=0.5, size=3):
    """Input, truth, predicted probability and its mask ``prob > threshold``, side by side.

    ``prob`` ((h, w) or (h, w, 1), the foreground's probability) is drawn in :data:`PROBABILITY_CMAP` with a
    colour bar; ``image`` and ``truth`` (None: no panel) are cropped to its size, a valid U-Net's output.
    Taught in chapter 3 (A mini U-Net).
    """
    probability = _as_displayable(prob, "prob").astype(np.float64)
    if probability.ndim != 2 or np.nanmin(probability) < 0 or np.nanmax(probability) > 1:
        raise ValueError(f"prob must hold (h, w) values in [0, 1], a sigmoid's output; got {np.shape(prob)}.")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a number from 0 to 1, got {threshold!r}.")
    panels = []
    for title, what, array in (("input", "image", image), ("truth", "truth", truth)):
        if title == "input" or array is not None:
            array = tiling.center_crop(_as_displayable(array, what), probability.shape)
            panels.append((title, array, "gray", _grey_limits(array)))
    panels.append(("probability", probability, PROBABILITY_CMAP, (0, 1)))
    panels.append((f"prob > {threshold:g}", probability > threshold, "gray", (0, 1)))
    figure = _show(panels, len(panels), size)
    figure.colorbar(figure.axes[-2].images[0], ax=figure.axes[-2], fraction=0.046, pad=0.04)  # probability
    return figure


def show_field(dy, dx, step=16, image=None, size=5):
    """Draw a displacement field as a deformed grid, over ``image`` if given.

    Each grid line joins the input positions ``(y + dy, x + dx)`` that the output pixels ``(y, x)`` of
    one row (or column) of a regular grid, every ``step`` pixels and the last, read from: the convention
    of :func:`unet_tutorial.augment.displacement_field`. A zero field draws a square grid. The lines are
    drawn rows first, then columns, in image coordinates (y down); the figure is ``size`` inches wide.

    Taught in chapter 2 (Augmentation).
    """
    dy, dx = np.asarray(dy, dtype=np.float64), np.asarray(dx, dtype=np.float64)
    if dy.ndim != 2 or dy.shape != dx.shape:
        raise ValueError(f"dy and dx must be two (H, W) arrays of one shape, got {dy.shape} and {dx.shape}.")
    if step < 1:
        raise ValueError(f"step must be a positive number of pixels, got {step!r}.")
    height, width = dy.shape
    rows = np.union1d(np.arange(0, height, step), [height - 1])
    cols = np.union1d(np.arange(0, width, step), [width - 1])
    figure = _new_figure(size, size * height / width)
    ax = figure.add_subplot(1, 1, 1)
    for row in rows:
        ax.plot(np.arange(width) + dx[row], row + dy[row], color="tab:orange", linewidth=1)
    for col in cols:
        ax.plot(col + dx[:, col], np.arange(height) + dy[:, col], color="tab:orange", linewidth=1)
    if image is not None:
        background = _as_displayable(image)
        if background.shape[:2] != dy.shape:
            raise ValueError(f"image has shape {background.shape[:2]} but the field is {dy.shape}.")
        ax.imshow(background, cmap="gray", zorder=0)
    ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5), aspect="equal")
    ax.set_title(f"max displacement {np.hypot(dy, dx).max():.1f} px")
    return figure


def show_feature_maps(maps, n=8, ncols=4, size=2):
    """The first ``n`` channels of a layer's output, each stretched to its own range (scales differ).

    ``maps`` is (H, W, C), or (1, H, W, C) from ``model.predict`` of one image; axes: "channel 0", ...
    Taught in chapter 3 (A mini U-Net).
    """
    activations = np.asarray(maps)
    activations = activations[0] if activations.ndim == 4 and len(activations) == 1 else activations
    if activations.ndim != 3:
        raise ValueError(f"maps must be one image's (H, W, C) or (1, H, W, C), got {np.shape(maps)}.")
    channels = np.moveaxis(activations[..., :n], -1, 0).astype(np.float64)  # (n or fewer, H, W)
    titles = [f"channel {c}" for c in range(len(channels))]
    return show_images(channels, titles, cmap="viridis", ncols=ncols, size=size)

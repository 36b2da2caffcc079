"""Figures for the chapters: image grids, mask overlays, predictions, deformation fields.

Every function that draws returns a :class:`matplotlib.figure.Figure` that pyplot has
already let go of (``plt.close``): it is shown exactly once, where you display it, and
figures do not pile up in pyplot's list. In a notebook, end the cell with the call (or
pass the figure to ``display``) to see it; ``fig.savefig(...)`` writes it to a file.
The functions work with any backend (the tests use Agg).

matplotlib is imported only when a figure is made, so ``import unet_tutorial`` stays
light; this module is never imported by the package itself.

Taught in chapter 1 (Semantic segmentation), where images and masks are first shown.
"""

from __future__ import annotations

import numbers

import numpy as np

from unet_tutorial import tiling

__all__ = [
    "show_images",
    "overlay",
    "show_prediction",
    "show_field",
    "show_feature_maps",
]


# --------------------------------------------------------------------------- helpers
def _new_figure(width, height):
    # pyplot makes the figure so that, in a notebook, the inline backend is loaded and
    # registers its PNG display of figures; closing it at once stops the backend from
    # also showing it at the end of the cell, which would draw it twice.
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def _as_displayable(image, what="image"):
    """(H, W) or (H, W, 3|4) array; a trailing channel of size 1 is dropped."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
        return array
    raise ValueError(
        f"{what} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}."
    )


def _grey_limits(array):
    """Fixed grey ranges for masks and uint8 images, so a uniform mask is not stretched."""
    if array.dtype == bool:
        return 0, 1
    if np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 1:
        return 0, 1  # a 0/1 mask such as unet_tutorial.data's
    if array.dtype == np.uint8:
        return 0, 255
    return None, None


def _draw(ax, array, title=None, cmap="gray", vmin=None, vmax=None):
    if array.dtype == bool:
        array = array.astype(np.uint8)
    ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if title is not None:
        ax.set_title(str(title))
    ax.set_axis_off()


def _as_unit_float(image, what="image"):
    """Grey or RGB image as float64 in [0, 1]; integers are divided by their dtype's maximum."""
    array = np.asarray(image)
    if array.dtype == bool:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and array.min() < 0:
            raise ValueError(f"{what} holds negative integers; pass values from 0 upwards.")
        return array / float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
            raise ValueError(
                f"float {what} must lie in [0, 1], got {np.nanmin(array):.3g}..{np.nanmax(array):.3g}; "
                "rescale it first (e.g. unet_tutorial.data.percentile_normalize)."
            )
        return array.astype(np.float64)
    raise TypeError(f"{what} must hold numbers, got dtype {array.dtype}.")


def _check_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def _stack_of_images(images):
    """A list of displayable arrays from a list, a (N, H, W[, C]) stack or one (H, W) image."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            images = [images]
        elif images.ndim in (3, 4):
            images = list(images)
        else:
            raise ValueError(
                f"an image array must be (H, W), (N, H, W) or (N, H, W, C), got shape {images.shape}; "
                "pass a single RGB image inside a list: [rgb]."
            )
    elif not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be a NumPy array or a list of arrays, got {type(images).__name__}.")
    if len(images) == 0:
        raise ValueError("images is empty: pass at least one image.")
    return [_as_displayable(image, f"images[{i}]") for i, image in enumerate(images)]


# --------------------------------------------------------------------------- public
def show_images(images, titles=None, cmap="gray", ncols=None, size=3):
    """Show images side by side in a grid.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    images : list of array_like or numpy.ndarray
        A list of (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) images (sizes may differ), a
        stack (N, H, W) or (N, H, W, C), or one (H, W) image. Wrap a single RGB image in
        a list, since a lone (H, W, 3) array would read as three grey images.
    titles : sequence of str, optional
        One title per image.
    cmap : str
        Colour map for one-channel images. Booleans and integer 0/1 masks are drawn
        on the range 0..1, other uint8 images on 0..255, so a mask or image that is
        all one value does not look half grey; other types are stretched from their
        minimum to their maximum.
    ncols : int, optional
        Images per row; defaults to all of them, at most 4.
    size : float
        Width and height of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per image, in order.
    """
    arrays = _stack_of_images(images)
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(arrays):
            raise ValueError(f"got {len(titles)} titles for {len(arrays)} images; give one per image.")
    if ncols is None:
        ncols = min(len(arrays), 4)
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    if not isinstance(size, numbers.Real) or size <= 0:
        raise ValueError(f"size must be a positive number of inches, got {size!r}.")
    ncols = min(int(ncols), len(arrays))
    nrows = -(-len(arrays) // ncols)
    fig = _new_figure(ncols * size, nrows * size)
    for index, array in enumerate(arrays):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        vmin, vmax = _grey_limits(array) if array.ndim == 2 else (None, None)
        _draw(ax, array, None if titles is None else titles[index], cmap, vmin, vmax)
    return fig


def overlay(image, mask, color=(1, 0, 0), alpha=0.4):
    """Tint the pixels of a mask on top of an image.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    image : array_like
        (H, W), (H, W, 1) or (H, W, 3). Integer images are divided by their dtype's
        maximum (255 for uint8); float images must already lie in [0, 1].
    mask : array_like
        (H, W). Booleans and integers tint where they are non-zero; floats in [0, 1]
        (e.g. probabilities) tint in proportion to their value.
    color : sequence of 3 floats
        RGB tint, each from 0 to 1.
    alpha : float
        Opacity of the tint where the mask is 1.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float64 in [0, 1]: ``(1 - alpha * m) * image + alpha * m * color``
        with ``m`` the mask, so pixels outside the mask keep the image's values.
    """
    rgb = _as_unit_float(image, "image")
    if rgb.ndim == 3 and rgb.shape[-1] == 1:
        rgb = rgb[..., 0]
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got {np.shape(image)}.")
    weight = np.asarray(mask)
    if weight.ndim == 3 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    if weight.shape != rgb.shape[:2]:
        raise ValueError(f"mask has shape {weight.shape} but the image is {rgb.shape[:2]}; they must match.")
    if weight.dtype == bool or np.issubdtype(weight.dtype, np.integer):
        weight = (weight != 0).astype(np.float64)
    else:
        weight = _as_unit_float(weight, "mask")
    tint = np.asarray(color, dtype=np.float64)
    if tint.shape != (3,) or tint.min() < 0 or tint.max() > 1:
        raise ValueError(f"color must be three numbers from 0 to 1 (r, g, b), got {color!r}.")
    strength = _check_fraction(alpha, "alpha") * weight[..., None]
    return (1 - strength) * rgb + strength * tint


def show_prediction(image, truth, prob, threshold=0.5, size=3):
    """Input, ground truth, predicted probability and its thresholded mask side by side.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    image : array_like
        (H, W) or (H, W, C) network input. When it is larger than ``prob`` by an even
        margin (a valid-padding U-Net's output is smaller than its input), its centre
        is shown, cropped to the output's size.
    truth : array_like or None
        (h, w) label mask, cropped like ``image``; None (e.g. for unlabelled test
        slices) leaves its panel out.
    prob : array_like
        (h, w) or (h, w, 1) probability of the foreground class, from 0 to 1.
    threshold : float
        Pixels with ``prob > threshold`` form the predicted mask.
    size : float
        Width and height of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Axes titled "input", "truth" (if given), "probability" and "prob > <threshold>".
    """
    probability = _as_displayable(prob, "prob")
    if probability.ndim != 2:
        raise ValueError(f"prob must be one probability per pixel, (h, w) or (h, w, 1), got {np.shape(prob)}.")
    probability = _as_unit_float(probability.astype(np.float64, copy=False), "prob")
    threshold = _check_fraction(threshold, "threshold")
    panels = [("input", tiling.center_crop(_as_displayable(image), probability.shape), None)]
    if truth is not None:
        panels.append(("truth", tiling.center_crop(_as_displayable(truth, "truth"), probability.shape), None))
    panels.append(("probability", probability, (0, 1)))
    panels.append((f"prob > {threshold:g}", probability > threshold, (0, 1)))
    fig = _new_figure(len(panels) * size, size)
    for index, (title, array, limits) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        vmin, vmax = limits if limits else (_grey_limits(array) if array.ndim == 2 else (None, None))
        cmap = "magma" if title == "probability" else "gray"
        _draw(ax, array, title, cmap, vmin, vmax)
    return fig


def show_field(dy, dx, step=16, image=None, size=5):
    """Draw a displacement field as a deformed grid.

    Each grid line joins the input positions ``(y + dy, x + dx)`` that the output pixels
    ``(y, x)`` on one row (or column) of a regular grid read from, the convention of
    :func:`unet_tutorial.augment.displacement_field`. A zero field draws a square grid.

    Taught in chapter 2 (Augmentation).

    Parameters
    ----------
    dy, dx : array_like
        (H, W) row and column displacements in pixels.
    step : int
        Distance between grid lines in pixels.
    image : array_like, optional
        (H, W) or (H, W, 3) image drawn beneath the grid, e.g. the undeformed input.
    size : float
        Width of the figure in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its first lines are the horizontal grid lines (rows 0, step, 2 step,
        ... and the last row), then the vertical ones likewise, in image coordinates
        (y down).
    """
    dy, dx = np.asarray(dy, dtype=np.float64), np.asarray(dx, dtype=np.float64)
    if dy.ndim != 2 or dy.shape != dx.shape:
        raise ValueError(f"dy and dx must be two (H, W) arrays of the same shape, got {dy.shape} and {dx.shape}.")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be a positive integer number of pixels, got {step!r}.")
    height, width = dy.shape
    # every step-th row and column, plus the last ones so the grid has a closed frame
    rows = np.union1d(np.arange(0, height, step), [height - 1])
    cols = np.union1d(np.arange(0, width, step), [width - 1])
    fig = _new_figure(size, size * height / width)
    ax = fig.add_subplot(1, 1, 1)
    for row in rows:
        ax.plot(np.arange(width) + dx[row], row + dy[row], color="tab:orange", linewidth=1)
    for col in cols:
        ax.plot(col + dx[:, col], np.arange(height) + dy[:, col], color="tab:orange", linewidth=1)
    if image is not None:
        background = _as_displayable(image)
        if background.shape[:2] != dy.shape:
            raise ValueError(f"image has shape {background.shape[:2]} but the field is {dy.shape}.")
        ax.imshow(background, cmap="gray", zorder=0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(f"max displacement {np.hypot(dy, dx).max():.1f} px")
    return fig


def show_feature_maps(maps, n=8, ncols=4, size=2):
    """Show the first channels of a layer's output.

    Each channel is stretched to its own minimum and maximum, since activations of
    different channels live on very different scales.

    Taught in chapter 3 (A mini U-Net).

    Parameters
    ----------
    maps : array_like
        (H, W, C) activations, or (1, H, W, C) straight from ``model.predict`` on one
        image.
    n : int
        How many channels to show (all of them if there are fewer).
    ncols : int
        Panels per row.
    size : float
        Width and height of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``min(n, C)`` axes titled "channel 0", "channel 1", ...
    """
    activations = np.asarray(maps)
    if activations.ndim == 4:
        if activations.shape[0] != 1:
            raise ValueError(
                f"maps holds a batch of {activations.shape[0]} images; pass one of them, e.g. maps[0]."
            )
        activations = activations[0]
    if activations.ndim != 3:
        raise ValueError(f"maps must be (H, W, C) or (1, H, W, C), got shape {np.shape(maps)}.")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    count = min(int(n), activations.shape[-1])
    channels = [activations[..., c].astype(np.float64) for c in range(count)]
    return show_images(channels, [f"channel {c}" for c in range(count)], cmap="viridis", ncols=ncols, size=size)

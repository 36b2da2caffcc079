"""Your own data: folders of images and colour-coded masks.

Most segmentation data sets, and most annotation tools, give two folders: images, and one
mask per image with the same file stem. Masks with several classes are colour images; a
palette ``{name: (r, g, b)}`` says which colour is which class, its order giving the class
index. This module reads such folders (:func:`load_folder`), turns colours into classes and
back (:func:`mask_to_classes`, :func:`classes_to_rgb`), and reads the images a trained
network should segment (:func:`load_images`). Images are PNG, TIFF, JPEG or BMP files,
sorted naturally (``2`` before ``10``).

Taught in chapter 7 (Your own data and pretrained encoders); chapter 1 introduces palettes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderData",
    "classes_to_rgb",
    "load_folder",
    "load_images",
    "mask_to_classes",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_LOSSY_EXTENSIONS = (".jpg", ".jpeg")


def _short_list(values, limit=10) -> str:
    """A list for a message, cut after ``limit`` items.

    Examples
    --------
    >>> _short_list(["a.png", "b.png", "c.png"], limit=2)
    '[a.png, b.png, ...] (3 in all)'
    """
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in all)"


# --------------------------------------------------------------------------- #
# Colours and classes
# --------------------------------------------------------------------------- #


def _palette_colours(palette) -> np.ndarray:
    """(K, 3) uint8 colours from a dict {name: (r, g, b)} or an array-like of RGB colours."""
    colours = list(palette.values()) if isinstance(palette, dict) else palette
    try:
        array = np.asarray(colours)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError("palette must be a dict {name: (r, g, b)} or a (K, 3) array of RGB colours.")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
        raise ValueError("palette colours must be integers from 0 to 255.")
    return array.astype(np.uint8)


def _colour_codes(rgb) -> np.ndarray:
    """One integer per colour, 0xRRGGBB, so colours can be sorted and searched.

    Examples
    --------
    >>> hex(int(_colour_codes(np.array([255, 128, 0]))))
    '0xff8000'
    """
    rgb = np.asarray(rgb).astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def mask_to_classes(rgb_mask, palette) -> np.ndarray:
    """Turn a colour-coded mask into class indices.

    Taught in chapter 1 (Semantic segmentation) and chapter 7 (Your own data and pretrained
    encoders).

    Parameters
    ----------
    rgb_mask : array_like
        (..., 3) colours, integers 0..255.
    palette : dict or array_like
        ``{name: (r, g, b)}`` (class = position) or a (K, 3) array, e.g.
        :data:`unet_tutorial.palettes.CAMVID`. Each colour may appear once.

    Returns
    -------
    numpy.ndarray
        (...) class indices, uint8 (int32 beyond 256 classes).

    Raises
    ------
    ValueError
        A colour is not in the palette; the message gives the colours and how many pixels
        have each.

    Examples
    --------
    >>> palette = {"background": (0, 0, 0), "cell": (255, 255, 0)}
    >>> mask_to_classes(np.array([[[0, 0, 0], [255, 255, 0]]]), palette)
    array([[0, 1]], dtype=uint8)
    """
    colours = _palette_colours(palette)
    if len(np.unique(colours, axis=0)) != len(colours):
        raise ValueError("palette contains the same colour twice; each class needs its own colour.")
    mask = np.asarray(rgb_mask)
    if mask.ndim < 1 or mask.shape[-1] != 3:
        raise ValueError(f"rgb_mask must have 3 colour channels last, got shape {mask.shape}.")
    if not np.issubdtype(mask.dtype, np.integer) or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError("rgb_mask must hold 8-bit colours (integers 0 to 255).")
    codes = _colour_codes(mask)
    palette_codes = _colour_codes(colours)
    order = np.argsort(palette_codes)  # a sorted table: one binary search per pixel
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
    """Colour a class map with a palette, ``palette[classes]``: the inverse of :func:`mask_to_classes`.

    Taught in chapter 1 (Semantic segmentation) and chapter 7 (Your own data and pretrained
    encoders).

    Parameters
    ----------
    classes : array_like of int or bool
        Class index of every pixel, from 0 to K - 1, any shape.
    palette : dict or array_like
        ``{name: (r, g, b)}`` (class = position) or a (K, 3) array of colours 0..255.

    Returns
    -------
    numpy.ndarray
        ``classes.shape + (3,)`` uint8.

    Examples
    --------
    >>> classes_to_rgb(np.array([[1, 0]]), {"background": (0, 0, 0), "cell": (255, 255, 0)})
    array([[[255, 255,   0],
            [  0,   0,   0]]], dtype=uint8)
    """
    colours = _palette_colours(palette)
    indices = np.asarray(classes)
    if indices.dtype == bool:
        indices = indices.astype(np.uint8)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(
            f"classes must be integer class indices, got dtype {indices.dtype}; cast with .astype(int)."
        )
    if indices.size and (indices.min() < 0 or indices.max() >= len(colours)):
        raise ValueError(
            f"classes hold values {indices.min()}..{indices.max()} but the palette has "
            f"{len(colours)} colours (valid indices 0..{len(colours) - 1})."
        )
    return colours[indices]


# --------------------------------------------------------------------------- #
# Reading image files
# --------------------------------------------------------------------------- #


def _natural_key(name: str) -> list:
    """Sort key that compares the numbers in a name as numbers and letters without case.

    Examples
    --------
    >>> sorted(["10.png", "2.png", "B1.png", "a1.png"], key=_natural_key)
    ['2.png', '10.png', 'a1.png', 'B1.png']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _image_paths(folder: Path) -> list[Path]:
    """The image files of a folder in natural order; hidden files and other types are skipped."""
    found = [
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted((p for p in found if p.is_file()), key=lambda p: _natural_key(p.name))


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (Pillow's "L"), keeping the dtype; integers are rounded.

    Examples
    --------
    >>> _to_gray(np.array([[[255, 0, 0], [200, 100, 50]]], np.uint8))
    array([[ 76, 124]], dtype=uint8)
    """
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(rgb.dtype, np.integer):
        return np.rint(luma).astype(rgb.dtype)
    return luma.astype(rgb.dtype)


def _read_pages(path: Path) -> list[np.ndarray]:
    """The images in one file: one page, or one per page of a TIFF stack.

    Each page is (H, W) grey or (H, W, 3) colour, in its stored dtype: palette images are
    expanded to RGB and alpha channels dropped. tifffile's axes tell a colour TIFF ("YXS",
    or "SYX" for separate colour planes) from a stack of three grey pages.
    """
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                array, axes = tif.series[0].asarray(), tif.series[0].axes
            colour = "S" in axes
            if colour:
                array = np.moveaxis(array, axes.index("S"), -1)
        else:
            from PIL import Image

            with Image.open(path) as image:
                if image.mode == "1":
                    image = image.convert("L")
                elif image.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                array = np.asarray(image)
            colour = array.ndim == 3
    except Exception as error:  # Pillow and tifffile raise many types for damaged files
        raise ValueError(f"Could not read {path}: {error}") from error
    if colour and array.shape[-1] in (1, 2):  # grey, grey + alpha
        array, colour = array[..., 0], False
    elif colour:
        array = array[..., :3]  # drop alpha
    page_ndim = 3 if colour else 2
    if array.ndim == page_ndim:
        return [array]
    if array.ndim == page_ndim + 1:
        return list(array)
    raise ValueError(f"{path} has unsupported shape {array.shape}; expected (H, W) or (H, W, 3) images.")


# --------------------------------------------------------------------------- #
# Folders of images and masks
# --------------------------------------------------------------------------- #


class FolderData(NamedTuple):
    """What :func:`load_folder` returns.

    ``images`` and ``masks`` are arrays when all items share shape and dtype, lists of
    arrays otherwise; ``masks`` is None without ``masks_dir``; ``names`` are the image stems.
    """

    images: np.ndarray | list
    masks: np.ndarray | list | None
    names: list


def _image_files(folder, what) -> dict[str, Path]:
    """{stem: path} of the images in a folder, refusing two files with one stem."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} is not an existing folder.")
    files = {}
    for path in _image_paths(folder):
        if path.stem in files:
            raise ValueError(
                f"{files[path.stem].name} and {path.name} in {folder} share the stem "
                f"{path.stem!r}; images and masks are paired by stem, so keep only one."
            )
        files[path.stem] = path
    if not files:
        raise FileNotFoundError(f"{what} {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return files


def _read_one(path: Path) -> np.ndarray:
    pages = _read_pages(path)
    if len(pages) != 1:
        raise ValueError(f"{path} is a stack of {len(pages)} images; load_folder expects one image per file.")
    return pages[0]


def _binary_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """0/1 from a mask holding 0/1 or 0/max (JPEG: thresholded at mid-grey)."""
    if mask.ndim == 3:
        if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
            raise ValueError(
                f"{path} is a colour mask; pass palette=... (a dict {{name: (r, g, b)}}, e.g. "
                "palettes.CAMVID) to turn its colours into class indices."
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
            + "; found "
            + "; ".join(problems)
            + "."
        )
    return [(images[s], masks[expected[s]]) for s in images]


def load_folder(images_dir, masks_dir=None, palette=None, as_gray=None, *, mask_suffix="") -> FolderData:
    """Load your own images (and masks) from folders.

    Taught in chapter 7 (Your own data and pretrained encoders).

    Images and masks are paired by file stem (``a.png`` with ``a.tif`` is fine). Files
    with other extensions and hidden files are ignored.

    Parameters
    ----------
    images_dir : str or os.PathLike
        Folder of images (grey or RGB, any bit depth; alpha is dropped).
    masks_dir : str or os.PathLike, optional
        Folder of masks. Without a palette, masks must be binary: 0/1 or 0/255 (or
        0/65535) become 0/1. With a palette, colours become class indices
        (:func:`mask_to_classes`).
    palette : dict or array_like, optional
        ``{name: (r, g, b)}``, e.g. :data:`unet_tutorial.palettes.CAMVID`.
    as_gray : bool, optional
        None: grey if every image is grey, otherwise RGB (grey images get 3 equal
        channels). True: RGB converted to grey (ITU-R 601 luma). False: always RGB.
    mask_suffix : str
        Mask stem = image stem + suffix, e.g. ``"_mask"``.

    Returns
    -------
    FolderData
        ``(images, masks, names)``: arrays of shape (N, H, W[, 3]) when all items share
        shape and dtype, otherwise lists of arrays; masks are uint8.

    Raises
    ------
    ValueError
        Unpaired files, image/mask size mismatch, non-binary masks, or colours missing
        from the palette; the message names the file.

    Notes
    -----
    Masks should be lossless (PNG or TIFF). JPEG masks are accepted only for binary 0/255
    masks, which are thresholded at 128 to undo compression artefacts.
    """
    if as_gray not in (None, True, False):
        raise TypeError(f"as_gray must be None, True or False, got {as_gray!r}.")
    image_files = _image_files(images_dir, "images_dir")
    images = [_read_one(path) for path in image_files.values()]
    if as_gray is False or (as_gray is None and any(a.ndim == 3 for a in images)):
        images = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1) for a in images]
    else:
        images = [_to_gray(a) if a.ndim == 3 else a for a in images]
    names = list(image_files)
    if masks_dir is None:
        return FolderData(_stack_if_uniform(images), None, names)
    pairs = _pair_files(image_files, _image_files(masks_dir, "masks_dir"), mask_suffix, images_dir, masks_dir)
    masks = []
    for image, (image_path, mask_path) in zip(images, pairs):
        raw = _read_one(mask_path)
        if raw.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"Size mismatch: {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"its mask {mask_path} is {raw.shape[1]}x{raw.shape[0]}; masks must match their image."
            )
        masks.append(
            _binary_mask(raw, mask_path) if palette is None else _palette_mask(raw, mask_path, palette)
        )
    return FolderData(_stack_if_uniform(images), _stack_if_uniform(masks), names)


# --------------------------------------------------------------------------- #
# Images to segment
# --------------------------------------------------------------------------- #


def load_images(sources, as_gray=True):
    """Read the images to segment from folders, image files and TIFF stacks.

    Not called in a chapter; the command line's ``predict`` (shown in chapter 7) uses it.

    Parameters
    ----------
    sources : str, Path or sequence of them
        Folders (their image files in natural order), single image files, or multi-page
        TIFF stacks (one image per page, named ``<stem>_000``, ``<stem>_001``, ...).
    as_gray : bool
        Convert colour images to grey (luma); the U-Nets of this book take one channel.

    Returns
    -------
    images : list of numpy.ndarray
        In their stored dtype (scale them with ``data.to_float`` before predicting).
    names : list of str
        Unique names for the outputs, from the file stems.

    Raises
    ------
    FileNotFoundError
        A source does not exist.
    ValueError
        No images found, an unsupported file type, or two images with the same name.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files = []
    for source in map(Path, sources):
        if source.is_dir():
            found = _image_paths(source)
            if not found:
                raise ValueError(f"{source} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif source.is_file():
            if source.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{source} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
            files.append(source)
        else:
            raise FileNotFoundError(f"No such file or folder: {source}")
    if not files:
        raise ValueError("No images given: pass folders, image files or TIFF stacks.")
    names, images = [], []
    for path in files:
        pages = _read_pages(path)
        names += [path.stem] if len(pages) == 1 else [f"{path.stem}_{i:03d}" for i in range(len(pages))]
        images += [_to_gray(page) if as_gray and page.ndim == 3 else page for page in pages]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"Several inputs would be saved under the same name: {duplicates}. "
            "Rename the files or predict the folders separately."
        )
    return images, names

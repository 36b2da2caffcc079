"""Your own data: folders of images and colour-coded masks.

Most segmentation data sets, and most annotation tools, give two folders: images, and one
mask per image with the same file stem (``a.png`` pairs with ``a.tif``, or with ``a_mask.png``
given ``mask_suffix="_mask"``). Masks with several classes are colour images; a palette
``{name: (r, g, b)}`` says which colour is which class, its order giving the class index.
This module reads such folders (:func:`load_folder`), turns colours into classes and back
(:func:`mask_to_classes`, :func:`classes_to_rgb`), and reads the images a trained network
should segment (:func:`load_images`).

Images are PNG, TIFF, JPEG or BMP files, sorted naturally (``2`` before ``10``); hidden files
and other types are skipped. Each file holds one (H, W) grey or (H, W, 3) colour image in its
stored dtype: palette images are expanded to RGB and alpha channels dropped. A multi-page
TIFF is a stack of images (tifffile's axes tell a colour TIFF, "YXS" or "SYX" for separate
colour planes, from a stack of three grey pages). Grey is ITU-R 601 luma, as Pillow's "L".

Masks without a palette must be binary: 0/1, 0/255 or 0/65535 become 0/1. Masks should be
lossless (PNG or TIFF): JPEG masks are accepted only as binary masks, thresholded at 128 to
undo compression artefacts.

Taught in chapter 8 (Your own data and pretrained encoders); chapter 1 introduces palettes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tifffile
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderData",
    "classes_to_rgb",
    "load_folder",
    "load_images",
    "mask_to_classes",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


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
    colours = np.asarray(list(palette.values()) if isinstance(palette, dict) else palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or not np.issubdtype(colours.dtype, np.integer):
        raise ValueError("palette must be a dict {name: (r, g, b)} or a (K, 3) array of integers 0 to 255.")
    if colours.min() < 0 or colours.max() > 255:
        raise ValueError("palette colours must be integers from 0 to 255.")
    return colours.astype(np.uint8)


def _colour_codes(rgb) -> np.ndarray:
    """One integer per colour, 0xRRGGBB, so colours compare as numbers.

    Examples
    --------
    >>> hex(int(_colour_codes(np.array([255, 128, 0]))))
    '0xff8000'
    """
    rgb = np.asarray(rgb).astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def mask_to_classes(rgb_mask, palette) -> np.ndarray:
    """Turn a colour-coded mask into class indices: each colour's position in the palette.

    Taught in chapter 1 (Semantic segmentation) and chapter 8 (Your own data and pretrained encoders).

    Parameters
    ----------
    rgb_mask : (..., 3) array of integer colours
    palette : ``{name: (r, g, b)}`` or a (K, 3) array, e.g. ``palettes.CAMVID``; each colour once

    Returns
    -------
    numpy.ndarray
        (...) class indices, uint8 (int32 beyond 256 classes); a colour not in the palette is an error.

    Examples
    --------
    >>> mask_to_classes(np.array([[[0, 0, 0], [255, 255, 0]]]), {"sky": (0, 0, 0), "sun": (255, 255, 0)})
    array([[0, 1]], dtype=uint8)
    """
    colours, mask = _palette_colours(palette), np.asarray(rgb_mask)
    if len(np.unique(colours, axis=0)) != len(colours):
        raise ValueError("palette contains the same colour twice; each class needs its own colour.")
    if mask.shape[-1:] != (3,) or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"rgb_mask must be (..., 3) integer colours, got {mask.dtype} {mask.shape}.")
    codes = _colour_codes(mask)
    classes = np.full(codes.shape, len(colours))  # len(colours): not in the palette
    for k, code in enumerate(_colour_codes(colours)):
        classes[codes == code] = k
    if (classes == len(colours)).any():
        unknown, counts = np.unique(codes[classes == len(colours)], return_counts=True)
        worst = np.argsort(counts)[::-1][:5]
        listed = ", ".join(
            f"{(c >> 16, c >> 8 & 255, c & 255)} in {n} pixels"
            for c, n in zip(unknown[worst].tolist(), counts[worst].tolist())
        )
        raise ValueError(
            f"{len(unknown)} colour(s) are not in the palette: {listed}{' ...' if len(unknown) > 5 else ''}. "
            "Add them to the palette or fix the mask (masks must be saved losslessly, e.g. PNG, not JPEG)."
        )
    return classes.astype(np.uint8 if len(colours) <= 256 else np.int32)


def classes_to_rgb(classes, palette) -> np.ndarray:
    """Colour a class map with a palette, ``palette[classes]``: the inverse of :func:`mask_to_classes`.

    Taught in chapter 1 (Semantic segmentation) and chapter 8 (Your own data and pretrained encoders).

    Parameters
    ----------
    classes : array_like of int or bool
        Class index of every pixel, from 0 to K - 1, any shape.
    palette : ``{name: (r, g, b)}`` or a (K, 3) array of colours 0..255 (they may repeat)

    Returns
    -------
    numpy.ndarray
        ``classes.shape + (3,)`` uint8.

    Examples
    --------
    >>> classes_to_rgb(np.array([[1, 0]]), {"sky": (0, 0, 0), "sun": (255, 255, 0)})
    array([[[255, 255,   0],
            [  0,   0,   0]]], dtype=uint8)
    """
    colours, indices = _palette_colours(palette), np.asarray(classes)
    indices = indices.astype(np.uint8) if indices.dtype == bool else indices
    if indices.size and (indices.min() < 0 or indices.max() >= len(colours)):
        raise ValueError(
            f"classes range {indices.min()}..{indices.max()}; the palette has {len(colours)} colours."
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
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted((p for p in found if not p.name.startswith(".")), key=lambda p: _natural_key(p.name))


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (Pillow's "L"), keeping the dtype; integers are rounded.

    Examples
    --------
    >>> _to_gray(np.array([[[255, 0, 0], [200, 100, 50]]], np.uint8))
    array([[ 76, 124]], dtype=uint8)
    """
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return (np.rint(luma) if np.issubdtype(rgb.dtype, np.integer) else luma).astype(rgb.dtype)


def _read_pages(path: Path) -> list[np.ndarray]:
    """The (H, W) grey or (H, W, 3) colour images in one file: one, or one per page of a TIFF stack."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                array, axes = tif.series[0].asarray(), tif.series[0].axes
            colour = "S" in axes
            array = np.moveaxis(array, axes.index("S"), -1) if colour else array
        else:
            with Image.open(path) as image:
                if image.mode == "1":
                    image = image.convert("L")
                elif image.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                array = np.asarray(image)
            colour = array.ndim == 3
    except Exception as error:  # Pillow and tifffile raise many types for damaged files
        raise ValueError(f"Could not read {path}: {error}") from error
    if colour:  # grey or grey + alpha become grey; alpha is dropped
        array, colour = (array[..., 0], False) if array.shape[-1] in (1, 2) else (array[..., :3], True)
    pages = array[None] if array.ndim == (3 if colour else 2) else array
    if pages.ndim != (4 if colour else 3):
        raise ValueError(f"{path} has unsupported shape {array.shape}; expected (H, W) or (H, W, 3) images.")
    return list(pages)


# --------------------------------------------------------------------------- #
# Folders of images and masks
# --------------------------------------------------------------------------- #


class FolderData(NamedTuple):
    """What :func:`load_folder` returns; arrays when all items share shape and dtype, else lists."""

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


def _pair_files(images, masks, mask_suffix, images_dir, masks_dir):
    """[(image path, mask path)], paired by stem; unpaired files are an error that names them."""
    expected = {stem + mask_suffix for stem in images}
    lonely_images = [path.name for stem, path in images.items() if stem + mask_suffix not in masks]
    lonely_masks = [path.name for stem, path in masks.items() if stem not in expected]
    problems = []
    if lonely_images:
        problems.append(f"images without a mask in {masks_dir}: {_short_list(lonely_images, 5)}")
    if lonely_masks:
        problems.append(f"masks without an image in {images_dir}: {_short_list(lonely_masks, 5)}")
    if problems:
        suffix = f" (mask stem = image stem + {mask_suffix!r})" if mask_suffix else ""
        raise ValueError(f"Images and masks must pair up by file stem{suffix}; found {'; '.join(problems)}.")
    return [(images[stem], masks[stem + mask_suffix]) for stem in images]


def _mask_classes(mask, path, palette) -> np.ndarray:
    """Class indices of one mask: its colours through ``palette``, or 0/1 from a binary mask."""
    lossy = path.suffix.lower() in (".jpg", ".jpeg")
    if palette is not None:
        if lossy:
            raise ValueError(f"{path}: JPEG changes colours; save colour-coded masks as PNG or TIFF.")
        rgb = mask if mask.ndim == 3 else np.repeat(mask[..., None], 3, axis=-1)
        try:
            return mask_to_classes(rgb, palette)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    if mask.ndim == 3:
        if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
            raise ValueError(f"{path} is a colour mask; pass palette=... (e.g. palettes.CAMVID).")
        mask = mask[..., 0]
    if lossy:  # JPEG blurs the 0/255 edges; thresholding at mid-grey restores them
        return (mask >= 128).astype(np.uint8)
    values = np.unique(mask)
    top = np.iinfo(mask.dtype).max if np.issubdtype(mask.dtype, np.integer) else 255
    if not (np.isin(values, (0, 1)).all() or np.isin(values, (0, top)).all()):
        raise ValueError(
            f"{path} is not a binary mask: it holds the values {_short_list(values.tolist())}. Binary masks "
            f"must hold only 0 and 1, or only 0 and {top}; colour-coded multi-class masks need palette=... ."
        )
    return (mask > 0).astype(np.uint8)


def _stack_if_uniform(arrays: list):
    same = all(a.shape == arrays[0].shape and a.dtype == arrays[0].dtype for a in arrays)
    return np.stack(arrays) if same else arrays


def load_folder(images_dir, masks_dir=None, palette=None, as_gray=None, *, mask_suffix="") -> FolderData:
    """Load your own images (and masks) from folders, paired by file stem.

    Taught in chapter 8 (Your own data and pretrained encoders).

    Parameters
    ----------
    images_dir, masks_dir : str or os.PathLike
        Folders of images (grey or RGB, any bit depth) and, optionally, their masks.
    palette : dict or array_like, optional
        ``{name: (r, g, b)}`` of colour-coded masks, e.g. ``palettes.CAMVID``; without one,
        masks must be binary (see the module docstring).
    as_gray : bool, optional
        None: grey if every image is grey, else RGB; True: grey (luma); False: RGB.
    mask_suffix : str
        Mask stem = image stem + suffix, e.g. ``"_mask"``.

    Returns
    -------
    FolderData
        ``(images, masks, names)``: uint8 class indices (None without ``masks_dir``), image stems.
    """
    image_files = _image_files(images_dir, "images_dir")
    images = [_read_one(path) for path in image_files.values()]
    if as_gray is False or (as_gray is None and any(a.ndim == 3 for a in images)):
        images = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1) for a in images]
    else:
        images = [_to_gray(a) if a.ndim == 3 else a for a in images]
    if masks_dir is None:
        return FolderData(_stack_if_uniform(images), None, list(image_files))
    pairs = _pair_files(image_files, _image_files(masks_dir, "masks_dir"), mask_suffix, images_dir, masks_dir)
    masks = []
    for image, (image_path, mask_path) in zip(images, pairs):
        mask = _read_one(mask_path)
        if mask.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"Size mismatch: {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"its mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}; masks must match their image."
            )
        masks.append(_mask_classes(mask, mask_path, palette))
    return FolderData(_stack_if_uniform(images), _stack_if_uniform(masks), list(image_files))


# --------------------------------------------------------------------------- #
# Images to segment
# --------------------------------------------------------------------------- #


def load_images(sources, as_gray=True):
    """Read the images to segment from folders, image files and TIFF stacks.

    Not called in a chapter; the command line's ``predict`` (shown in chapter 8) uses it.

    Parameters
    ----------
    sources : str, Path or sequence of them
        Folders (their images in natural order), image files, or multi-page TIFF stacks (one
        image per page, named ``<stem>_000``, ``<stem>_001``, ...).
    as_gray : bool
        Convert colour images to grey (luma); the U-Nets of this book take one channel.

    Returns
    -------
    images, names : list of numpy.ndarray, list of str
        Images in their stored dtype (scale them with ``data.to_float``); unique names from the stems.
    """
    files = []
    for source in map(Path, [sources] if isinstance(sources, (str, Path)) else sources):
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

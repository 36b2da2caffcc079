"""Tests of unet_tutorial.folders: palettes, folders of images and masks, images to segment."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_tutorial import folders, palettes

CAMVID = palettes.CAMVID


# --------------------------------------------------------------------------- #
# Palettes
# --------------------------------------------------------------------------- #


def test_camvid_palette_has_12_distinct_classes():
    assert len(CAMVID) == 12
    assert list(CAMVID)[0] == "Sky" and list(CAMVID)[-1] == "Unlabelled"
    assert len(set(CAMVID.values())) == 12


def test_mask_to_classes_and_back_round_trip():
    classes = np.random.default_rng(0).integers(0, 12, (5, 7))
    rgb = folders.classes_to_rgb(classes, CAMVID)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[classes == 0][0]) == CAMVID["Sky"]
    np.testing.assert_array_equal(folders.mask_to_classes(rgb, CAMVID), classes)
    palette = np.array([[0, 0, 0], [255, 255, 255], [10, 20, 30]])
    mask = np.array([[[10, 20, 30], [0, 0, 0], [255, 255, 255]]], np.uint8)
    assert folders.mask_to_classes(mask, palette).tolist() == [[2, 0, 1]]


def test_unknown_colour_is_reported_with_pixel_count():
    mask = folders.classes_to_rgb(np.zeros((4, 4), int), CAMVID)
    mask[0, :3] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\) in 3 pixels"):
        folders.mask_to_classes(mask, CAMVID)


def test_palette_and_class_errors():
    with pytest.raises(ValueError, match="same colour twice"):
        folders.mask_to_classes(np.zeros((2, 2, 3), np.uint8), [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="palette"):
        folders.mask_to_classes(np.zeros((2, 2, 3), np.uint8), [[0, 0]])
    with pytest.raises(ValueError, match="12 colours"):
        folders.classes_to_rgb(np.array([12]), CAMVID)
    with pytest.raises(IndexError, match="integer"):  # NumPy's own message
        folders.classes_to_rgb(np.array([0.5]), CAMVID)


# --------------------------------------------------------------------------- #
# load_folder
# --------------------------------------------------------------------------- #


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(
            path, array, photometric="rgb" if array.ndim == 3 and array.shape[-1] == 3 else "minisblack"
        )
    else:
        Image.fromarray(array).save(path, **kwargs)


def squares(height=16, width=16, offset=0):
    mask = np.zeros((height, width), np.uint8)
    mask[offset : offset + 8, offset : offset + 8] = 1
    return mask


def test_gray_png_with_0_255_masks_sorted_naturally(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for stem in ("10", "2", "1"):
        images[stem] = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        save(tmp_path / "img" / f"{stem}.png", images[stem])
        save(tmp_path / "msk" / f"{stem}.png", squares(offset=int(stem) % 5) * 255)
    (tmp_path / "img" / "notes.txt").write_text("ignored")
    loaded = folders.load_folder(tmp_path / "img", tmp_path / "msk")
    assert loaded.names == ["1", "2", "10"]
    assert loaded.images.shape == (3, 16, 16) and loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images[2], images["10"])
    np.testing.assert_array_equal(loaded.masks[2], squares(offset=0))
    np.testing.assert_array_equal(loaded.masks[1], squares(offset=2))
    assert loaded.masks.dtype == np.uint8


def test_rgb_png_images_with_0_1_tiff_masks(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    save(tmp_path / "img" / "a.png", rgb)
    save(tmp_path / "msk" / "a.tif", squares(12, 10))
    images, masks, names = folders.load_folder(tmp_path / "img", tmp_path / "msk")
    assert images.shape == (1, 12, 10, 3) and names == ["a"]
    np.testing.assert_array_equal(images[0], rgb)
    np.testing.assert_array_equal(masks[0], squares(12, 10))


def test_mixed_gray_and_rgb_and_as_gray(tmp_path):
    gray = np.full((8, 8), 200, np.uint8)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # pure red, half transparent
    save(tmp_path / "a.png", gray)
    save(tmp_path / "b.png", rgba)
    auto = folders.load_folder(tmp_path).images
    assert auto.shape == (2, 8, 8, 3)
    assert (auto[0] == 200).all() and auto[1, 0, 0].tolist() == [255, 0, 0]
    as_gray = folders.load_folder(tmp_path, as_gray=True).images
    pillow_gray = np.asarray(Image.new("RGB", (1, 1), (255, 0, 0)).convert("L"))[0, 0]
    assert as_gray.shape == (2, 8, 8) and abs(int(as_gray[1, 0, 0]) - int(pillow_gray)) <= 1
    assert folders.load_folder(tmp_path, as_gray=False).images.shape == (2, 8, 8, 3)


def test_different_sizes_give_lists_and_16_bit_is_kept(tmp_path):
    big = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    save(tmp_path / "img" / "big.tif", big)
    save(tmp_path / "img" / "small.png", np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    save(tmp_path / "msk" / "big.png", np.zeros((20, 30), np.uint8))
    save(tmp_path / "msk" / "small.png", squares(8, 8) * 255)
    images, masks, names = folders.load_folder(tmp_path / "img", tmp_path / "msk")
    assert isinstance(images, list) and isinstance(masks, list) and names == ["big", "small"]
    assert images[0].dtype == images[1].dtype == np.uint16
    np.testing.assert_array_equal(images[0], big)
    assert masks[1].tolist() == squares(8, 8).tolist()


def test_palette_masks_become_class_indices(tmp_path):
    classes = np.random.default_rng(2).integers(0, 12, (16, 16))
    save(tmp_path / "img" / "x.jpg", np.zeros((16, 16, 3), np.uint8))  # JPEG images are fine
    save(tmp_path / "msk" / "x_mask.png", folders.classes_to_rgb(classes, CAMVID))
    loaded = folders.load_folder(tmp_path / "img", tmp_path / "msk", palette=CAMVID, mask_suffix="_mask")
    np.testing.assert_array_equal(loaded.masks[0], classes)


def test_unknown_palette_colour_names_file_colour_and_count(tmp_path):
    rgb = folders.classes_to_rgb(np.zeros((8, 8), int), CAMVID)
    rgb[0, :5] = (9, 9, 9)
    save(tmp_path / "img" / "x.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "x.png", rgb)
    with pytest.raises(ValueError, match=r"x\.png.*\(9, 9, 9\) in 5 pixels"):
        folders.load_folder(tmp_path / "img", tmp_path / "msk", palette=CAMVID)


def test_jpeg_binary_masks_are_thresholded_and_jpeg_colour_masks_refused(tmp_path):
    rows, cols = np.mgrid[:32, :32]
    mask = ((rows - 15.3) ** 2 + (cols - 13.7) ** 2 < 81).astype(np.uint8)  # a disk
    save(tmp_path / "img" / "m.png", np.zeros((32, 32), np.uint8))
    save(tmp_path / "msk" / "m.jpg", mask * 255, quality=75)
    stored = np.asarray(Image.open(tmp_path / "msk" / "m.jpg"))
    assert not np.isin(stored, (0, 255)).all()  # the JPEG really is lossy
    loaded = folders.load_folder(tmp_path / "img", tmp_path / "msk")
    np.testing.assert_array_equal(loaded.masks[0], mask)
    with pytest.raises(ValueError, match="JPEG"):
        folders.load_folder(tmp_path / "img", tmp_path / "msk", palette=CAMVID)


def test_unpaired_files_are_named(tmp_path):
    save(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "img" / "b.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "c.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"images without a mask.*b\.png.*masks without an image.*c\.png"):
        folders.load_folder(tmp_path / "img", tmp_path / "msk")
    (tmp_path / "msk" / "c.png").unlink()
    with pytest.raises(ValueError) as info:  # the message chapter 8 prints
        folders.load_folder(tmp_path / "img", tmp_path / "msk")
    assert str(info.value) == (
        f"Images and masks must pair up by file stem; found images without a mask in {tmp_path / 'msk'}: "
        "[b.png] (1 in all)."
    )


def test_size_mismatch_names_both_files(tmp_path):
    save(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "a.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r"Size mismatch: .*img.a\.png is 8x8.*msk.a\.png is 9x8"):
        folders.load_folder(tmp_path / "img", tmp_path / "msk")


def test_non_binary_and_colour_masks_without_palette_are_refused(tmp_path):
    save(tmp_path / "img" / "a.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "msk" / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8) % 3)
    with pytest.raises(ValueError, match=r"a\.png is not a binary mask"):
        folders.load_folder(tmp_path / "img", tmp_path / "msk")
    save(tmp_path / "msk" / "a.png", folders.classes_to_rgb(np.eye(8, dtype=int), CAMVID))
    with pytest.raises(ValueError, match="palette="):
        folders.load_folder(tmp_path / "img", tmp_path / "msk")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        folders.load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        folders.load_folder(tmp_path / "empty")
    save(tmp_path / "dup" / "a.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "dup" / "a.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="share the stem"):
        folders.load_folder(tmp_path / "dup")
    save(tmp_path / "stack" / "s.tif", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="stack"):
        folders.load_folder(tmp_path / "stack")


def test_load_folder_reads_palette_and_bilevel_pngs(tmp_path):
    indexed = Image.new("P", (4, 4))
    indexed.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    indexed.putpixel((1, 1), 1)
    (tmp_path / "msk").mkdir()
    save(tmp_path / "img" / "a.png", np.zeros((4, 4), np.uint8))
    indexed.save(tmp_path / "msk" / "a.png")
    loaded = folders.load_folder(
        tmp_path / "img", tmp_path / "msk", palette={"bg": (0, 0, 0), "cell": (255, 255, 0)}
    )
    assert loaded.masks[0].tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "msk" / "a.png")  # mode "1"
    assert folders.load_folder(tmp_path / "img", tmp_path / "msk").masks[0].tolist() == np.eye(4).tolist()


# --------------------------------------------------------------------------- #
# classes_to_rgb with the palettes chapter 1 draws with (it replaces plotting.colorize)
# --------------------------------------------------------------------------- #


def test_classes_to_rgb_with_array_palette_maps_every_class():
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255]])
    classes = np.array([[0, 1], [2, 1]])
    out = folders.classes_to_rgb(classes, palette)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    for value in range(3):
        assert (out[classes == value] == palette[value]).all()


def test_classes_to_rgb_takes_booleans_and_repeated_colours():
    out = folders.classes_to_rgb(np.array([True, False]), {"sky": (0, 0, 255), "road": (128, 128, 128)})
    np.testing.assert_array_equal(out, [[128, 128, 128], [0, 0, 255]])
    random_colours = np.array([[0, 0, 0], [90, 90, 90], [90, 90, 90]])  # colouring needs no unique colours
    assert folders.classes_to_rgb(np.array([2]), random_colours).tolist() == [[90, 90, 90]]


@pytest.mark.parametrize(
    "classes, palette, error, message",
    [
        (np.array([0, 3]), np.zeros((3, 3), int), ValueError, "palette has 3"),
        (np.array([0, -1]), np.zeros((3, 3), int), ValueError, "palette has 3"),
        (np.array([0.0, 1.0]), np.zeros((2, 3), int), IndexError, "integer"),
        (np.array([0]), np.zeros((2, 4), int), ValueError, r"\(K, 3\)"),
        (np.array([0]), np.array([[0, 0, 300]]), ValueError, "0 to 255"),
        (np.array([0]), np.array([[0.0, 0.5, 1.0]]), ValueError, "integers"),
    ],
)
def test_classes_to_rgb_rejects_bad_input(classes, palette, error, message):
    with pytest.raises(error, match=message):
        folders.classes_to_rgb(classes, palette)


# --------------------------------------------------------------------------- #
# load_images


def test_load_images_from_folders_files_and_stacks(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for name in ("10", "2", "1"):
        Image.fromarray(np.full((4, 5), int(name), np.uint8)).save(folder / f"img{name}.png")
    (folder / "readme.txt").write_text("ignored")
    (folder / ".hidden.png").write_bytes(b"ignored")
    stack = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "colour.png")

    images, names = folders.load_images([folder, tmp_path / "stack.tif", str(tmp_path / "colour.png")])
    assert names == ["img1", "img2", "img10", "stack_000", "stack_001", "stack_002", "colour"]
    assert [int(im[0, 0]) for im in images[:3]] == [1, 2, 10]
    for i in range(3):
        np.testing.assert_array_equal(images[3 + i], stack[i])
        assert images[3 + i].dtype == np.uint16
    expected_grey = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert images[-1].shape == (4, 5) and int(images[-1][0, 0]) == expected_grey
    colour, _ = folders.load_images(tmp_path / "colour.png", as_gray=False)
    assert colour[0].shape == (4, 5, 3)


def test_load_images_tells_a_colour_tiff_from_a_stack_of_three(tmp_path):
    planes = np.stack([np.full((4, 5), v, np.uint8) for v in (200, 100, 50)])  # (3, H, W)
    tifffile.imwrite(tmp_path / "rgb.tif", planes, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "three.tif", planes, photometric="minisblack")
    images, names = folders.load_images([tmp_path / "rgb.tif", tmp_path / "three.tif"])
    assert names == ["rgb", "three_000", "three_001", "three_002"]
    assert images[0].shape == (4, 5) and int(images[0][0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert [int(im[0, 0]) for im in images[1:]] == [200, 100, 50]


def test_load_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        folders.load_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        folders.load_images(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not an image"):
        folders.load_images(tmp_path / "notes.txt")
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / sub / "same.png")
    with pytest.raises(ValueError, match="same name"):
        folders.load_images([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="No images"):
        folders.load_images([])


def test_load_images_reads_grey_with_alpha_and_palette_pngs_as_grey(tmp_path):
    Image.fromarray(np.full((3, 4, 2), 90, np.uint8), mode="LA").save(tmp_path / "la.png")
    indexed = Image.new("P", (4, 3))
    indexed.putpalette([200, 100, 50] * 256)
    indexed.save(tmp_path / "p.png")
    images, names = folders.load_images(tmp_path)
    assert names == ["la", "p"]
    assert images[0].shape == (3, 4) and int(images[0][0, 0]) == 90
    assert images[1].shape == (3, 4) and int(images[1][0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)

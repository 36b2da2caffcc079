"""Tests of unet_tutorial.dataset: mirrored, centred, reproducible training crops."""

import numpy as np
import pytest
from masks import ALL_GEOMETRY
from masks import make_blob_mask as blob_mask
from masks import realistic_mask as load_realistic_mask

from unet_tutorial import augment, dataset, tiling


def coordinate_images(n=3, size=40):
    """Float images whose pixel value encodes its image, row and column."""
    rows, cols = np.mgrid[:size, :size]
    return [(i * 10000 + rows * 100 + cols).astype(np.float64) for i in range(n)]


def reflect_window(image, top, left, size):
    """The dataset's input window, by slicing an np.pad(mode="reflect") copy."""
    pad = 100
    padded = np.pad(image, pad, mode="reflect")
    return padded[top + pad : top + pad + size, left + pad : left + pad + size]


def test_training_crops_mirror_like_np_pad_reflect():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 100, (13, 17))
    assert dataset.MIRROR_MODE == "reflect"  # the border pixel is not repeated
    for top, left, size in [(-5, -7, 20), (0, 0, 13), (3, 4, 5), (-30, 10, 50), (8, 12, 9)]:
        window = tiling.mirror_window(image, top, left, size, size, pad_mode=dataset.MIRROR_MODE)
        np.testing.assert_array_equal(window, reflect_window(image, top, left, size))


def test_center_crop():
    image = np.arange(10 * 12).reshape(10, 12)
    np.testing.assert_array_equal(tiling.center_crop(image, (4, 6)), image[3:7, 3:9])
    with pytest.raises(ValueError, match="even"):
        tiling.center_crop(image, 5)


def test_dataset_shapes_and_dtypes_binary_and_multiclass():
    masks = [blob_mask(40, seed) * 255 for seed in range(3)]
    images = [m.astype(np.uint8) for m in masks]
    ds = dataset.SegmentationDataset(images, masks, 28, 12, batch_size=4, steps_per_epoch=5)
    x, y = ds[0]
    assert len(ds) == 5 and ds.binary
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (4, 12, 12, 1) and y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    multi = [np.minimum(m // 100, 2) for m in masks]  # labels 0 and 2
    ds = dataset.SegmentationDataset(np.stack(images), np.stack(multi), 16, batch_size=2)
    x, y = ds[1]
    assert not ds.binary and y.shape == (2, 16, 16) and y.dtype == np.int32
    colour = [np.repeat(im[..., None], 3, axis=2) for im in images]
    x, _ = dataset.SegmentationDataset(colour, masks, 16)[0]
    assert x.shape == (1, 16, 16, 3)


def test_dataset_label_window_is_centred_in_the_mirrored_input():
    images = coordinate_images()
    masks = [np.zeros((40, 40), np.uint8) + i for i in range(3)]
    weights = images  # weights carry the coordinates too
    ds = dataset.SegmentationDataset(images, masks, 30, 10, weights=weights, batch_size=8, steps_per_epoch=30)
    tops = set()
    for index in range(len(ds)):
        x, y, w = ds[index]
        assert w.shape == (8, 10, 10) and w.dtype == np.float32
        for xi, wi in zip(x[..., 0], w):
            np.testing.assert_array_equal(tiling.center_crop(xi, 10), wi)  # label crop at the centre
            image_id, top, left = int(wi[0, 0]) // 10000, int(wi[0, 0]) % 10000 // 100, int(wi[0, 0]) % 100
            tops.update([top, left])
            # the input window is the mirrored image around the label window
            expected = reflect_window(images[image_id], top - 10, left - 10, 30)
            np.testing.assert_array_equal(xi, expected.astype(np.float32))
    assert min(tops) == 0 and max(tops) == 40 - 10  # label windows reach both edges


def test_dataset_centring_with_image_equal_to_mask_and_augmentation():
    realistic_mask = load_realistic_mask()
    images = [realistic_mask * 255]
    params = dict(ALL_GEOMETRY, image_order=0)
    ds = dataset.SegmentationDataset(
        images,
        [realistic_mask],
        60,
        20,
        batch_size=4,
        augment=params,
        weights=[1.0 + realistic_mask * 2.0],
        steps_per_epoch=3,
    )
    for index in range(3):
        x, y, w = ds[index]
        np.testing.assert_array_equal(x[:, 20:40, 20:40, :], y)
        # w = 1 + 2*y wherever linear interpolation did not average across a label edge
        pure = (w == 1) | (w == 3)
        np.testing.assert_array_equal(w[pure], 1 + 2 * y[..., 0][pure])
        assert pure.mean() > 0.6


def test_dataset_is_reproducible_per_seed_epoch_and_index():
    masks = [blob_mask(48, s) for s in range(2)]
    images = [(m * 255).astype(np.uint8) for m in masks]

    def make(seed):
        return dataset.SegmentationDataset(
            images, masks, 32, batch_size=2, steps_per_epoch=4, augment=augment.PAPER_PARAMS, seed=seed
        )

    a, b = make(0), make(0)
    later = a[3]  # asking out of order must not change the content
    np.testing.assert_array_equal(later[0], b[3][0])
    np.testing.assert_array_equal(a[1][1], b[1][1])
    assert not np.array_equal(make(1)[3][0], later[0])
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(a[3][0], later[0])
    b.set_epoch(1)  # how a resumed run tells the dataset its epoch
    np.testing.assert_array_equal(a[3][0], b[3][0])
    assert len(list(a)) == 4  # Keras' PyDataset iterates over len(a) batches


def test_dataset_accepts_a_callable_augment():
    calls = []

    def double_flip(image, mask, rng, weights=None):
        calls.append(isinstance(rng, np.random.Generator))
        out = (np.flip(image, 0), np.flip(mask, 0))
        return out if weights is None else out + (np.flip(weights, 0),)

    images = coordinate_images(1, 20)
    ds = dataset.SegmentationDataset(images, [np.zeros((20, 20), np.uint8)], 20, augment=double_flip)
    x, _ = ds[0]
    np.testing.assert_array_equal(x[0, ..., 0], np.flip(images[0], 0).astype(np.float32))
    assert calls == [True]


def test_dataset_errors():
    images = [np.zeros((32, 32), np.uint8)] * 2
    masks = [np.zeros((32, 32), np.uint8)] * 2
    with pytest.raises(ValueError, match="2 images and 1 masks"):
        dataset.SegmentationDataset(images, masks[:1], 16)
    with pytest.raises(ValueError, match="smaller than output_size"):
        dataset.SegmentationDataset(images, masks, 64, 40)
    with pytest.raises(ValueError, match="even"):  # tiling.center_crop says so at the first batch
        dataset.SegmentationDataset(images, masks, 17, 12)[0]
    with pytest.raises(ValueError, match="even"):
        dataset.SegmentationDataset(images, masks, 12, 16)[0]
    with pytest.raises(ValueError, match="shape"):
        dataset.SegmentationDataset(images, [np.zeros((32, 30), np.uint8)] * 2, 16)
    with pytest.raises(TypeError, match="Unknown augmentation"):
        dataset.SegmentationDataset(images, masks, 16, augment={"spin": 3})
    with pytest.raises(ValueError, match="contrast"):
        dataset.SegmentationDataset(images, masks, 16, augment=dict(contrast=1.5))
    with pytest.raises(ValueError, match=r"float images in \[0, 1\]"):  # at once, not in fit
        dataset.SegmentationDataset([np.full((32, 32), 2.0)] * 2, masks, 16, augment=augment.PAPER_PARAMS)
    with pytest.raises(ValueError, match=r"mask\[\.\.\., 0\]"):
        dataset.SegmentationDataset(images, [m[..., None] for m in masks], 16)


def test_dataset_trains_a_tiny_keras_model_with_sample_weights():
    keras = pytest.importorskip("keras")
    masks = [blob_mask(32, s) for s in range(2)]
    images = [(m * 200 + 20).astype(np.uint8) for m in masks]
    weights = [1.0 + 2.0 * m for m in masks]
    ds = dataset.SegmentationDataset(
        images,
        masks,
        20,
        16,
        weights=weights,
        batch_size=2,
        steps_per_epoch=1,
        augment=augment.LEGACY_PARAMS,
        workers=2,
    )
    assert ds.workers == 2
    inputs = keras.Input((20, 20, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 3, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy")
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Keras 3 calls on_epoch_end when fit starts and after every epoch
    assert ds.epoch >= 1

"""Tests of unet_tutorial.synthetic: the seeded EM-like stand-in for ISBI 2012."""

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from unet_tutorial import synthetic


@pytest.fixture(scope="module")
def stack():
    return synthetic.synthetic_membranes(3, size=256, seed=11)


def test_shapes_dtypes_and_binary_masks(stack):
    images, masks = stack
    assert images.shape == masks.shape == (3, 256, 256)
    assert images.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1}
    assert images.std() > 20  # not a flat image


def test_membrane_fraction_and_contrast(stack):
    images, masks = stack
    for image, mask in zip(images, masks):
        assert 0.12 < 1 - mask.mean() < 0.32
        assert image[mask == 1].mean() - image[mask == 0].mean() > 30  # membranes are dark


def test_cells_are_many_components_of_varied_size(stack):
    for mask in stack[1]:
        labels, _ = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        big = sizes[sizes >= 50]
        assert len(big) >= 10
        assert big.max() > 3 * np.median(big)


def test_reproducible_and_seed_dependent(stack):
    again = synthetic.synthetic_membranes(3, size=256, seed=11)
    np.testing.assert_array_equal(again[0], stack[0])
    np.testing.assert_array_equal(again[1], stack[1])
    other = synthetic.synthetic_membranes(1, size=256, seed=12)
    assert (other[1][0] != stack[1][0]).mean() > 0.1
    prefix = synthetic.synthetic_membranes(2, size=256, seed=11)  # slice i does not depend on n
    np.testing.assert_array_equal(prefix[0], stack[0][:2])


def test_output_is_bit_identical_to_the_books():
    """The chapters' synthetic figures and scores depend on these exact pixels."""
    images, masks = synthetic.synthetic_membranes(3, 64, seed=0)
    digest = hashlib.sha256(images.tobytes() + masks.tobytes()).hexdigest()
    assert digest == "8694363be774f2bf6060c22c5a91e785e41b981066ee12ae2a2348ad22a79c11"
    images, masks = synthetic.synthetic_membranes(2, 100, seed=7)
    digest = hashlib.sha256(images.tobytes() + masks.tobytes()).hexdigest()
    assert digest == "07294f7decf87c0356cad586672025d51b5418e8dbd926fd8a963cd0709ef6af"


def test_test_stack_is_another_stream():
    test = synthetic.synthetic_test_stack(2, 64, seed=0)
    assert test.shape == (2, 64, 64) and test.dtype == np.uint8
    assert not np.array_equal(test, synthetic.synthetic_membranes(2, 64, seed=0)[0])
    np.testing.assert_array_equal(test, synthetic.synthetic_test_stack(2, 64, seed=0))


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": 2, "size": 8}, {"n": 2, "seed": -3}, {"n": 1.5}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic.synthetic_membranes(**kwargs)

"""companion.weightmaps against hand-computed cases, brute force and scikit-learn."""

import itertools

import numpy as np
import pytest
from scipy import ndimage
from sklearn.utils.class_weight import compute_class_weight

from companion.weightmaps import balanced_class_weights, unet_weight_map


def border(d1, d2, w0=10.0, sigma=5.0):
    return w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


def brute_force_weight_map(labels, mask, w0, sigma, class_weights):
    """Eq. 2 from pixel coordinates: no distance transform, no connected components."""
    coordinates = np.indices(mask.shape).reshape(mask.ndim, -1).T
    objects = [coordinates[labels.ravel() == k] for k in np.unique(labels[labels > 0])]
    weights = np.asarray(class_weights, dtype=float)[mask].ravel()
    if len(objects) >= 2:
        for index, point in enumerate(coordinates):
            if mask.ravel()[index] == 0:
                d1, d2 = sorted(np.sqrt(((obj - point) ** 2).sum(1)).min() for obj in objects)[:2]
                weights[index] += border(d1, d2, w0, sigma)
    return weights.reshape(mask.shape)


def test_two_pixels_on_a_line_by_hand():
    mask = np.array([[0, 1, 0, 0, 0, 1, 0]])
    # Distances to the objects at columns 1 and 5, nearest first:
    # column 0: 1 and 5; 2: 1 and 3; 3: 2 and 2; 4: 1 and 3; 6: 1 and 5.
    expected = 1 + np.array(
        [border(1, 5), 0.0, border(1, 3), border(2, 2), border(1, 3), 0.0, border(1, 5)]
    )
    np.testing.assert_allclose(unet_weight_map(mask)[0], expected, rtol=1e-15)
    np.testing.assert_allclose(
        unet_weight_map(mask, w0=3.0, sigma=2.0)[0, 3], 1 + 3 * np.exp(-16 / 8), rtol=1e-15
    )


def test_pythagorean_distances_by_hand():
    mask = np.zeros((4, 5), dtype=int)
    mask[0, 0] = mask[3, 4] = 1
    weights = unet_weight_map(mask, sigma=3.0)
    # Pixel (0, 4) is 4 from (0, 0) and 3 from (3, 4); pixel (3, 0) is 3 and 4 as well;
    # pixel (1, 2) is sqrt(5) and sqrt(8).
    np.testing.assert_allclose(weights[0, 4], 1 + border(4, 3, sigma=3.0), rtol=1e-15)
    np.testing.assert_allclose(weights[3, 0], 1 + border(3, 4, sigma=3.0), rtol=1e-15)
    np.testing.assert_allclose(
        weights[1, 2], 1 + border(np.sqrt(5), np.sqrt(8), sigma=3.0), rtol=1e-15
    )


def test_second_nearest_of_three_objects():
    mask = np.array([[1, 0, 0, 1, 0, 0, 0, 1]])
    # Column 2 is 2 from column 0, 1 from column 3 and 5 from column 7: d1 + d2 = 3.
    np.testing.assert_allclose(unet_weight_map(mask)[0, 2], 1 + border(1, 2), rtol=1e-15)
    # Column 5 is 2 from column 3 and 2 from column 7 (5 from column 0).
    np.testing.assert_allclose(unet_weight_map(mask)[0, 5], 1 + border(2, 2), rtol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_class_weights(seed):
    rng = np.random.default_rng(seed)
    mask = (rng.uniform(size=(9, 11)) < 0.15).astype(int) * rng.integers(1, 3, size=(9, 11))
    labels, n_objects = ndimage.label(mask > 0, structure=np.ones((3, 3)))
    assert n_objects >= 2
    class_weights = [0.5, 2.0, 3.0]
    weights = unet_weight_map(mask, w0=7.0, sigma=2.5, class_weights=class_weights)
    expected = brute_force_weight_map(labels, mask, 7.0, 2.5, class_weights)
    np.testing.assert_allclose(weights, expected, rtol=1e-13)


def test_volume_matches_brute_force():
    mask = np.zeros((3, 4, 5), dtype=int)
    mask[0, 0, 0] = mask[2, 3, 4] = mask[1, 0, 4] = 1
    weights = unet_weight_map(mask, sigma=2.0)
    labels, _ = ndimage.label(mask)
    expected = brute_force_weight_map(labels, mask, 10.0, 2.0, [1.0, 1.0])
    np.testing.assert_allclose(weights, expected, rtol=1e-13)


def test_diagonal_neighbours_are_one_object_unless_instances_say_otherwise():
    mask = np.zeros((4, 4), dtype=int)
    mask[1, 1] = mask[2, 2] = 1
    # 8-connected: one object, so no border term.
    np.testing.assert_array_equal(unet_weight_map(mask), np.ones((4, 4)))
    instances = np.zeros((4, 4), dtype=int)
    instances[1, 1], instances[2, 2] = 1, 2
    weights = unet_weight_map(mask, instances=instances)
    # Pixel (1, 2) touches both instances: d1 = d2 = 1.
    np.testing.assert_allclose(weights[1, 2], 1 + border(1, 1), rtol=1e-15)
    expected = brute_force_weight_map(instances, mask, 10.0, 5.0, [1.0, 1.0])
    np.testing.assert_allclose(weights, expected, rtol=1e-13)


@pytest.mark.parametrize("n_objects", [0, 1])
def test_fewer_than_two_objects_keep_the_class_weights(n_objects):
    mask = np.zeros((5, 6), dtype=np.uint8)
    if n_objects:
        mask[1:3, 2:4] = 1
    weights = unet_weight_map(mask, class_weights={0: 0.25, 1: 4.0})
    np.testing.assert_array_equal(weights, np.where(mask == 1, 4.0, 0.25))


def test_w0_zero_and_bool_masks():
    mask = np.zeros((3, 7), dtype=bool)
    mask[1, 0] = mask[1, 6] = True
    np.testing.assert_array_equal(unet_weight_map(mask, w0=0.0), np.ones((3, 7)))
    assert unet_weight_map(mask)[1, 3] == 1 + border(3, 3)


def test_class_weights_as_mapping_and_sequence_agree():
    mask = np.array([[0, 2, 0, 1, 0, 0, 2]])
    from_mapping = unet_weight_map(mask, class_weights={0: 1.0, 1: 5.0, 2: 3.0})
    from_sequence = unet_weight_map(mask, class_weights=np.array([1.0, 5.0, 3.0]))
    np.testing.assert_array_equal(from_mapping, from_sequence)
    np.testing.assert_array_equal(from_mapping[0, [1, 3, 6]], [3.0, 5.0, 3.0])


def test_invalid_arguments():
    mask = np.array([[0, 1, 0, 2]])
    with pytest.raises(ValueError, match=r"mask must hold class indices \(integers\).*float64"):
        unet_weight_map(mask.astype(float))
    with pytest.raises(ValueError, match="mask must hold indices >= 0, got -2"):
        unet_weight_map(-mask)
    with pytest.raises(ValueError, match=r"instances \(4,\) and mask \(1, 4\)"):
        unet_weight_map(mask, instances=np.array([0, 1, 0, 2]))
    with pytest.raises(ValueError, match="sigma must be a finite number > 0, got 0.0"):
        unet_weight_map(mask, sigma=0.0)
    with pytest.raises(ValueError, match="w0 must be a finite number >= 0, got -1.0"):
        unet_weight_map(mask, w0=-1.0)
    with pytest.raises(ValueError, match=r"no weight for the classes \[2\]"):
        unet_weight_map(mask, class_weights={0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match=r"indices up to 2\), got shape \(2,\)"):
        unet_weight_map(mask, class_weights=[1.0, 2.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_weights_equal_scikit_learn(seed):
    labels = np.random.default_rng(seed).choice(4, size=(3, 16, 16), p=[0.85, 0.1, 0.04, 0.01])
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels.ravel())
    np.testing.assert_allclose(balanced_class_weights(labels, 4), expected, rtol=1e-15)


def test_balanced_weights_give_each_present_class_the_same_total():
    labels = np.array([[0, 0, 0, 0, 0, 3], [0, 1, 1, 0, 0, 0]])
    weights = balanced_class_weights(labels, 5)
    assert weights[2] == 0.0 and weights[4] == 0.0
    for present in (0, 1, 3):
        assert weights[labels][labels == present].sum() == pytest.approx(12 / 5, rel=1e-15)
    # scikit-learn refuses a class that is absent from the labels.
    with pytest.raises(ValueError):
        compute_class_weight("balanced", classes=np.arange(5), y=labels.ravel())


def test_balanced_weights_invalid_arguments():
    with pytest.raises(ValueError, match=r"indices in \[0, 2\) for n_classes=2, got 2"):
        balanced_class_weights([0, 1, 2], 2)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 1, got 0"):
        balanced_class_weights([0], 0)
    with pytest.raises(ValueError, match=r"labels must hold class indices \(integers\)"):
        balanced_class_weights([0.0, 1.0], 2)
    for values, n_classes in itertools.product(([], [[0]]), (1, 3)):
        weights = balanced_class_weights(np.array(values, dtype=int), n_classes)
        assert weights.shape == (n_classes,)

"""companion.data: the synthetic segmentation sets and the scores, against scipy and sklearn."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics

from companion.data import confusion_matrix, segmentation_scores, small_targets, touching_shapes


def touching_pairs(instances: np.ndarray) -> np.ndarray:
    """Per image: whether two different instances are 4-neighbours somewhere."""
    found = np.zeros(len(instances), dtype=bool)
    for first, second in (
        (instances[:, :-1, :], instances[:, 1:, :]),
        (instances[:, :, :-1], instances[:, :, 1:]),
    ):
        meet = (first > 0) & (second > 0) & (first != second)
        found |= meet.any(axis=(1, 2))
    return found


# -- small_targets ------------------------------------------------------------------------


def test_small_targets_shapes_and_dtypes():
    images, masks = small_targets(7, size=48, seed=3)
    assert images.shape == masks.shape == (7, 48, 48)
    assert images.dtype == masks.dtype == np.float32
    np.testing.assert_array_equal(np.unique(masks), [0.0, 1.0])
    assert np.all(np.isfinite(images))


def test_small_targets_is_deterministic_given_the_seed():
    first, second, other = (small_targets(20, seed=seed) for seed in (5, 5, 6))
    for array, again in zip(first, second, strict=True):
        np.testing.assert_array_equal(array, again)
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize(
    ("size", "n", "low", "high"), [(64, 500, 0.009, 0.011), (500, 20, 0.008, 0.012)]
)
def test_small_targets_has_about_one_percent_positives(size, n, low, high):
    _, masks = small_targets(n, size=size, seed=0)
    assert low < masks.mean() < high


def test_positive_fraction_scales_the_targets():
    _, masks = small_targets(300, size=64, seed=1, positive_fraction=0.04)
    assert 0.036 < masks.mean() < 0.044


def test_targets_per_image_are_separate_blobs():
    _, masks = small_targets(100, size=64, seed=2, targets_per_image=(2, 2))
    blobs = np.array([ndimage.label(mask)[1] for mask in masks])
    # Two targets per image; a rare overlap merges them into one blob, never more than two.
    assert blobs.max() == 2
    assert np.mean(blobs == 2) > 0.95


def test_without_noise_the_mask_is_the_half_brightness_outline():
    contrast = 2.0
    images, masks = small_targets(
        50, size=64, seed=4, targets_per_image=(1, 1), contrast=contrast, texture=0.0, noise=0.0
    )
    positive = masks == 1
    assert images[positive].min() >= 0.5 * contrast
    assert images[~positive].max() < 0.5 * contrast + 1e-6
    np.testing.assert_allclose(images.max(axis=(1, 2)), contrast)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -1}, "n must be an integer >= 0"),
        ({"n": 2.5}, "n must be an integer >= 0"),
        ({"n": 2, "positive_fraction": 0.5}, r"positive_fraction must be in \[1e-06, 0.2\]"),
        ({"n": 2, "targets_per_image": (3, 2)}, "low <= high"),
        ({"n": 2, "size": 4}, "size 4 is too small for targets of radius"),
    ],
)
def test_small_targets_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_targets(**kwargs)


# -- touching_shapes ----------------------------------------------------------------------


def test_touching_shapes_shapes_and_dtypes():
    images, classes, instances = touching_shapes(6, size=48, n_classes=4, seed=1)
    assert images.shape == classes.shape == instances.shape == (6, 48, 48)
    assert images.dtype == np.float32
    assert classes.dtype == instances.dtype == np.int32
    assert classes.min() == 0 and classes.max() == 3


def test_touching_shapes_is_deterministic_given_the_seed():
    first, second, other = (touching_shapes(10, seed=seed) for seed in (2, 2, 3))
    for array, again in zip(first, second, strict=True):
        np.testing.assert_array_equal(array, again)
    assert not np.array_equal(first[2], other[2])


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_every_instance_has_one_class_and_every_class_occurs(n_classes):
    _, classes, instances = touching_shapes(40, size=64, n_classes=n_classes, seed=0)
    np.testing.assert_array_equal(classes == 0, instances == 0)
    np.testing.assert_array_equal(np.unique(classes), np.arange(n_classes))
    image = np.broadcast_to(np.arange(len(classes))[:, None, None], classes.shape)
    object_pixels = instances > 0
    pairs = np.unique(np.stack([image[object_pixels], instances[object_pixels]]), axis=1)
    triples = np.unique(
        np.stack([image[object_pixels], instances[object_pixels], classes[object_pixels]]), axis=1
    )
    assert pairs.shape[1] == triples.shape[1]


def test_instances_are_numbered_from_one_and_connected():
    _, _, instances = touching_shapes(30, size=64, seed=7)
    for labels in instances:
        count = labels.max()
        np.testing.assert_array_equal(np.unique(labels), np.arange(count + 1))
        for label in range(1, count + 1):
            assert ndimage.label(labels == label)[1] == 1


def test_about_two_thirds_of_the_instances_touch_another():
    _, _, instances = touching_shapes(100, size=64, seed=0)
    touching = set()
    for first, second in (
        (instances[:, :-1, :], instances[:, 1:, :]),
        (instances[:, :, :-1], instances[:, :, 1:]),
    ):
        meet = (first > 0) & (second > 0) & (first != second)
        image = np.nonzero(meet)[0]
        touching |= set(zip(image, first[meet], strict=True))
        touching |= set(zip(image, second[meet], strict=True))
    # Half the occupied cells hold a touching pair (two instances), half a single disc.
    fraction = len(touching) / instances.max(axis=(1, 2)).sum()
    assert 0.6 < fraction < 0.73


def test_touching_fraction_limits():
    _, _, apart = touching_shapes(50, size=64, seed=0, touching_fraction=0.0)
    assert not touching_pairs(apart).any()
    _, _, together = touching_shapes(50, size=64, seed=0, touching_fraction=1.0, empty_fraction=0)
    assert touching_pairs(together).all()
    # Nine cells, each with a pair: 18 instances per image.
    np.testing.assert_array_equal(together.max(axis=(1, 2)), 18)


def test_touching_instances_are_separated_by_a_dark_line():
    images, classes, instances = touching_shapes(50, size=64, seed=0, noise=0.0)
    left, right = instances[:, :, :-1], instances[:, :, 1:]
    border = (left > 0) & (right > 0) & (left != right)
    inside = (left > 0) & (left == right)
    border_ratio = images[:, :, :-1][border] / np.where(classes == 1, 1.0, 2.0)[:, :, :-1][border]
    inside_ratio = images[:, :, :-1][inside] / np.where(classes == 1, 1.0, 2.0)[:, :, :-1][inside]
    # Level times 0.3 on the line, times 1 inside, plus a texture of standard deviation 0.2.
    assert np.median(border_ratio) < 0.5 < np.median(inside_ratio)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 2, "n_classes": 1}, "n_classes must be an integer >= 2"),
        ({"n": 2, "size": 20}, "size must be an integer >= 24"),
        ({"n": 2, "touching_fraction": 1.5}, r"touching_fraction must be in \[0.0, 1.0\]"),
    ],
)
def test_touching_shapes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        touching_shapes(**kwargs)


# -- confusion_matrix and segmentation_scores ---------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_confusion_matrix_matches_sklearn(n_classes):
    rng = np.random.default_rng(n_classes)
    target = rng.integers(0, n_classes, size=(4, 9, 9))
    prediction = rng.integers(0, n_classes, size=(4, 9, 9))
    expected = metrics.confusion_matrix(
        target.ravel(), prediction.ravel(), labels=np.arange(n_classes)
    )
    np.testing.assert_array_equal(confusion_matrix(target, prediction, n_classes), expected)


def test_confusion_matrix_rejects_mismatched_shapes_and_classes():
    with pytest.raises(ValueError, match=r"target \(2, 3\) and prediction \(3, 2\)"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), n_classes=2)
    with pytest.raises(ValueError, match=r"prediction holds a class outside 0 \.\. 1"):
        confusion_matrix([0, 1], [0, 2], n_classes=2)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_segmentation_scores_match_sklearn(n_classes):
    rng = np.random.default_rng(10 + n_classes)
    target = rng.integers(0, n_classes, size=500)
    # Mostly right, so that the scores are far from 0 and differ between the classes.
    prediction = np.where(rng.random(500) < 0.7, target, rng.integers(0, n_classes, size=500))
    scores = segmentation_scores(confusion_matrix(target, prediction, n_classes))
    labels = list(range(1, n_classes))
    common = {"labels": labels, "average": "macro", "zero_division": 0}
    expected = {
        "dice": metrics.f1_score(target, prediction, **common),
        "iou": metrics.jaccard_score(target, prediction, **common),
        "precision": metrics.precision_score(target, prediction, **common),
        "recall": metrics.recall_score(target, prediction, **common),
    }
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(scores[name], value, rtol=1e-12, err_msg=name)


def test_segmentation_scores_limits():
    perfect = segmentation_scores(np.diag([50, 7, 3]))
    assert perfect == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    # Class 2 neither present nor predicted: it scores 0, as sklearn's zero_division=0.
    absent = segmentation_scores([[50, 0, 0], [0, 7, 0], [0, 0, 0]])
    assert absent == {"dice": 0.5, "iou": 0.5, "precision": 0.5, "recall": 0.5}
    only_background = segmentation_scores([[50, 0], [0, 0]], classes=[0])
    assert only_background["dice"] == 1.0


def test_segmentation_scores_rejects_non_square_confusion():
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        segmentation_scores(np.zeros((2, 3)))

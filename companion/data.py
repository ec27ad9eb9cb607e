"""Synthetic segmentation data sets (NumPy only, seeded) and the scores that evaluate them.

======================== =================================================================
``small_targets``        a few small bright-ish blobs on textured noise, binary masks with
                         about 1% positive pixels: the tiny-target class imbalance
``touching_shapes``      discs of several classes on noise, some in touching pairs, with
                         class maps and instance labels: for multi-class U-Nets and their
                         border weight maps
``confusion_matrix``     pixel counts of (true class, predicted class)
``segmentation_scores``  Dice, IoU, precision and recall from a confusion matrix
======================== =================================================================

Both generators are vectorized over the images (each target is drawn on a small patch, each
touching pair inside one grid cell), so 1,000 images of 128x128 take a fraction of a second,
and both return the same arrays for the same ``seed``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["confusion_matrix", "segmentation_scores", "small_targets", "touching_shapes"]


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value, low: float, high: float) -> float:
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _smooth_noise(rng: np.random.Generator, n: int, size: int, scale: float) -> np.ndarray:
    # Noise on a coarse grid of knots, interpolated by a Gaussian kernel matrix on each axis:
    # G @ Z @ G.T costs two batched matrix products instead of a convolution of every image.
    # Rows of G have unit norm, so every pixel has unit variance.
    knots = max(2, math.ceil(size / scale) + 1)
    spacing = (size - 1) / (knots - 1) if size > 1 else 1.0
    offsets = np.arange(size)[:, None] - np.linspace(0.0, size - 1, knots)[None, :]
    kernel = np.exp(-0.5 * (offsets / spacing) ** 2)
    kernel /= np.linalg.norm(kernel, axis=1, keepdims=True)
    kernel = kernel.astype(np.float32)
    coarse = rng.standard_normal((n, knots, knots), dtype=np.float32)
    return kernel @ coarse @ kernel.T


def small_targets(
    n: int,
    size: int = 64,
    seed: int = 0,
    *,
    positive_fraction: float = 0.01,
    targets_per_image: tuple[int, int] = (1, 5),
    contrast: float = 1.5,
    texture: float = 0.4,
    noise: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Grey-scale images with a few small bright-ish targets on textured noise, and their masks.

    Each image holds ``k`` elliptical targets, ``k`` uniform in ``targets_per_image``
    (inclusive), at uniform positions with random orientation; the half-axes ``a`` and
    ``b = r**2 / a`` have the mean area ``pi r**2`` of a disc of radius::

        r = size * sqrt(positive_fraction / (pi * mean(k)))

    so that about ``positive_fraction`` of all pixels are positive (a little less where two
    targets overlap), for any ``size``: ``size=500`` gives the 500x500 images with 1%
    positives of the pixelwise class-imbalance chapter, with targets of radius 16. A pixel is
    positive when its centre lies inside an ellipse. The image is::

        image = contrast * profile + texture * smooth_noise + noise * white_noise

    where ``profile`` is 1 well inside a target, 1/2 on its outline and 0 a little outside
    (summed where two targets overlap),
    ``smooth_noise`` is Gaussian-smoothed noise of unit variance and correlation length
    ``3 r`` (distractor blobs), and ``white_noise`` is standard normal per pixel.

    Args:
        n: number of images, >= 0.
        size: image height and width in pixels; large enough for one target (about >= 16).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same arrays.
        positive_fraction: the expected fraction of positive pixels, in (0, 0.2].
        targets_per_image: ``(low, high)``, the inclusive range of the number of targets.
        contrast: brightness of the targets above the background.
        texture: standard deviation of the smooth background texture.
        noise: standard deviation of the white noise.

    Returns:
        ``(images, masks)``, both float32 of shape ``(n, size, size)``; masks hold 0 and 1.

    Raises:
        ValueError: if an argument is out of its range, or ``size`` is too small to hold a
            target.

    Example:
        >>> images, masks = small_targets(200, size=64, seed=0)
        >>> images.shape, images.dtype, masks.dtype
        ((200, 64, 64), dtype('float32'), dtype('float32'))
        >>> round(float(masks.mean()), 4)
        0.0098
    """
    n = _check_count("n", n, 0)
    size = _check_count("size", size, 1)
    positive_fraction = _check_fraction("positive_fraction", positive_fraction, 1e-6, 0.2)
    low, high = (_check_count("targets_per_image", value, 1) for value in targets_per_image)
    if low > high:
        raise ValueError(
            f"targets_per_image must be (low, high) with low <= high, got {(low, high)}"
        )

    rng = np.random.default_rng(seed)
    radius = size * math.sqrt(positive_fraction / (math.pi * (low + high) / 2))
    # Half-axes within [0.7 r, r / 0.7]; the soft edge of the profile reaches q = 1.2.
    half = math.ceil(math.sqrt(1.2) * radius / 0.7) + 1
    patch = np.arange(-half, half + 1, dtype=np.float32)
    if 2 * half + 1 > size:
        raise ValueError(
            f"size {size} is too small for targets of radius {radius:.2f}: "
            f"a target needs a patch of {2 * half + 1} pixels"
        )

    images = noise * rng.standard_normal((n, size, size), dtype=np.float32)
    images += texture * _smooth_noise(rng, n, size, scale=3 * radius)
    masks = np.zeros((n, size, size), dtype=np.float32)
    counts = rng.integers(low, high + 1, size=n)
    for slot in range(high):
        images_with_slot = np.flatnonzero(counts > slot)
        k = images_with_slot.size
        # Integer patch corner plus a sub-pixel offset: unbiased areas for tiny targets.
        row = rng.integers(half, size - half, size=k)
        col = rng.integers(half, size - half, size=k)
        sub_row, sub_col = rng.random((2, k), dtype=np.float32)
        semi_a = radius * rng.uniform(0.7, 1 / 0.7, size=k).astype(np.float32)
        semi_b = radius**2 / semi_a
        angle = rng.uniform(0.0, np.pi, size=k).astype(np.float32)
        dy = patch[None, :, None] - sub_row[:, None, None]
        dx = patch[None, None, :] - sub_col[:, None, None]
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        u = (dx * cos + dy * sin) / semi_a[:, None, None]
        v = (dy * cos - dx * sin) / semi_b[:, None, None]
        q = u**2 + v**2
        # One patch per image in this slot: the fancy-indexed updates never collide.
        index = (
            images_with_slot[:, None, None],
            row[:, None, None] + np.arange(-half, half + 1)[None, :, None],
            col[:, None, None] + np.arange(-half, half + 1)[None, None, :],
        )
        masks[index] = np.maximum(masks[index], q <= 1.0)
        images[index] += contrast * np.clip((1.2 - q) / 0.4, 0.0, 1.0)
    return images, masks


def touching_shapes(
    n: int,
    size: int = 64,
    n_classes: int = 3,
    seed: int = 0,
    *,
    grid: int = 3,
    touching_fraction: float = 0.5,
    empty_fraction: float = 0.2,
    noise: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of discs of several classes, some in touching pairs, with class and instance maps.

    The image is cut into ``grid x grid`` cells of ``size // grid`` pixels. A cell is empty
    with probability ``empty_fraction``; otherwise it holds one disc or, with probability
    ``touching_fraction``, two overlapping discs of radii ``r1``, ``r2`` (each 14% to 20% of
    the cell) whose centres are ``0.7`` to ``0.9`` times ``r1 + r2`` apart. Where two discs
    overlap, a pixel goes to the disc with the smaller power ``d**2 - r**2`` (the power
    diagram), so both instances stay convex, keep their own centre and touch along a straight
    line. Each disc gets a class uniform in ``1 .. n_classes - 1`` (0 is the background), so
    touching pairs of one class and of two classes both occur. The image is::

        image = level[class] * (1 - 0.7 * border) + 0.2 * smooth_noise + noise * white_noise

    with ``level`` rising from 1 to 2 over the classes (0 for the background) and ``border``
    marking the pixels where two instances meet: the thin dark line that separates touching
    cells in micrographs, and that the border weight maps of U-Net (Ronneberger et al., 2015)
    weight up.

    Args:
        n: number of images, >= 0.
        size: image height and width in pixels, at least ``8 * grid``.
        n_classes: number of classes including the background, >= 2.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same arrays.
        grid: cells per side, >= 1.
        touching_fraction: probability that an occupied cell holds a touching pair.
        empty_fraction: probability that a cell is empty.
        noise: standard deviation of the white noise.

    Returns:
        ``(images, classes, instances)`` of shape ``(n, size, size)``: float32 images, int32
        class maps in ``0 .. n_classes - 1``, and int32 instance labels numbered
        ``1, 2, ...`` in raster order of the cells within each image (0: background).

    Raises:
        ValueError: if an argument is out of its range.

    Example:
        >>> images, classes, instances = touching_shapes(100, size=64, n_classes=3, seed=0)
        >>> images.dtype, classes.dtype, instances.shape
        (dtype('float32'), dtype('int32'), (100, 64, 64))
        >>> sorted(np.unique(classes).tolist())
        [0, 1, 2]
        >>> # Horizontally adjacent pixels of two different instances: touching objects.
        >>> left, right = instances[:, :, :-1], instances[:, :, 1:]
        >>> bool(np.any((left > 0) & (right > 0) & (left != right)))
        True
    """
    n = _check_count("n", n, 0)
    n_classes = _check_count("n_classes", n_classes, 2)
    grid = _check_count("grid", grid, 1)
    size = _check_count("size", size, 8 * grid)
    touching_fraction = _check_fraction("touching_fraction", touching_fraction, 0.0, 1.0)
    empty_fraction = _check_fraction("empty_fraction", empty_fraction, 0.0, 1.0)

    rng = np.random.default_rng(seed)
    cell = size // grid
    cells = (n, grid, grid)
    occupied = rng.random(cells) >= empty_fraction
    pair = occupied & (rng.random(cells) < touching_fraction)
    radius_a = cell * rng.uniform(0.14, 0.2, size=cells)
    radius_b = cell * rng.uniform(0.14, 0.2, size=cells)
    distance = np.where(pair, rng.uniform(0.7, 0.9, size=cells) * (radius_a + radius_b), 0.0)
    angle = rng.uniform(0.0, 2 * np.pi, size=cells)
    half_step = 0.5 * distance * np.stack([np.sin(angle), np.cos(angle)])  # (2, n, g, g)
    # The pair's midpoint, uniform where its bounding box stays inside the cell.
    extent = np.abs(half_step) + np.maximum(radius_a, np.where(pair, radius_b, 0.0))
    midpoint = extent - 0.5 + rng.random((2, *cells)) * (cell - 2 * extent)
    centre_a, centre_b = midpoint - half_step, midpoint + half_step

    pixel = np.arange(cell, dtype=np.float32)

    def power(centre, radius, present):
        # d**2 - r**2 over every pixel of every cell, (n, g, g, cell, cell); where the disc is
        # absent, r**2 = -1 keeps the power positive, so no pixel falls inside it.
        squared_radius = np.where(present, radius**2, -1.0).astype(np.float32)
        rows = (pixel - centre[0][..., None].astype(np.float32)) ** 2
        cols = (pixel - centre[1][..., None].astype(np.float32)) ** 2
        rows -= squared_radius[..., None]
        return rows[..., :, None] + cols[..., None, :]

    power_a = power(centre_a, radius_a, occupied)
    power_b = power(centre_b, radius_b, pair)
    in_a = (power_a <= 0) & (power_a <= power_b)
    in_b = (power_b <= 0) & ~in_a
    del power_a, power_b

    # Consecutive instance numbers per image: a running count over the (cell, disc) slots.
    ids = np.cumsum(np.stack([occupied, pair], axis=-1).reshape(n, -1), axis=1, dtype=np.int32)
    id_a, id_b = ids[:, 0::2].reshape(cells), ids[:, 1::2].reshape(cells)
    class_a, class_b = rng.integers(1, n_classes, size=(2, *cells), dtype=np.int32)
    start = (size - grid * cell) // 2

    def assemble(value_a, value_b):
        # Each pixel's disc value, then the cells tiled into (n, size, size) images,
        # centred, the margin background.
        per_cell = in_a * value_a[..., None, None]
        per_cell += in_b * value_b[..., None, None]
        full = np.zeros((n, size, size), dtype=np.int32)
        full[:, start : start + grid * cell, start : start + grid * cell] = per_cell.transpose(
            0, 1, 3, 2, 4
        ).reshape(n, grid * cell, grid * cell)
        return full

    instances = assemble(id_a, id_b)
    classes = assemble(class_a, class_b)

    border = np.zeros((n, size, size), dtype=bool)
    across_rows = (instances[:, :-1] != instances[:, 1:]) & (instances[:, :-1] > 0)
    across_rows &= instances[:, 1:] > 0
    border[:, :-1] |= across_rows
    across_cols = (instances[:, :, :-1] != instances[:, :, 1:]) & (instances[:, :, :-1] > 0)
    across_cols &= instances[:, :, 1:] > 0
    border[:, :, :-1] |= across_cols

    levels = np.concatenate([[0.0], np.linspace(1.0, 2.0, n_classes - 1)]).astype(np.float32)
    images = levels[classes]
    images[border] *= np.float32(0.3)
    images += 0.2 * _smooth_noise(rng, n, size, scale=cell / 3)
    images += noise * rng.standard_normal((n, size, size), dtype=np.float32)
    return images, classes, instances


def confusion_matrix(target, prediction, n_classes: int) -> np.ndarray:
    """Pixel counts of each (true class, predicted class) pair.

    ``confusion[i, j]`` counts the pixels of class ``i`` predicted as class ``j`` (rows: the
    truth, as ``sklearn.metrics.confusion_matrix``). Binary masks are the case
    ``n_classes=2``.

    Args:
        target: integer class indices, any shape.
        prediction: integer class indices of the shape of ``target``.
        n_classes: number of classes; every index must lie in ``0 .. n_classes - 1``.

    Returns:
        int64 array of shape ``(n_classes, n_classes)``.

    Raises:
        ValueError: if the shapes differ or an index is out of range.

    Example:
        >>> confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], n_classes=3).tolist()
        [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    """
    n_classes = _check_count("n_classes", n_classes, 1)
    target, prediction = np.asarray(target), np.asarray(prediction)
    if target.shape != prediction.shape:
        raise ValueError(
            "target and prediction must have the same shape, got "
            f"target {target.shape} and prediction {prediction.shape}"
        )
    target, prediction = target.astype(np.int64).ravel(), prediction.astype(np.int64).ravel()
    for name, values in (("target", target), ("prediction", prediction)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} holds a class outside 0 .. {n_classes - 1}")
    counts = np.bincount(target * n_classes + prediction, minlength=n_classes**2)
    return counts.reshape(n_classes, n_classes)


def segmentation_scores(confusion, classes=None) -> dict[str, float]:
    """Dice, IoU, precision and recall of each class, averaged over the chosen classes.

    Formula, per class ``c`` with ``TP``, ``FP``, ``FN`` counted over all pixels pooled::

        dice      = 2 TP / (2 TP + FP + FN)        (the F1 score)
        iou       = TP / (TP + FP + FN)            (the Jaccard index)
        precision = TP / (TP + FP)
        recall    = TP / (TP + FN)

    then the plain (macro) mean over ``classes``. A ratio whose denominator is 0 counts as 0,
    as ``zero_division=0`` in scikit-learn; pooled over a validation set this only happens
    when a class is neither present nor predicted. Equal to ``sklearn.metrics.f1_score``,
    ``jaccard_score``, ``precision_score`` and ``recall_score`` with ``average="macro"`` and
    ``labels=classes``.

    Args:
        confusion: square array of counts, rows the true class (see :func:`confusion_matrix`).
        classes: the classes to average over; default: every class but 0, the background
            (for binary masks: class 1, the positives).

    Returns:
        ``{"dice": ..., "iou": ..., "precision": ..., "recall": ...}`` as Python floats.

    Raises:
        ValueError: if ``confusion`` is not square or ``classes`` is empty.

    Example:
        >>> scores = segmentation_scores([[90, 2], [3, 5]])
        >>> {name: round(value, 4) for name, value in scores.items()}
        {'dice': 0.6667, 'iou': 0.5, 'precision': 0.7143, 'recall': 0.625}
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}")
    classes = list(range(1, confusion.shape[0])) if classes is None else list(classes)
    if not classes:
        raise ValueError("classes must name at least one class")
    true_positive = np.diag(confusion)[classes]
    false_positive = confusion.sum(axis=0)[classes] - true_positive
    false_negative = confusion.sum(axis=1)[classes] - true_positive

    def ratio(numerator, denominator):
        safe = np.where(denominator > 0, denominator, 1.0)
        return float(np.mean(np.where(denominator > 0, numerator / safe, 0.0)))

    return {
        "dice": ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative),
        "iou": ratio(true_positive, true_positive + false_positive + false_negative),
        "precision": ratio(true_positive, true_positive + false_positive),
        "recall": ratio(true_positive, true_positive + false_negative),
    }

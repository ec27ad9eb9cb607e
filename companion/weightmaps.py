"""Pixel weights for segmentation: U-Net border weight maps and balanced class weights.

NumPy and SciPy only; the results feed the weighted losses of both framework sides
(``weight_map`` of :func:`companion.torch.weighted_cross_entropy`, ``weight`` of
:func:`companion.torch.weighted_bce_loss`, ``sample_weight`` of the Keras losses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

__all__ = ["balanced_class_weights", "unet_weight_map"]


def _check_integer(name: str, values: np.ndarray) -> None:
    if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
        raise ValueError(f"{name} must hold class indices (integers), got dtype {values.dtype}")
    if values.size and values.min() < 0:
        raise ValueError(f"{name} must hold indices >= 0, got {values.min()}")


def _class_weight_image(mask: np.ndarray, class_weights) -> np.ndarray:
    """``w_c``: the weight of each pixel's class, 1 where ``class_weights`` is None."""
    if class_weights is None:
        return np.ones(mask.shape)
    classes = np.unique(mask)
    if isinstance(class_weights, Mapping):
        missing = [int(c) for c in classes if int(c) not in class_weights]
        if missing:
            raise ValueError(f"class_weights has no weight for the classes {missing} of mask")
        table = np.zeros(int(classes.max()) + 1)
        for c in classes:
            table[c] = class_weights[int(c)]
    else:
        table = np.asarray(class_weights, dtype=np.float64)
        if table.ndim != 1 or table.size <= classes.max():
            raise ValueError(
                "class_weights must give a weight to every class of mask (indices up to "
                f"{int(classes.max())}), got shape {table.shape}"
            )
    return table[mask]


def unet_weight_map(
    mask,
    *,
    instances=None,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights=None,
) -> np.ndarray:
    """The pixel weight map of the U-Net paper (Ronneberger et al., 2015, eq. 2).

    Formula, for every pixel ``x``::

        w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))   on background
        w(x) = w_c(x)                                                     on objects

    where ``w_c(x) = class_weights[mask[x]]`` balances the classes, and ``d1``, ``d2`` are the
    Euclidean distances from ``x`` to the nearest and the second-nearest object (to their
    nearest pixels, centre to centre, ``scipy.ndimage.distance_transform_edt``). The border
    term is largest in the thin gaps between touching objects, which the network must learn
    to keep as background so that the objects stay separate. The paper uses ``w0 = 10`` and
    ``sigma`` about 5 pixels.

    With fewer than two objects, ``d2`` is undefined: the border term is 0 and the map is
    ``w_c`` (a common snippet returns all zeros there, which silently drops such images from
    a weighted loss).

    Objects are the connected components of ``mask > 0`` with full connectivity (8-connected
    in 2-D, 26-connected in 3-D), unless ``instances`` labels them: then each positive value
    of ``instances`` is one object, which lets touching objects of one class stay apart. The
    border term applies where ``mask == 0``. The cost is one distance transform per object.

    Args:
        mask: class indices, 0 for background, shape ``(H, W)`` (or ``(D, H, W)``; any number
            of axes is one image: call it per image for a batch). A binary mask is the
            two-class case; bool is accepted.
        instances: optional instance labels of ``mask``'s shape, 0 for background.
        w0: the height of the border term, finite and >= 0.
        sigma: its width in pixels, finite and > 0.
        class_weights: ``w_c`` per class, a mapping ``{class: weight}`` or a sequence indexed
            by class (e.g. from :func:`balanced_class_weights`); None for 1 everywhere.

    Returns:
        The weights, float64, of ``mask``'s shape.

    Raises:
        ValueError: if ``mask`` or ``instances`` is not integer, negative or differently
            shaped, ``w0`` or ``sigma`` is out of range, or ``class_weights`` lacks a class
            of ``mask``.

    Example:
        >>> mask = [[0, 1, 0, 0, 0, 1, 0]]
        >>> weights = unet_weight_map(mask, w0=10.0, sigma=5.0)
        >>> # The middle pixel is 2 from each object: 1 + 10 exp(-(2 + 2)**2 / 50).
        >>> round(float(weights[0, 3]), 5), float(weights[0, 1])
        (8.26149, 1.0)
    """
    mask = np.asarray(mask)
    _check_integer("mask", mask)
    mask = mask.astype(np.intp)
    w0, sigma = float(w0), float(sigma)
    if not 0.0 <= w0 < math.inf:
        raise ValueError(f"w0 must be a finite number >= 0, got {w0}")
    if not 0.0 < sigma < math.inf:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")
    weights = _class_weight_image(mask, class_weights)

    if instances is None:
        structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
        labels, n_objects = ndimage.label(mask > 0, structure=structure)
        objects = range(1, n_objects + 1)
    else:
        labels = np.asarray(instances)
        _check_integer("instances", labels)
        if labels.shape != mask.shape:
            raise ValueError(
                "instances must have the shape of mask, got "
                f"instances {labels.shape} and mask {mask.shape}"
            )
        objects = np.unique(labels[labels > 0])
    if len(objects) < 2 or w0 == 0.0:
        return weights

    nearest = np.full(mask.shape, np.inf)
    second = np.full(mask.shape, np.inf)
    for label in objects:
        # Distance from every pixel to the nearest pixel of this object.
        distance = ndimage.distance_transform_edt(labels != label)
        second = np.minimum(second, np.maximum(nearest, distance))
        nearest = np.minimum(nearest, distance)
    border = w0 * np.exp(-((nearest + second) ** 2) / (2.0 * sigma**2))
    return weights + np.where(mask == 0, border, 0.0)


def balanced_class_weights(labels, n_classes: int) -> np.ndarray:
    """Class weights inversely proportional to class frequency, over all pixels.

    Formula, for each class ``c`` with ``count[c]`` pixels among ``n_pixels``::

        weight[c] = n_pixels / (n_classes * count[c])      (0 if count[c] == 0)

    so that every present class carries the same total weight, ``n_pixels / n_classes``.
    Where every class is present this equals scikit-learn's
    ``compute_class_weight("balanced", classes=range(n_classes), y=labels.ravel())``; a class
    absent from ``labels`` gets 0 where scikit-learn raises: no pixel carries that class, so
    the weight is never used by a loss computed on these labels (compute the weights on the
    whole training set, not per batch, if a class can be missing from a batch).

    Args:
        labels: class indices in ``[0, n_classes)``, any shape (e.g. a stack of masks).
        n_classes: the number of classes, >= 1.

    Returns:
        float64 weights, shape ``(n_classes,)``.

    Raises:
        ValueError: if ``labels`` is not integer or holds an index outside
            ``[0, n_classes)``, or ``n_classes`` < 1.

    Example:
        >>> balanced_class_weights([[0, 0, 0], [0, 1, 1]], 3).tolist()
        [0.5, 1.0, 0.0]
    """
    labels = np.asarray(labels)
    _check_integer("labels", labels)
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1, got {n_classes}")
    n_classes = int(n_classes)
    if labels.size and labels.max() >= n_classes:
        raise ValueError(
            f"labels must hold indices in [0, {n_classes}) for n_classes={n_classes}, "
            f"got {labels.max()}"
        )
    counts = np.bincount(labels.ravel().astype(np.intp), minlength=n_classes)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = labels.size / (n_classes * counts[present])
    return weights

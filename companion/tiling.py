"""Predicting whole images of any size in tiles.

A U-Net takes images whose height and width are multiples of ``2**depth``, and a network
trained on 64x64 crops is best applied to pieces of about that size. :func:`predict_tiled`
therefore cuts an image ``(H, W, C)`` of any size into overlapping tiles, runs a function
from a batch of tiles to their probabilities on batches of them, and puts the probabilities
back together. The tiles are laid out by :class:`TileLayout`:

1. The image is padded at its bottom and right, by reflection, to ``H' x W'``, the next
   multiples of ``2**depth`` (an image of 5x7 pixels becomes 16x16 for ``2**depth = 16``).
2. Along each axis, tiles of ``tile`` pixels start every ``tile - overlap`` pixels from 0;
   the last tile ends flush with the padded image. Every start is a multiple of
   ``2**depth``, so the poolings of each tile fall on the same pixel grid as those of the
   whole image. An image no larger than a tile is one tile, the whole padded image.
3. **Blending: each output pixel is taken from one tile, the one whose centre is nearest**
   (where two tiles overlap, the boundary between them is the middle of the overlap). No
   average of several tiles: a weighted blend would mix in values computed nearer a tile's
   border, the ones tiling gets wrong. Each pixel is then at least ``overlap // 2`` pixels
   from every border its tile has inside the image (:meth:`TileLayout.border_distance`).

The edges of the padded image are edges of every tiling, so tiles change nothing there: a
pixel's prediction differs from the untiled one (the network on the whole padded image) only
through the tile borders inside the image. For a network whose output at a pixel depends only
on the input within ``r`` pixels (its receptive field's radius), a pixel at least ``r`` from
its tile's inner borders gets exactly the untiled value, and with ``overlap >= 2 r`` every
pixel does. The package's U-Net has ``r = 7 * 2**depth - 5``
(:func:`unet_receptive_field_radius`: 107 pixels at depth 4), but its GroupNorm layers
normalise with statistics over each whole input, so its tiled prediction is not the untiled
one anywhere, only close to it; the scripts therefore tile at the size the network was
trained on, where the statistics are those it learned with.
Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from itertools import pairwise

import numpy as np

__all__ = ["TileLayout", "predict_tiled", "unet_receptive_field_radius"]


def unet_receptive_field_radius(depth: int) -> int:
    """How far from an output pixel the package's U-Net looks: ``7 * 2**depth - 5`` pixels.

    Counted along one axis, for the U-Net of :class:`companion.torch.models.UNet` and
    :func:`companion.keras.models.unet` without its normalisation: each 3x3 convolution at
    level ``l`` (``2**l`` input pixels per pixel) adds ``2**l``, four per level on the way
    down and up (``4 (2**depth - 1)``), two in the bottleneck (``2 * 2**depth``), and each
    2x2 pooling at level ``l`` up to ``2**l`` on one side (``2**depth - 1``); the transposed
    convolutions and the 1x1 head add nothing. ``tests/test_tiling.py`` measures it with
    autograd.

    Example:
        >>> [unet_receptive_field_radius(depth) for depth in (1, 2, 3, 4)]
        [9, 23, 51, 107]
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return 7 * 2**depth - 5


# -- the layout of the tiles --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Axis:
    """The tiles along one axis: their starts, their size, and the pixels each one gives."""

    length: int  # of the image
    padded: int  # of the padded image, a multiple of the network's 2**depth
    size: int  # of each tile (the padded length if one tile covers it)
    starts: tuple[int, ...]
    cores: tuple[tuple[int, int], ...]  # [low, high) of the image taken from each tile

    @classmethod
    def plan(cls, length: int, tile: int | None, overlap: int, multiple: int) -> _Axis:
        padded = math.ceil(length / multiple) * multiple
        if tile is None or tile >= padded:
            return cls(length, padded, padded, (0,), ((0, length),))
        starts = list(range(0, padded - tile, tile - overlap)) + [padded - tile]
        # Between two tiles, the middle of their overlap; the ends are the image's.
        bounds = [0] + [(a + b + tile) // 2 for a, b in pairwise(starts)] + [length]
        # The last tiles can lie wholly in the padding of an image shorter than its multiple.
        cores = [(min(low, length), min(high, length)) for low, high in pairwise(bounds)]
        return cls(length, padded, tile, tuple(starts), tuple(cores))

    def border_distance(self, none: int) -> np.ndarray:
        """Each pixel's distance to the nearest border of its tile that is not an edge of
        the padded image; ``none`` where there is no such border."""
        distance = np.full(self.length, none, dtype=np.int64)
        for start, (low, high) in zip(self.starts, self.cores, strict=True):
            position = np.arange(low, high)
            if start > 0:
                distance[low:high] = np.minimum(distance[low:high], position - start)
            if start + self.size < self.padded:
                distance[low:high] = np.minimum(
                    distance[low:high], start + self.size - 1 - position
                )
        return distance


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """Where the tiles of an image lie and which pixels each one gives (see the module's
    description for the rule). Built by :meth:`plan`.

    Attributes:
        shape: ``(H, W)`` of the image.
        padded: ``(H', W')``, the padded image: ``H`` and ``W`` rounded up to the multiple.
        tile: ``(height, width)`` of every tile: ``tile`` each way, or the padded size along
            an axis that one tile covers.
        count: the number of tiles.
    """

    rows: _Axis
    columns: _Axis

    @classmethod
    def plan(
        cls, height: int, width: int, *, tile: int | None, overlap: int, multiple: int
    ) -> TileLayout:
        """The layout for an image of ``height x width``.

        Args:
            height, width: the image's size, >= 1.
            tile: the tiles' height and width, a multiple of ``multiple``; None: the whole
                (padded) image in one piece.
            overlap: pixels shared by neighbouring tiles, a multiple of ``multiple`` in
                ``[0, tile)``; the least overlap: the last tile may overlap more.
            multiple: the network's ``2**depth``.

        Raises:
            ValueError: for sizes, tiles or overlaps outside these ranges.
        """
        for name, value in (("height", height), ("width", width), ("multiple", multiple)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if tile is not None and (tile < multiple or tile % multiple):
            raise ValueError(f"the tile ({tile}) must be a multiple of 2**depth = {multiple}")
        if overlap < 0 or overlap % multiple or (tile is not None and overlap >= tile):
            raise ValueError(
                f"the overlap ({overlap}) must be a multiple of 2**depth = {multiple} in "
                f"[0, tile = {tile})"
            )
        return cls(
            _Axis.plan(height, tile, overlap, multiple), _Axis.plan(width, tile, overlap, multiple)
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.length, self.columns.length

    @property
    def padded(self) -> tuple[int, int]:
        return self.rows.padded, self.columns.padded

    @property
    def tile(self) -> tuple[int, int]:
        return self.rows.size, self.columns.size

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.columns.starts)

    def pad(self, image: np.ndarray) -> np.ndarray:
        """``image`` ``(H, W, C)`` padded by reflection at its bottom and right to ``padded``."""
        extra = (
            (0, self.rows.padded - self.rows.length),
            (0, self.columns.padded - self.columns.length),
        )
        return np.pad(image, extra + ((0, 0),) * (image.ndim - 2), mode="reflect")

    def windows(
        self,
    ) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice], tuple[slice, slice]]]:
        """For each tile, row by row: its place in the padded image, the part of it that
        the output takes (in the tile's coordinates), and where that part goes in the image;
        each as ``(rows, columns)`` slices. Tiles that give no pixel are left out."""
        for top, (row_low, row_high) in zip(self.rows.starts, self.rows.cores, strict=True):
            for left, (column_low, column_high) in zip(
                self.columns.starts, self.columns.cores, strict=True
            ):
                if row_low == row_high or column_low == column_high:
                    continue
                yield (
                    (slice(top, top + self.rows.size), slice(left, left + self.columns.size)),
                    (
                        slice(row_low - top, row_high - top),
                        slice(column_low - left, column_high - left),
                    ),
                    (slice(row_low, row_high), slice(column_low, column_high)),
                )

    def border_distance(self) -> np.ndarray:
        """``(H, W)`` int64: each pixel's distance, in pixels, to the nearest border of the
        tile it is taken from, leaving out the borders on the padded image's edges (they are
        the untiled network's edges too). A pixel whose distance is at least a network's
        receptive-field radius gets the untiled prediction exactly, if the network has no
        statistics over its whole input (no GroupNorm). Where the tile has no inner border
        (an image in one tile), the larger side of the padded image."""
        none = max(self.padded)
        return np.minimum(
            self.rows.border_distance(none)[:, None], self.columns.border_distance(none)[None, :]
        )


def predict_tiled(
    image: np.ndarray,
    predict_batch: Callable[[np.ndarray], np.ndarray],
    *,
    multiple: int,
    tile: int | None = None,
    overlap: int = 0,
    batch_size: int = 8,
) -> np.ndarray:
    """The prediction of ``predict_batch`` for a whole image, computed in tiles.

    The tiles (:class:`TileLayout`) go to ``predict_batch`` in batches of up to
    ``batch_size``; each output pixel comes from the tile whose centre is nearest.

    Args:
        image: ``(H, W, C)``, any ``H, W >= 1``.
        predict_batch: maps tiles ``(N, tile_h, tile_w, C)`` to ``(N, tile_h, tile_w, K)``
            (probabilities, logits, any per-pixel output); called with ``N <= batch_size``.
        multiple: the network's ``2**depth``: tiles, overlaps and starts are its multiples.
        tile: the tiles' height and width; None: the whole image in one piece.
        overlap: pixels shared by neighbouring tiles (at least).
        batch_size: tiles per call of ``predict_batch``.

    Returns:
        ``(H, W, K)``, in the dtype ``predict_batch`` returns.

    Raises:
        ValueError: for an image that is not ``(H, W, C)``, a bad ``tile``, ``overlap`` or
            ``batch_size``, or an output of ``predict_batch`` of the wrong shape.

    Example:
        >>> image = np.arange(20.0 * 30).reshape(20, 30, 1)
        >>> doubled = predict_tiled(image, lambda tiles: 2 * tiles, multiple=4, tile=8, overlap=4)
        >>> np.array_equal(doubled, 2 * image)
        True
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layout = TileLayout.plan(*image.shape[:2], tile=tile, overlap=overlap, multiple=multiple)
    padded = layout.pad(image)
    windows = list(layout.windows())
    output = None
    for first in range(0, len(windows), batch_size):
        batch = windows[first : first + batch_size]
        tiles = np.stack([padded[place] for place, _, _ in batch])
        predicted = np.asarray(predict_batch(tiles))
        if predicted.ndim != 4 or predicted.shape[:3] != tiles.shape[:3]:
            raise ValueError(
                f"predict_batch must map tiles {tiles.shape} to (N, H, W, K) with the tiles' "
                f"N, H and W, got {predicted.shape}"
            )
        if output is None:
            output = np.empty(image.shape[:2] + predicted.shape[-1:], dtype=predicted.dtype)
        for one, (_, taken, target) in zip(predicted, batch, strict=True):
            output[target] = one[taken]
    return output

"""companion.tiling: the layout of the tiles, and tiled predictions against untiled ones.

The reference is a real U-Net of companion.torch.models in float64, with its GroupNorm
layers taken out: GroupNorm normalises with statistics over its whole input, so no tiling
can reproduce the untiled output of the full U-Net (a test below shows the difference).
Without them the network is local: its output at a pixel depends on the input within the
radius unet_receptive_field_radius(depth), which the first test measures. Where a pixel is at
least that far from every inner border of the tile it is taken from, the tiled prediction
must equal the untiled one to float64 rounding (atol 1e-12 on outputs of order 1).
"""

import numpy as np
import pytest
import torch
from torch import nn

from companion.tiling import TileLayout, predict_tiled, unet_receptive_field_radius
from companion.torch.models import UNet

ATOL = 1e-12


def local_unet(depth: int, in_channels: int = 1, out_channels: int = 2, seed: int = 0) -> UNet:
    """A float64 U-Net of the package, with each GroupNorm replaced by the identity."""
    torch.manual_seed(seed)
    net = UNet(in_channels, out_channels, base_channels=4, depth=depth).double().eval()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(module, name, nn.Identity())
    return net


def channels_last(net: nn.Module):
    """``net`` as tiling's ``predict_batch``: ``(N, h, w, C)`` arrays in and out."""

    @torch.no_grad()
    def predict_batch(tiles: np.ndarray) -> np.ndarray:
        outputs = net(torch.from_numpy(tiles).permute(0, 3, 1, 2))
        return outputs.permute(0, 2, 3, 1).numpy()

    return predict_batch


def untiled(net: nn.Module, image: np.ndarray, multiple: int) -> np.ndarray:
    """The network on the whole image, padded by reflection at its bottom and right to the
    next multiple: what the tiles must reproduce, written without companion.tiling."""
    height, width = image.shape[:2]
    padded = np.pad(
        image, ((0, -height % multiple), (0, -width % multiple), (0, 0)), mode="reflect"
    )
    return channels_last(net)(padded[None])[0, :height, :width]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_receptive_field_radius_is_what_autograd_measures(depth):
    net = local_unet(depth, out_channels=4)
    radius = unet_receptive_field_radius(depth)
    size = 2 * radius + 4 * 2**depth
    size += -size % 2**depth
    reach = 0
    # The reach depends on the pixel's place in the pooling grid: try every place. A ReLU
    # that is off cuts a path, so each place gets the union over a few random images.
    for offset in range(2**depth):
        row, column = size // 2, size // 2 + offset
        touched = torch.zeros(size, dtype=torch.bool)
        for _ in range(4):
            image = torch.randn(1, 1, size, size, dtype=torch.float64, requires_grad=True)
            net(image)[0, :, row, column].sum().backward()
            touched |= (image.grad[0, 0] != 0).any(dim=0)
        columns = touched.nonzero().ravel()
        reach = max(reach, column - columns.min().item(), columns.max().item() - column)
    assert reach == radius


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "multiple"),
    [
        (1, 16, 0, 16),  # smaller than the multiple
        (5, 8, 4, 4),
        (32, 32, 8, 4),  # exactly one tile
        (33, 32, 8, 4),
        (100, 32, 8, 4),
        (100, 32, 0, 4),
        (150, 48, 24, 8),
        (500, 64, 16, 16),
        (70, None, 0, 4),
    ],
)
def test_the_tiles_partition_the_image_on_the_pooling_grid(length, tile, overlap, multiple):
    # A column of `length` pixels (the axes are planned alike and independently).
    layout = TileLayout.plan(length, 1, tile=tile, overlap=overlap, multiple=multiple)
    padded = layout.padded[0]
    assert padded % multiple == 0 and padded - multiple < length <= padded
    taken = np.zeros((length, 1), dtype=int)
    for place, part, target in layout.windows():
        for axis in (0, 1):
            assert place[axis].start % multiple == 0
            assert 0 <= place[axis].start < place[axis].stop <= layout.padded[axis]
            assert place[axis].stop - place[axis].start == layout.tile[axis]
            assert target[axis].start == place[axis].start + part[axis].start
            assert target[axis].stop == place[axis].start + part[axis].stop
        taken[target] += 1
    assert (taken == 1).all()  # every pixel from exactly one tile
    distance = layout.border_distance()[:, 0]
    if layout.tile[0] < padded:
        assert distance.min() >= overlap // 2
    else:
        assert len({place[0].start for place, _, _ in layout.windows()}) == 1
        assert (distance >= padded).all()


def test_a_pointwise_function_is_reproduced_everywhere_for_any_batch():
    image = np.random.default_rng(0).normal(size=(37, 51, 2))
    for batch_size in (1, 3, 100):
        result = predict_tiled(
            image,
            lambda tiles: np.concatenate([tiles, tiles**2], axis=-1),
            multiple=4,
            tile=12,
            overlap=4,
            batch_size=batch_size,
        )
        np.testing.assert_array_equal(result, np.concatenate([image, image**2], axis=-1))


@pytest.mark.parametrize(
    ("shape", "tile"),
    [((50, 70), 64), ((96, 96), 80), ((23, 130), 64)],
)
def test_an_overlap_of_twice_the_radius_reproduces_the_untiled_unet_everywhere(shape, tile):
    depth = 2
    net, multiple = local_unet(depth), 2**depth
    overlap = 2 * unet_receptive_field_radius(depth) + 2  # 48, the next multiple of 4 above 46
    image = np.random.default_rng(1).normal(size=(*shape, 1))
    layout = TileLayout.plan(*shape, tile=tile, overlap=overlap, multiple=multiple)
    assert layout.count > 1
    tiled = predict_tiled(
        image, channels_last(net), multiple=multiple, tile=tile, overlap=overlap, batch_size=3
    )
    np.testing.assert_allclose(tiled, untiled(net, image, multiple), rtol=0, atol=ATOL)


def test_a_small_overlap_reproduces_the_untiled_unet_only_away_from_tile_borders():
    depth = 2
    net, multiple, radius = local_unet(depth), 2**depth, unet_receptive_field_radius(depth)
    shape, tile, overlap = (250, 330), 96, 16
    image = np.random.default_rng(2).normal(size=(*shape, 1))
    tiled = predict_tiled(image, channels_last(net), multiple=multiple, tile=tile, overlap=overlap)
    reference = untiled(net, image, multiple)
    distance = TileLayout.plan(
        *shape, tile=tile, overlap=overlap, multiple=multiple
    ).border_distance()
    far = distance >= radius
    assert 0.5 < far.mean() < 0.7  # 57% of the pixels
    np.testing.assert_allclose(tiled[far], reference[far], rtol=0, atol=ATOL)
    # Not vacuous: nearer the borders, the tiles see less context and differ, by far more
    # than rounding (about 1e-5 of outputs of order 0.1 at 8 pixels from a border).
    difference = np.abs(tiled - reference).max(axis=-1)
    near = distance < overlap // 2 + 2
    assert near.any() and (difference[near] > 1e-9).mean() > 0.75  # 82%; 0 where ReLUs are off


def test_groupnorm_makes_the_tiled_unet_differ_from_the_untiled_one():
    # The scripts tile at the training size for this reason: the statistics of a tile are
    # those the network learned with; those of a whole large image are not.
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=4, depth=2).double().eval()
    image = np.random.default_rng(3).normal(size=(64, 64, 1))
    whole = untiled(net, image, 4)
    tiled = predict_tiled(image, channels_last(net), multiple=4, tile=32, overlap=8)
    assert (np.abs(tiled - whole) > 1e-6).mean() > 0.9
    # With one tile, the prediction is the network's own.
    np.testing.assert_allclose(
        predict_tiled(image, channels_last(net), multiple=4, tile=None), whole, rtol=0, atol=ATOL
    )


def test_images_smaller_than_the_multiple_are_padded_and_cropped_back():
    net = local_unet(2, in_channels=3, out_channels=3)
    image = np.random.default_rng(4).normal(size=(3, 2, 3))
    result = predict_tiled(image, channels_last(net), multiple=4, tile=8, overlap=4)
    assert result.shape == (3, 2, 3)
    np.testing.assert_allclose(result, untiled(net, image, 4), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("image_shape", "kwargs", "message"),
    [
        ((8, 8), {}, r"image must be \(H, W, C\), got shape \(8, 8\)"),
        ((8, 8, 1), {"tile": 6}, r"the tile \(6\) must be a multiple of 2\*\*depth = 4"),
        ((8, 8, 1), {"tile": 8, "overlap": 8}, r"the overlap \(8\) must be a multiple"),
        ((8, 8, 1), {"tile": 8, "overlap": 2}, r"the overlap \(2\) must be a multiple"),
        ((8, 8, 1), {"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ],
)
def test_bad_arguments_are_value_errors(image_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_tiled(np.zeros(image_shape), lambda tiles: tiles, multiple=4, **kwargs)


def test_an_output_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"to \(N, H, W, K\).* got \(1, 4, 4\)"):
        predict_tiled(np.zeros((8, 8, 1)), lambda tiles: tiles[:, ::2, ::2, 0], multiple=4)

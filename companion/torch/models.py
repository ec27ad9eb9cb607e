"""A U-Net for PyTorch, the twin of :func:`companion.keras.models.unet`.

Both frameworks build the same layers in the same order with the same parameter names (dots
here, underscores in Keras), so weights copy across and the outputs agree.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from companion._common import check_positive_int as _check_positive
from companion._common import group_count

__all__ = ["UNet", "group_count"]


class DoubleConv(nn.Module):
    """Two rounds of 3x3 convolution (no bias), GroupNorm and ReLU, keeping the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # No bias: GroupNorm subtracts each group's mean right after, which cancels it.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(group_count(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(group_count(out_channels), out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(x)))


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with GroupNorm, for inputs ``(N, in_channels, H, W)``.

    Architecture, with ``c = base_channels`` and ``D = depth``::

        encoders.i     DoubleConv to c * 2**i channels, then 2x2 max pooling   (i = 0 .. D-1)
        bottleneck     DoubleConv to c * 2**D channels, at 1 / 2**D of the input size
        upsamples.i    2x2 transposed convolution, stride 2, halving the channels
        decoders.i     concatenate [skip, upsampled], DoubleConv to c * 2**i channels
        head           1x1 convolution to out_channels: logits, no activation

    where ``DoubleConv`` is twice (3x3 convolution without bias, zero padding 1, GroupNorm,
    ReLU). ``H`` and ``W`` must be multiples of ``2**depth``; the output has the input's
    spatial size. Binary losses take ``out_channels=1``, multi-class losses ``n_classes``.

    Normalization: GroupNorm, with ``gcd(8, channels)`` groups (:func:`group_count`) and
    ``eps=1e-5``, normalizes each sample on its own. BatchNorm's batch statistics would
    make a network trained under DistributedDataParallel differ from one trained in one
    process on the same global batch (each process sees only its share of the batch, unless
    it is converted to SyncBatchNorm), and would couple samples in the small batches that
    large images force. With GroupNorm, training is the same computation however the batch
    is split, and evaluation is the same as training.

    Parameters: for ``DoubleConv(a, b)`` ``9 a b + 9 b**2 + 4 b`` (two convolutions and
    two GroupNorm scales and shifts), for each transposed convolution from ``2b`` to ``b``
    channels ``8 b**2 + b``, for the head ``c * out_channels + out_channels``. The defaults
    (``in_channels=1, out_channels=1, base_channels=16, depth=4``) have 1,942,289
    parameters, as :func:`companion.keras.models.unet` with the same arguments.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output logits.
        base_channels: channels of the first level; level ``i`` has ``base_channels * 2**i``.
        depth: number of 2x2 poolings (and of upsamplings), >= 1.

    Raises:
        ValueError: if an argument is not a positive integer; in ``forward``, if the input is
            not ``(N, in_channels, H, W)`` with ``H`` and ``W`` multiples of ``2**depth``.

    Example:
        >>> model = UNet()
        >>> sum(parameter.numel() for parameter in model.parameters())
        1942289
        >>> model(torch.zeros(2, 1, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16, depth: int = 4
    ) -> None:
        super().__init__()
        self.in_channels = _check_positive("in_channels", in_channels)
        self.out_channels = _check_positive("out_channels", out_channels)
        self.base_channels = _check_positive("base_channels", base_channels)
        self.depth = _check_positive("depth", depth)
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(
            DoubleConv(in_channels if level == 0 else widths[level - 1], widths[level])
            for level in range(depth)
        )
        self.bottleneck = DoubleConv(widths[depth - 1], widths[depth])
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
            for level in range(depth)
        )
        self.decoders = nn.ModuleList(
            DoubleConv(2 * widths[level], widths[level]) for level in range(depth)
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        multiple = 2**self.depth
        wrong_shape = x.ndim != 4 or x.shape[1] != self.in_channels
        if wrong_shape or x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"input must be (N, {self.in_channels}, H, W) with H and W multiples of "
                f"{multiple}, got {tuple(x.shape)}"
            )
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for level in reversed(range(self.depth)):
            x = self.upsamples[level](x)
            x = self.decoders[level](torch.cat([skips[level], x], dim=1))
        return self.head(x)

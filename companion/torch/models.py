"""A U-Net for PyTorch, the twin of :func:`companion.keras.models.unet`.

Both frameworks build the same layers in the same order with the same parameter names (dots
here, underscores in Keras), so weights copy across and the outputs agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from companion._common import check_positive_int as _check_positive
from companion._common import group_count

__all__ = ["UNet", "UNetEnsemble", "group_count"]


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
        return _encode_decode(self, x, lambda skip, up: torch.cat([skip, up], dim=1))


def _encode_decode(net: nn.Module, x: Tensor, join) -> Tensor:
    """The U-Net's pass through ``net``'s encoders, bottleneck, upsamplings, decoders and
    head; ``join(skip, upsampled)`` makes each decoder's input from the two."""
    skips = []
    for encoder in net.encoders:
        x = encoder(x)
        skips.append(x)
        x = nn.functional.max_pool2d(x, 2)
    x = net.bottleneck(x)
    for level in reversed(range(len(net.decoders))):
        x = net.decoders[level](join(skips[level], net.upsamples[level](x)))
    return net.head(x)


class _GroupedDoubleConv(nn.Module):
    """:class:`DoubleConv` for ``members`` networks side by side: grouped convolutions, and
    GroupNorm groups that never cross from one member's channels into another's."""

    def __init__(self, in_channels: int, out_channels: int, members: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            members * in_channels, members * out_channels, 3, padding=1, bias=False, groups=members
        )
        groups = members * group_count(out_channels)
        self.norm1 = nn.GroupNorm(groups, members * out_channels)
        self.conv2 = nn.Conv2d(
            members * out_channels,
            members * out_channels,
            3,
            padding=1,
            bias=False,
            groups=members,
        )
        self.norm2 = nn.GroupNorm(groups, members * out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(x)))


class UNetEnsemble(nn.Module):
    """Several independent :class:`UNet` of one architecture, trained as one module.

    Member ``m``'s weights sit in the ``m``-th block of every layer: each convolution is a
    grouped convolution with one group per member, and each GroupNorm's groups stay within one
    member's channels, so no member sees another's activations or gradients. The ensemble's
    output for member ``m`` is ``members[m](x[m])`` up to float rounding, and the gradient of
    ``sum_m loss_m`` with respect to member ``m``'s weights is that of ``loss_m`` alone. An
    optimizer that works element by element (SGD, Adam, AdamW) therefore trains each member
    as it would train the member alone. One module instead of a loop over models: the seeds of
    an experiment train in one pass, which the book uses to measure results over many seeds.

    Shape:
        - Input: ``(M, N, in_channels, H, W)``, a batch of ``N`` images for each of the ``M``
          members (different images per member allowed), ``H`` and ``W`` multiples of
          ``2**depth``.
        - Output: ``(M, N, out_channels, H, W)``, the logits of every member.

    Args:
        members: the U-Nets to start from, all with the same ``in_channels``,
            ``out_channels``, ``base_channels`` and ``depth``; their weights are copied.

    Raises:
        ValueError: if ``members`` is empty or its U-Nets differ in architecture; in
            ``forward``, if the input is not ``(M, N, in_channels, H, W)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> nets = [UNet(1, 1, base_channels=4, depth=1) for _ in range(3)]
        >>> ensemble = UNetEnsemble(nets)
        >>> x = torch.randn(3, 2, 1, 8, 8)
        >>> ensemble(x).shape
        torch.Size([3, 2, 1, 8, 8])
        >>> torch.allclose(ensemble(x)[1], nets[1](x[1]), atol=1e-5)
        True
        >>> torch.equal(ensemble.member(2).head.weight, nets[2].head.weight)
        True
    """

    def __init__(self, members: Sequence[UNet]) -> None:
        super().__init__()
        members = list(members)
        if not members or not all(isinstance(net, UNet) for net in members):
            raise ValueError("UNetEnsemble needs a non-empty sequence of UNet modules")
        shape = _architecture(members[0])
        if any(_architecture(net) != shape for net in members):
            raise ValueError(
                "the members of a UNetEnsemble must share one architecture (in_channels, "
                f"out_channels, base_channels, depth), got {[_architecture(n) for n in members]}"
            )
        self.in_channels, self.out_channels, self.base_channels, self.depth = shape
        self.members = count = len(members)
        widths = [self.base_channels * 2**level for level in range(self.depth + 1)]
        self.encoders = nn.ModuleList(
            _GroupedDoubleConv(self.in_channels if level == 0 else widths[level - 1], width, count)
            for level, width in enumerate(widths[:-1])
        )
        self.bottleneck = _GroupedDoubleConv(widths[-2], widths[-1], count)
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose2d(count * widths[level + 1], count * widths[level], 2, 2, groups=count)
            for level in range(self.depth)
        )
        self.decoders = nn.ModuleList(
            _GroupedDoubleConv(2 * widths[level], widths[level], count)
            for level in range(self.depth)
        )
        self.head = nn.Conv2d(count * widths[0], count * self.out_channels, 1, groups=count)
        # The members' device and dtype; member m's block of every tensor is rows
        # m * k .. (m + 1) * k of dimension 0, the layout of a grouped convolution's weight
        # (output channels first, or input channels for the transposed convolutions).
        self.to(members[0].head.weight.device, members[0].head.weight.dtype)
        with torch.no_grad():
            for name, tensor in self.state_dict(keep_vars=True).items():
                tensor.copy_(torch.cat([net.get_parameter(name) for net in members]))

    def forward(self, x: Tensor) -> Tensor:
        multiple = 2**self.depth
        if (
            x.ndim != 5
            or x.shape[0] != self.members
            or x.shape[2] != self.in_channels
            or x.shape[-2] % multiple
            or x.shape[-1] % multiple
        ):
            raise ValueError(
                f"input must be (members={self.members}, N, {self.in_channels}, H, W) with H "
                f"and W multiples of {multiple}, got {tuple(x.shape)}"
            )
        count, batch = self.members, x.shape[1]
        # (M, N, C, H, W) -> (N, M * C, H, W): member m's channels are block m.
        x = x.transpose(0, 1).reshape(batch, count * self.in_channels, *x.shape[-2:])
        x = _encode_decode(self, x, self._join)
        return x.reshape(batch, count, self.out_channels, *x.shape[-2:]).transpose(0, 1)

    def _join(self, skip: Tensor, upsampled: Tensor) -> Tensor:
        # Per member, the skip's channels and then the upsampled ones, as UNet's cat.
        batch, _, height, width = skip.shape
        return torch.cat(
            [
                skip.reshape(batch, self.members, -1, height, width),
                upsampled.reshape(batch, self.members, -1, height, width),
            ],
            dim=2,
        ).reshape(batch, -1, height, width)

    def member(self, index: int) -> UNet:
        """A :class:`UNet` holding member ``index``'s current weights (a copy)."""
        if not 0 <= index < self.members:
            raise ValueError(f"member index must be in 0 .. {self.members - 1}, got {index}")
        net = UNet(self.in_channels, self.out_channels, self.base_channels, self.depth)
        net.to(self.head.weight.device, self.head.weight.dtype)
        with torch.no_grad():
            for name, tensor in net.state_dict(keep_vars=True).items():
                block = self.get_parameter(name).shape[0] // self.members
                tensor.copy_(self.get_parameter(name)[index * block : (index + 1) * block])
        return net


def _architecture(net: UNet) -> tuple[int, int, int, int]:
    return net.in_channels, net.out_channels, net.base_channels, net.depth

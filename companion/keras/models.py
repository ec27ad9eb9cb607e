"""A U-Net for Keras 3 (any backend), the twin of :class:`companion.torch.models.UNet`.

Both frameworks build the same layers in the same order; each Keras layer is named after
the PyTorch parameter path with dots replaced by underscores (``encoders_0_conv1`` is
``encoders.0.conv1``), so weights copy across and the outputs agree. Channels are last here.
"""

from __future__ import annotations

import keras
from keras import layers

from companion._common import check_positive_int as _check_positive
from companion._common import group_count

__all__ = ["group_count", "unet"]


def _double_conv(x, channels: int, name: str):
    # Two rounds of 3x3 convolution (no bias: the normalization cancels it), GroupNorm, ReLU.
    for index in (1, 2):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(
            x
        )
        # epsilon as torch.nn.GroupNorm's, not Keras's default of 1e-3.
        x = layers.GroupNormalization(
            group_count(channels), epsilon=1e-5, name=f"{name}_norm{index}"
        )(x)
        x = layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def unet(input_shape, out_channels: int = 1, base_channels: int = 16, depth: int = 4):
    """U-Net (Ronneberger et al., 2015) with GroupNorm, for inputs ``(N, H, W, channels)``.

    Architecture, with ``c = base_channels`` and ``D = depth``::

        encoders_i     DoubleConv to c * 2**i channels, then 2x2 max pooling   (i = 0 .. D-1)
        bottleneck     DoubleConv to c * 2**D channels, at 1 / 2**D of the input size
        upsamples_i    2x2 transposed convolution, stride 2, halving the channels
        decoders_i     concatenate [skip, upsampled], DoubleConv to c * 2**i channels
        head           1x1 convolution to out_channels: logits, no activation

    where ``DoubleConv`` is twice (3x3 convolution without bias, "same" padding,
    GroupNormalization with ``gcd(8, channels)`` groups and ``epsilon=1e-5``, ReLU). GroupNorm
    normalizes each sample on its own, so training does not depend on how a batch is split
    across replicas (see :class:`companion.torch.models.UNet`). ``H`` and ``W`` must be
    multiples of ``2**depth`` (or ``None``). The logits leave through an
    ``Activation("linear")`` in the dtype policy's variable dtype, so under a
    mixed-precision policy they, and the loss, are float32.

    The parameter count is that of the PyTorch twin with the same arguments: the defaults
    (``input_shape=(H, W, 1), out_channels=1, base_channels=16, depth=4``) have 1,942,289.

    Args:
        input_shape: ``(H, W, channels)`` of one image; ``H`` and ``W`` may be ``None``.
        out_channels: channels of the output logits.
        base_channels: channels of the first level; level ``i`` has ``base_channels * 2**i``.
        depth: number of 2x2 poolings (and of upsamplings), >= 1.

    Returns:
        A functional ``keras.Model`` named ``"unet"`` mapping images to logits of shape
        ``(N, H, W, out_channels)``.

    Raises:
        ValueError: if ``input_shape`` is not ``(H, W, channels)``, ``H`` or ``W`` is not a
            multiple of ``2**depth``, or an argument is not a positive integer.

    Example:
        >>> model = unet((64, 64, 1))
        >>> model.count_params()
        1942289
        >>> tuple(model.output.shape)
        (None, 64, 64, 1)
    """
    out_channels = _check_positive("out_channels", out_channels)
    base_channels = _check_positive("base_channels", base_channels)
    depth = _check_positive("depth", depth)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, channels), got {input_shape}")
    multiple = 2**depth
    for extent in input_shape[:2]:
        if extent is not None and extent % multiple:
            raise ValueError(
                f"input_shape must have H and W multiples of {multiple} (2**depth), "
                f"got {input_shape}"
            )
    _check_positive("the channels of input_shape", input_shape[2])

    widths = [base_channels * 2**level for level in range(depth + 1)]
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _double_conv(x, widths[level], f"encoders_{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"encoders_{level}_pool")(x)
    x = _double_conv(x, widths[depth], "bottleneck")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(widths[level], 2, strides=2, name=f"upsamples_{level}")(x)
        x = layers.Concatenate(name=f"decoders_{level}_concat")([skips[level], x])
        x = _double_conv(x, widths[level], f"decoders_{level}")
    x = layers.Conv2D(out_channels, 1, name="head")(x)
    # Under a mixed policy, the logits leave in the policy's variable dtype (float32).
    variable_dtype = keras.config.dtype_policy().variable_dtype
    outputs = layers.Activation("linear", dtype=variable_dtype, name="logits")(x)
    return keras.Model(inputs, outputs, name="unet")

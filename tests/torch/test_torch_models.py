"""companion.torch.models.UNet: parameter count, shapes, logits, batch independence."""

import pytest
import torch

from companion.torch.models import UNet, group_count

CONFIGURATIONS = [
    # in_channels, out_channels, base_channels, depth
    (1, 1, 16, 4),
    (1, 3, 4, 2),
    (3, 2, 8, 3),
    (2, 5, 6, 1),
]


def expected_parameter_count(in_channels, out_channels, base_channels, depth):
    """Counted layer by layer from the architecture in the docstring."""
    widths = [base_channels * 2**level for level in range(depth + 1)]

    def double_conv(a, b):
        conv1, norm1 = 3 * 3 * a * b, 2 * b
        conv2, norm2 = 3 * 3 * b * b, 2 * b
        return conv1 + norm1 + conv2 + norm2

    encoders = sum(
        double_conv(in_channels if level == 0 else widths[level - 1], widths[level])
        for level in range(depth)
    )
    bottleneck = double_conv(widths[depth - 1], widths[depth])
    upsamples = sum(
        2 * 2 * widths[level + 1] * widths[level] + widths[level] for level in range(depth)
    )
    decoders = sum(double_conv(2 * widths[level], widths[level]) for level in range(depth))
    head = widths[0] * out_channels + out_channels
    return encoders + bottleneck + upsamples + decoders + head


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_parameter_count(configuration):
    model = UNet(*configuration)
    count = sum(parameter.numel() for parameter in model.parameters())
    assert count == expected_parameter_count(*configuration)


def test_default_parameter_count_is_the_documented_one():
    assert expected_parameter_count(1, 1, 16, 4) == 1_942_289
    assert "1,942,289" in UNet.__doc__


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_output_has_the_input_size_and_out_channels(configuration):
    in_channels, out_channels, _, depth = configuration
    model = UNet(*configuration)
    size = 2**depth * 3
    output = model(torch.randn(2, in_channels, size, 2 * size))
    assert output.shape == (2, out_channels, size, 2 * size)


def test_output_is_the_head_output_logits_without_activation():
    torch.manual_seed(0)
    model = UNet(1, 2, 4, 2)
    captured = {}
    model.head.register_forward_hook(lambda module, args, output: captured.update(head=output))
    output = model(3 * torch.randn(4, 1, 16, 16))
    assert output is captured["head"]
    # Logits: values outside [0, 1], of both signs.
    assert output.min() < 0 and output.max() > 1


@pytest.mark.parametrize("training", [True, False])
def test_samples_do_not_interact(training):
    # GroupNorm normalizes each sample alone: a sample's output does not depend on the rest of
    # the batch, which is why DDP and one process train the same network.
    torch.manual_seed(1)
    model = UNet(1, 1, 4, 2).double().train(training)
    batch = torch.randn(5, 1, 16, 16, dtype=torch.float64)
    together = model(batch)
    alone = torch.cat([model(sample[None]) for sample in batch])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-12)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(2)
    model = UNet(1, 3, 4, 2).double()
    batch = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    expected = model(batch)
    model = model.to(memory_format=torch.channels_last)
    output = model(batch.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)


def test_every_parameter_gets_a_gradient():
    # DistributedDataParallel needs every parameter to take part in the loss.
    torch.manual_seed(3)
    model = UNet(1, 2, 4, 2)
    model(torch.randn(2, 1, 8, 8)).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 1, 18, 16), r"multiples of 4, got \(2, 1, 18, 16\)"),
        ((2, 1, 16, 18), r"multiples of 4, got \(2, 1, 16, 18\)"),
        ((2, 3, 16, 16), r"\(N, 1, H, W\) with H and W multiples of 4, got \(2, 3, 16, 16\)"),
        ((1, 16, 16), r"got \(1, 16, 16\)"),
    ],
)
def test_forward_rejects_bad_input_shapes(shape, match):
    model = UNet(1, 1, 4, 2)
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 0}, "depth must be an integer >= 1, got 0"),
        ({"base_channels": 2.0}, "base_channels must be an integer >= 1, got 2.0"),
        ({"out_channels": True}, "out_channels must be an integer >= 1, got True"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_group_count_divides_the_channels():
    for channels in range(1, 70):
        groups = group_count(channels)
        assert channels % groups == 0 and 8 % groups == 0
    assert [group_count(channels) for channels in (16, 24, 6, 5)] == [8, 8, 2, 1]

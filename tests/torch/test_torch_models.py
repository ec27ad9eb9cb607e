"""companion.torch.models: UNet (parameter count, shapes, logits, batch independence) and
UNetEnsemble (members side by side equal the U-Nets alone)."""

import pytest
import torch

from companion.torch.models import UNet, UNetEnsemble, group_count

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


# -- UNetEnsemble: several U-Nets as one module --------------------------------------------


def seeded_unets(count, *configuration, dtype=torch.float64):
    nets = []
    for seed in range(count):
        torch.manual_seed(seed)
        nets.append(UNet(*configuration).to(dtype))
    return nets


@pytest.mark.parametrize("configuration", [(1, 1, 4, 1), (2, 3, 4, 2)])
def test_ensemble_output_is_each_members_output(configuration):
    nets = seeded_unets(3, *configuration)
    ensemble = UNetEnsemble(nets)
    in_channels, out_channels, _, depth = configuration
    x = torch.randn(3, 2, in_channels, 2**depth * 3, 2**depth * 2, dtype=torch.float64)
    output = ensemble(x)
    assert output.shape == (3, 2, out_channels, 2**depth * 3, 2**depth * 2)
    for index, net in enumerate(nets):
        torch.testing.assert_close(output[index], net(x[index]), rtol=1e-12, atol=1e-12)


def test_ensemble_gradient_of_the_summed_losses_is_each_members_gradient():
    nets = seeded_unets(3, 1, 1, 4, 2)
    ensemble = UNetEnsemble(nets)
    x = torch.randn(3, 2, 1, 8, 8, dtype=torch.float64)
    target = (torch.rand(3, 2, 1, 8, 8) < 0.2).double()
    logits = ensemble(x)
    sum(
        torch.nn.functional.binary_cross_entropy_with_logits(logits[m], target[m]) for m in range(3)
    ).backward()
    for index, net in enumerate(nets):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[index]), target[index])
        for name, gradient in zip(
            dict(net.named_parameters()),
            torch.autograd.grad(loss, list(net.parameters())),
            strict=True,
        ):
            block = ensemble.get_parameter(name).grad.shape[0] // 3
            member_gradient = ensemble.get_parameter(name).grad[index * block : (index + 1) * block]
            torch.testing.assert_close(member_gradient, gradient, rtol=1e-10, atol=1e-12, msg=name)


def test_ensemble_trained_with_adam_follows_each_member_trained_alone():
    nets = seeded_unets(2, 1, 1, 4, 1)
    ensemble = UNetEnsemble(nets)
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=0.01)
    alone = [torch.optim.Adam(net.parameters(), lr=0.01) for net in nets]
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(2, 4, 1, 8, 8, dtype=torch.float64, generator=generator)
        target = (torch.rand(2, 4, 1, 8, 8, generator=generator) < 0.1).double()
        logits = ensemble(x)
        loss = sum(
            torch.nn.functional.binary_cross_entropy_with_logits(logits[m], target[m])
            for m in range(2)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for index, (net, net_optimizer) in enumerate(zip(nets, alone, strict=True)):
            net_optimizer.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(
                net(x[index]), target[index]
            ).backward()
            net_optimizer.step()
    for index, net in enumerate(nets):
        trained = ensemble.member(index)
        for name, tensor in net.state_dict().items():
            torch.testing.assert_close(trained.state_dict()[name], tensor, rtol=1e-9, atol=1e-11)


def test_ensemble_member_is_a_copy_with_the_members_weights():
    nets = seeded_unets(3, 1, 2, 4, 2, dtype=torch.float32)
    ensemble = UNetEnsemble(nets)
    copy = ensemble.member(1)
    for name, tensor in nets[1].state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor), name
    with torch.no_grad():
        copy.head.bias.fill_(7.0)
    assert not torch.equal(ensemble.member(1).head.bias, copy.head.bias)
    with pytest.raises(ValueError, match=r"member index must be in 0 \.\. 2, got 3"):
        ensemble.member(3)


def test_ensemble_refuses_bad_members_and_bad_input():
    with pytest.raises(ValueError, match="non-empty sequence of UNet"):
        UNetEnsemble([])
    with pytest.raises(ValueError, match="share one architecture"):
        UNetEnsemble([UNet(1, 1, 4, 1), UNet(1, 1, 4, 2)])
    ensemble = UNetEnsemble([UNet(1, 1, 4, 1), UNet(1, 1, 4, 1)])
    message = r"input must be \(members=2, N, 1, H, W\).*\(3, 1, 1, 8, 8\)"
    with pytest.raises(ValueError, match=message):
        ensemble(torch.zeros(3, 1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"multiples of 2"):
        ensemble(torch.zeros(2, 1, 1, 8, 7))

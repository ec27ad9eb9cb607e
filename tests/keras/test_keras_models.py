"""companion.keras.models.unet: the same network as companion.torch.models.UNet."""

import keras
import numpy as np
import pytest
import torch

from companion.keras.models import unet
from companion.torch.models import UNet

CONFIGURATIONS = [
    # in_channels, out_channels, base_channels, depth
    (1, 1, 16, 4),
    (1, 3, 4, 2),
    (3, 2, 8, 3),
    (2, 5, 6, 1),
]


@pytest.fixture
def float64():
    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous_floatx)
    keras.config.set_dtype_policy(previous_policy)


@pytest.fixture
def mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def copy_torch_weights(torch_model: UNet, keras_model: keras.Model) -> None:
    """Each torch module's parameters into the Keras layer of the same (underscored) name."""
    for name, module in torch_model.named_modules():
        if not list(module.parameters(recurse=False)):
            continue
        weight = module.weight.detach().numpy()
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            # torch (out, in, kh, kw) to Keras (kh, kw, in, out); for the transposed
            # convolution, torch (in, out, kh, kw) to Keras (kh, kw, out, in).
            weight = weight.transpose(2, 3, 1, 0)
        values = [weight] if module.bias is None else [weight, module.bias.detach().numpy()]
        keras_model.get_layer(name.replace(".", "_")).set_weights(values)


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_parameter_count_equals_the_torch_twin(configuration):
    in_channels, out_channels, base_channels, depth = configuration
    size = 2**depth
    model = unet((size, size, in_channels), out_channels, base_channels, depth)
    torch_model = UNet(*configuration)
    assert model.count_params() == sum(parameter.numel() for parameter in torch_model.parameters())


def test_default_parameter_count_is_the_documented_one():
    assert unet((64, 64, 1)).count_params() == 1_942_289
    assert "1,942,289" in unet.__doc__


@pytest.mark.parametrize("configuration", CONFIGURATIONS[1:])
def test_same_weights_give_the_same_logits_as_torch(configuration, float64):
    in_channels, out_channels, base_channels, depth = configuration
    size = 2**depth * 2
    torch.manual_seed(0)
    torch_model = UNet(*configuration).double()
    keras_model = unet((size, size, in_channels), out_channels, base_channels, depth)
    copy_torch_weights(torch_model, keras_model)
    # Every Keras weight came from torch: the layer names cover the whole model.
    copied = sum(parameter.numel() for parameter in torch_model.parameters())
    assert copied == keras_model.count_params()

    images = np.random.default_rng(1).normal(size=(3, size, size, in_channels))
    expected = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).detach().numpy()
    logits = keras.ops.convert_to_numpy(keras_model(images))
    # On the torch backend, Keras computes float64 GroupNormalization in float32
    # (keras.src.backend.result_type maps float64 to float32 there: keras-team/keras#23704).
    tolerance = 2e-6 if keras.backend.backend() == "torch" else 1e-10
    np.testing.assert_allclose(
        logits, expected.transpose(0, 2, 3, 1), rtol=tolerance, atol=tolerance
    )


def test_unknown_spatial_size_and_logits_out():
    model = unet((None, None, 2), out_channels=3, base_channels=4, depth=2)
    images = np.random.default_rng(0).normal(size=(2, 8, 12, 2)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(images))
    assert logits.shape == (2, 8, 12, 3)
    assert model.layers[-1].name == "logits"
    assert model.layers[-1].get_config()["activation"] == "linear"


def test_logits_are_float32_under_mixed_precision(mixed_bfloat16):
    model = unet((16, 16, 1), base_channels=4, depth=2)
    assert model.get_layer("encoders_0_conv1").compute_dtype == "bfloat16"
    logits = model(np.zeros((1, 16, 16, 1), dtype="float32"))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": (18, 16, 1)}, r"multiples of 4 \(2\*\*depth\), got \(18, 16, 1\)"),
        ({"input_shape": (16, 16)}, r"input_shape must be \(H, W, channels\), got \(16, 16\)"),
        ({"input_shape": (16, 16, 0)}, "the channels of input_shape must be an integer >= 1"),
        ({"input_shape": (16, 16, 1), "out_channels": 0}, "out_channels must be an integer >= 1"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        unet(**{"base_channels": 4, "depth": 2, **kwargs})

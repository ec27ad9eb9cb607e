"""Time companion.torch.huber_loss against torch.nn.functional.huber_loss, forward + backward.

The package promises that its Huber loss is no more than 10% slower than PyTorch's own on a
16x1x512x512 float32 batch. This script measures it: each repetition times one forward and
one backward pass of each contender, in alternating order, and the medians are compared.

    python benchmarks/huber_torch.py                  # CPU or CUDA, whichever is there
    python benchmarks/huber_torch.py --device cpu --repeats 50

Besides the unweighted loss (which the package hands to F.huber_loss), it times the weighted
path, and, for reference, the same loss written as a composition of element-wise operations,
the plain implementation that the dispatch avoids.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _timing import add_timing_options, alternating_times, check_timing_options, pick_device

from companion.torch import huber_loss


@dataclasses.dataclass
class Config:
    repeats: int = 30  # timed repetitions per contender; the median is reported
    warmup: int = 3  # untimed repetitions first (allocator, thread pool, CUDA kernels)
    device: str = "auto"  # "auto" (CUDA if available, else CPU), "cpu" or "cuda"
    shape: str = "16,1,512,512"  # the batch shape, comma-separated
    delta: float = 1.0  # the Huber threshold
    seed: int = 0  # seed of the random input, target and weight


def parse_args() -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_timing_options(parser, defaults.repeats, defaults.warmup, defaults.device)
    parser.add_argument("--shape", default=defaults.shape, help="batch shape, e.g. 16,1,512,512")
    parser.add_argument("--delta", type=float, default=defaults.delta, help="Huber threshold")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    config = Config(**vars(parser.parse_args()))
    check_timing_options(parser, config)
    return config


def composed_huber_loss(input, target, delta=1.0, weight=None, reduction="mean"):
    # The loss as element-wise operations, 0.5 q**2 + delta (|r| - q) with q = min(|r|, delta):
    # what a plain implementation costs when it does not call F.huber_loss.
    abs_residual = (input - target).abs()
    quadratic = abs_residual.clamp(max=delta)
    elementwise = 0.5 * quadratic**2 + delta * (abs_residual - quadratic)
    if weight is not None:
        elementwise = elementwise * weight
    return elementwise.mean()


def median_times(contenders: dict, input, target, weight, config, device) -> dict[str, float]:
    kwargs = (
        {"delta": config.delta} if weight is None else {"delta": config.delta, "weight": weight}
    )

    def forward_backward(loss_fn: Callable) -> Callable[[], None]:
        def call() -> None:
            input.grad = None
            loss_fn(input, target, **kwargs).backward()

        return call

    calls = {name: forward_backward(loss_fn) for name, loss_fn in contenders.items()}
    times = alternating_times(calls, config.repeats, config.warmup, device)
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    print(f"  {'':32s} {'median ms':>10s} {'ratio':>7s}")
    for name, seconds in medians.items():
        ratio = seconds / medians[baseline]
        print(f"  {name:32s} {1e3 * seconds:10.3f} {ratio:7.3f}")


def main() -> None:
    config = parse_args()
    device = pick_device(config.device)
    shape = tuple(int(size) for size in config.shape.split(","))
    generator = torch.Generator().manual_seed(config.seed)
    input = torch.randn(shape, generator=generator).to(device).requires_grad_()
    target = torch.randn(shape, generator=generator).to(device)
    weight = torch.rand(shape, generator=generator).to(device)

    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(
        f"torch {torch.__version__}, device {device}{threads}, input {shape} float32, "
        f"delta {config.delta}, forward + backward, median of {config.repeats} repeats"
    )

    unweighted = {
        "F.huber_loss": F.huber_loss,
        "companion.torch.huber_loss": huber_loss,
        "composed element-wise formula": composed_huber_loss,
    }
    report(
        "weight=None", median_times(unweighted, input, target, None, config, device), "F.huber_loss"
    )

    weighted = {
        "companion.torch.huber_loss": huber_loss,
        "composed element-wise formula": composed_huber_loss,
    }
    baseline = "companion.torch.huber_loss"
    try:
        F.huber_loss(input[:1], target[:1], weight=weight[:1])
    except TypeError:
        pass  # older PyTorch: F.huber_loss takes no weight
    else:
        weighted = {"F.huber_loss(weight=)": F.huber_loss, **weighted}
        baseline = "F.huber_loss(weight=)"
    report(
        "element-wise weight",
        median_times(weighted, input, target, weight, config, device),
        baseline,
    )


if __name__ == "__main__":
    main()

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
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

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
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed repetitions")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=defaults.device,
        help="auto: CUDA if available, else CPU",
    )
    parser.add_argument("--shape", default=defaults.shape, help="batch shape, e.g. 16,1,512,512")
    parser.add_argument("--delta", type=float, default=defaults.delta, help="Huber threshold")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    config = Config(**vars(parser.parse_args()))
    if config.repeats < 1 or config.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if config.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
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


def time_forward_backward(loss_fn: Callable, input, target, weight, delta, device) -> float:
    input.grad = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    kwargs = {"delta": delta} if weight is None else {"delta": delta, "weight": weight}
    loss_fn(input, target, **kwargs).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_times(contenders: dict, input, target, weight, config, device) -> dict[str, float]:
    times = {name: [] for name in contenders}
    names = list(contenders)
    for repetition in range(config.warmup + config.repeats):
        # Alternate the order so that neither contender always runs on a warm cache.
        for name in names if repetition % 2 == 0 else names[::-1]:
            seconds = time_forward_backward(
                contenders[name], input, target, weight, config.delta, device
            )
            if repetition >= config.warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    print(f"  {'':32s} {'median ms':>10s} {'ratio':>7s}")
    for name, seconds in medians.items():
        ratio = seconds / medians[baseline]
        print(f"  {name:32s} {1e3 * seconds:10.3f} {ratio:7.3f}")


def main() -> None:
    config = parse_args()
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
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

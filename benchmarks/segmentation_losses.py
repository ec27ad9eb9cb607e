"""Time companion.torch's segmentation losses, forward + backward, against the alternatives.

Every contender computes one loss from the same logits and targets and back-propagates it;
each repetition runs all contenders of a group in alternating order, and the medians are
compared with:

- the closest built-in (``F.binary_cross_entropy_with_logits``, ``F.cross_entropy``) or the
  plain PyTorch expression that autograd differentiates;
- MONAI's ``DiceLoss``, ``FocalLoss`` and ``TverskyLoss`` (the ``bench`` extra; skipped with a
  message if MONAI is not installed);
- for ``cost_sensitive_cross_entropy``, the double Python loop over (true, predicted) class
  pairs of the widely copied Keras answer, rewritten in PyTorch;
- a streaming floor measured in the same run: ``torch.add(a, b, out=c)`` on tensors of the
  input's size, the time to read two inputs and write one tensor once.

Peak memory is the most memory the allocator held during one forward + backward beyond what
it held before: on CPU replayed from the profiler's record of every allocation and release
(``tracemalloc`` cannot see PyTorch's allocations), on CUDA ``max_memory_allocated``. It
counts the gradient of the input (one input-sized tensor), the tensors autograd keeps for
the backward and the transient ones; "x input" divides it by the size of the logits.

    python benchmarks/segmentation_losses.py                 # about 25 s on 2 cores
    python benchmarks/segmentation_losses.py --repeats 50 --no-compile
    python benchmarks/segmentation_losses.py --quick         # small shapes, a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _plain_losses import (
    keras_answer_loop,
    one_hot,
    plain_dice,
    plain_dice_bce,
    plain_focal,
    plain_tversky,
    plain_weighted_cross_entropy,
)
from _timing import (
    add_timing_options,
    alternating_times,
    check_timing_options,
    pick_device,
    synchronize,
)
from torch.profiler import ProfilerActivity, profile

from companion.torch import (
    cost_sensitive_cross_entropy,
    dice_bce_loss,
    dice_loss,
    focal_loss,
    tversky_loss,
    weighted_bce_loss,
    weighted_cross_entropy,
)


@dataclasses.dataclass
class Config:
    # Timed repetitions per contender; the median is reported. Each round takes about 0.2 s on
    # two cores, and on a shared machine medians of 7 moved the ratios by 10 % between runs.
    repeats: int = 25
    warmup: int = 3  # untimed repetitions first (allocator, thread pool, CUDA kernels)
    device: str = "auto"  # "auto" (CUDA if available, else CPU), "cpu" or "cuda"
    binary_shape: str = "16,1,512,512"  # logits of the binary losses, N,C,H,W
    class_shape: str = "4,10,256,256"  # logits of the multi-class losses, N,C,H,W
    positive_fraction: float = 0.05  # share of positive pixels in the binary targets
    compile: bool = True  # also time the compile=True paths, compilation reported apart
    monai: bool = True  # also time MONAI's losses, if MONAI is installed
    memory: bool = True  # also measure peak memory (Linux or CUDA)
    quick: bool = False  # small shapes and few repeats: a smoke test, not a measurement
    threads: int = 0  # torch.set_num_threads on CPU; 0 keeps PyTorch's default
    seed: int = 0  # seed of the random logits, targets and weights


def parse_args(argv=None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_timing_options(parser, defaults.repeats, defaults.warmup, defaults.device)
    parser.add_argument("--binary-shape", default=defaults.binary_shape, help="N,C,H,W")
    parser.add_argument("--class-shape", default=defaults.class_shape, help="N,C,H,W")
    parser.add_argument(
        "--positive-fraction",
        type=float,
        default=defaults.positive_fraction,
        help="share of positive pixels in the binary targets",
    )
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip the compile=True contenders (each first call compiles: 5-30 s on 2 cores)",
    )
    parser.add_argument("--no-monai", dest="monai", action="store_false", help="skip MONAI")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak memory")
    parser.add_argument(
        "--quick", action="store_true", help="small shapes, 2 repeats: checks that it runs"
    )
    parser.add_argument(
        "--threads", type=int, default=defaults.threads, help="CPU threads; 0: PyTorch's default"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    config = Config(**vars(parser.parse_args(argv)))
    if config.quick:
        config = dataclasses.replace(
            config, repeats=2, warmup=1, binary_shape="2,1,64,64", class_shape="2,10,32,32"
        )
    check_timing_options(parser, config)
    if config.threads < 0:
        parser.error("--threads must be >= 0")
    if not 0.0 < config.positive_fraction < 1.0:
        parser.error("--positive-fraction must be in (0, 1)")
    return config


# ----------------------------------------------------------------------------- measurement


@contextlib.contextmanager
def silenced_stderr():
    """The profiler's C++ side logs two lines per session to file descriptor 2: drop them."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class PeakMemory:
    """Peak memory of one call: the allocator's view, on CPU from the profiler's timeline.

    On CPU, ``torch.profiler`` (``profile_memory=True``) records every tensor allocation and
    release; replaying them gives the peak of the memory allocated during the call, over what
    was allocated before it. On CUDA it is ``torch.cuda.max_memory_allocated``. The replay is
    a private PyTorch API (``_memory_profile``, behind ``export_memory_timeline``); where it
    is missing, memory is not reported.
    """

    def __init__(self, device: torch.device, wanted: bool) -> None:
        self.device = device
        self.reason = None if wanted else "not measured (--no-memory)"
        if wanted and device.type != "cuda" and not hasattr(profile, "_memory_profile"):
            self.reason = "not measured (this PyTorch's profiler has no _memory_profile)"
        self.available = self.reason is None

    def measure(self, call: Callable[[], None]) -> float | None:
        """Bytes by which the peak during ``call`` exceeds the memory allocated before it."""
        if not self.available:
            return None
        call()  # once unmeasured: lazily created state (compiled kernels, caches)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            call()
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - before)
        with (
            silenced_stderr(),
            profile(
                activities=[ProfilerActivity.CPU],
                profile_memory=True,
                record_shapes=True,
                with_stack=True,
            ) as profiler,
        ):
            call()
        allocated = peak = 0
        for _, action, _, size in profiler._memory_profile().timeline:
            if action.name == "CREATE":
                allocated += size
            elif action.name == "DESTROY":
                allocated -= size
            peak = max(peak, allocated)
        return float(peak)


def forward_backward(loss_fn: Callable, input: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        loss_fn().backward()
        input.grad = None  # freed here, so that memory measured before a call excludes it

    return call


def report(title, contenders, times, baseline, peaks, input_bytes, notes=()) -> dict:
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians["streaming floor"]
    print(f"\n{title}")
    print(
        f"  {'':44s} {'median ms':>9s} {'min ms':>8s} {'x floor':>8s} {'x ' + baseline[:12]:>14s}"
        f" {'peak MiB':>9s} {'x input':>8s}"
    )
    for name in contenders:
        peak = peaks.get(name)
        peak_text = "" if peak is None else f"{peak / 2**20:9.1f} {peak / input_bytes:8.2f}"
        print(
            f"  {name:44s} {1e3 * medians[name]:9.2f} {1e3 * min(times[name]):8.2f}"
            f" {medians[name] / floor:8.2f} {medians[name] / medians[baseline]:14.2f} {peak_text}"
        )
    for note in notes:
        print(f"  {note}")
    return {"median": medians, "min": {name: min(values) for name, values in times.items()}}


def compiled_contender(name, compiled_loss, eager_loss, input, device):
    """A ``compile=True`` contender, its first call (the compilation) timed and reported.

    Returns the contender (``{name: compiled_loss}``) and the note that reports the compile
    time, after checking that the compiled loss equals the eager one.
    """
    synchronize(device)
    start = time.perf_counter()
    forward_backward(compiled_loss, input)()  # compiles the forward and the backward
    synchronize(device)
    seconds = time.perf_counter() - start
    torch.testing.assert_close(compiled_loss(), eager_loss(), rtol=1e-5, atol=1e-6)
    note = (
        f"compile=True: first call (compiling forward and backward) {seconds:.1f} s; a later "
        "process reuses the inductor cache on disk and compiles faster"
    )
    return {name: compiled_loss}, [note]


def load_monai():
    try:
        import monai.losses
    except ImportError as error:
        return None, f"MONAI rows skipped: {error} (pip install -e '.[bench]' or make bench)"
    return monai.losses, None


# ----------------------------------------------------------------------------------- groups


def collect_groups(groups, make_call, floor_call, input_bytes, pending) -> None:
    """Each group's contenders, forward + backward, next to the streaming floor."""
    for title, losses, baseline, notes in groups:
        contenders = {"streaming floor": floor_call}
        contenders.update({name: make_call(loss_fn) for name, loss_fn in losses.items()})
        title = f"{title}, {input_bytes / 2**20:.0f} MiB of logits"
        pending.append((title, contenders, baseline, input_bytes, notes))


def streaming_floor(shape, generator, device):
    first = torch.randn(shape, generator=generator).to(device)
    second, out = torch.randn(shape, generator=generator).to(device), torch.empty_like(first)
    return lambda: torch.add(first, second, out=out)


def binary_groups(config, device, generator, monai_losses, pending) -> None:
    shape = tuple(int(size) for size in config.binary_shape.split(","))
    input = (2 * torch.randn(shape, generator=generator) - 3).to(device).requires_grad_()
    target = (torch.rand(shape, generator=generator) < config.positive_fraction).float()
    target = target.to(device)
    weight = (1 + 4 * torch.rand(shape, generator=generator)).to(device)
    pos_weight = torch.tensor(10.0, device=device)
    input_bytes = input.numel() * input.element_size()
    print(
        f"\nbinary: logits {shape} float32, {100 * config.positive_fraction:g}% positive "
        f"pixels, input {input_bytes / 2**20:.0f} MiB"
    )

    dice_notes = []
    dice_extra = {}
    if config.compile:
        dice_extra, dice_notes = compiled_contender(
            "companion dice_loss(compile=True)",
            lambda: dice_loss(input, target, compile=True),
            lambda: dice_loss(input, target),
            input,
            device,
        )
    monai = {"dice": {}, "focal": {}, "tversky": {}}
    if monai_losses is not None:
        monai_dice = monai_losses.DiceLoss(sigmoid=True)
        monai_focal = monai_losses.FocalLoss(gamma=2.0, alpha=0.25, use_softmax=False)
        monai_tversky = monai_losses.TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7)
        monai["dice"] = {"MONAI DiceLoss(sigmoid=True)": lambda: monai_dice(input, target)}
        monai["focal"] = {"MONAI FocalLoss(use_softmax=False)": lambda: monai_focal(input, target)}
        monai["tversky"] = {"MONAI TverskyLoss(sigmoid=True)": lambda: monai_tversky(input, target)}

    plain = "plain PyTorch expression"
    groups = [
        (
            "weighted_bce_loss (pos_weight and weight map)",
            {
                "companion weighted_bce_loss": lambda: weighted_bce_loss(
                    input, target, pos_weight=pos_weight, weight=weight
                ),
                "F.binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(
                    input, target, weight=weight, pos_weight=pos_weight
                ),
            },
            "F.binary_cross_entropy_with_logits",
            (),
        ),
        (
            "dice_loss (per sample, mean)",
            {
                "companion dice_loss": lambda: dice_loss(input, target),
                **dice_extra,
                plain: lambda: plain_dice(input, target),
                **monai["dice"],
            },
            plain,
            dice_notes,
        ),
        (
            "dice_bce_loss",
            {
                "companion dice_bce_loss": lambda: dice_bce_loss(input, target),
                plain: lambda: plain_dice_bce(input, target),
            },
            plain,
            (),
        ),
        (
            "focal_loss (gamma 2, alpha 0.25)",
            {
                "companion focal_loss": lambda: focal_loss(input, target, alpha=0.25),
                plain + " (torchvision's)": lambda: plain_focal(input, target),
                **monai["focal"],
            },
            plain + " (torchvision's)",
            (),
        ),
        (
            "tversky_loss (alpha 0.3, beta 0.7)",
            {
                "companion tversky_loss": lambda: tversky_loss(input, target, alpha=0.3, beta=0.7),
                plain: lambda: plain_tversky(input, target),
                **monai["tversky"],
            },
            plain,
            (),
        ),
    ]
    collect_groups(
        groups,
        lambda loss_fn: forward_backward(loss_fn, input),
        streaming_floor(shape, generator, device),
        input_bytes,
        pending,
    )


def class_groups(config, device, generator, pending) -> str:
    shape = tuple(int(size) for size in config.class_shape.split(","))
    n_classes = shape[1]
    logits = torch.randn(shape, generator=generator).to(device).requires_grad_()
    classes = torch.randint(0, n_classes, shape[:1] + shape[2:], generator=generator).to(device)
    one_hot_classes = one_hot(classes, n_classes)
    class_weights = torch.linspace(0.5, 5.0, n_classes, device=device)
    weight_map = (1 + 9 * torch.rand(classes.shape, generator=generator)).to(device)
    cost_matrix = (1 + torch.rand(n_classes, n_classes, generator=generator)).to(device)
    cost_matrix.fill_diagonal_(0.0)
    input_bytes = logits.numel() * logits.element_size()
    torch.testing.assert_close(
        cost_sensitive_cross_entropy(logits, classes, cost_matrix),
        keras_answer_loop(logits, one_hot_classes, cost_matrix),
        rtol=1e-5,
        atol=1e-6,
    )
    print(f"\nmulti-class: logits {shape} float32, input {input_bytes / 2**20:.0f} MiB")
    loop = f"Keras answer's {n_classes}x{n_classes} loop (PyTorch)"
    cost_extra, cost_notes = {}, []
    if config.compile:
        cost_extra, cost_notes = compiled_contender(
            "companion cost_sensitive_cross_entropy(compile=True)",
            lambda: cost_sensitive_cross_entropy(logits, classes, cost_matrix, compile=True),
            lambda: cost_sensitive_cross_entropy(logits, classes, cost_matrix),
            logits,
            device,
        )
    groups = [
        (
            "weighted_cross_entropy (class weights and weight map)",
            {
                "companion weighted_cross_entropy": lambda: weighted_cross_entropy(
                    logits, classes, class_weights=class_weights, weight_map=weight_map
                ),
                "plain PyTorch expression": lambda: plain_weighted_cross_entropy(
                    logits, classes, class_weights, weight_map
                ),
                "F.cross_entropy(weight=), no map": lambda: F.cross_entropy(
                    logits, classes, weight=class_weights
                ),
            },
            "plain PyTorch expression",
            (),
        ),
        (
            f"cost_sensitive_cross_entropy (C = {n_classes})",
            {
                "companion cost_sensitive_cross_entropy": lambda: cost_sensitive_cross_entropy(
                    logits, classes, cost_matrix
                ),
                **cost_extra,
                loop: lambda: keras_answer_loop(logits, one_hot_classes, cost_matrix),
                "F.cross_entropy, no costs": lambda: F.cross_entropy(logits, classes),
            },
            loop,
            ["the loop is given one-hot targets built outside the timing", *cost_notes],
        ),
    ]
    collect_groups(
        groups,
        lambda loss_fn: forward_backward(loss_fn, logits),
        streaming_floor(shape, generator, device),
        input_bytes,
        pending,
    )
    return loop


def check_targets(results, loop: str, config: Config) -> None:
    """The targets set for these losses, met or missed, from this run's medians and minima."""
    dice_title = next(key for key in results if key.startswith("dice_loss"))
    cost_title = next(key for key in results if key.startswith("cost_sensitive"))
    print("\ntargets: ratio of medians (ratio of minima) <= target")
    checks = [
        (
            "dice_loss within 6x the streaming floor",
            dice_title,
            "companion dice_loss",
            "streaming floor",
            6,
        ),
        (
            "dice_loss at least as fast as MONAI DiceLoss",
            dice_title,
            "companion dice_loss",
            "MONAI DiceLoss(sigmoid=True)",
            1,
        ),
        (
            "dice_loss(compile=True) within 3x the streaming floor",
            dice_title,
            "companion dice_loss(compile=True)",
            "streaming floor",
            3,
        ),
        (
            "cost_sensitive_cross_entropy at least 4x faster than the loop",
            cost_title,
            "companion cost_sensitive_cross_entropy",
            loop,
            1 / 4,
        ),
        (
            "cost_sensitive_cross_entropy(compile=True) at least 4x faster than the loop",
            cost_title,
            "companion cost_sensitive_cross_entropy(compile=True)",
            loop,
            1 / 4,
        ),
    ]
    for text, title, name, reference, target in checks:
        medians, minima = results[title]["median"], results[title]["min"]
        if name not in medians or reference not in medians:
            print(f"  skipped {text}: not measured in this run")
            continue
        by_median, by_min = medians[name] / medians[reference], minima[name] / minima[reference]
        verdict = "met    " if by_median <= target else "MISSED "
        print(f"  {verdict}{text}: {by_median:.2f} ({by_min:.2f}) <= {target:g}")
    if config.quick:
        print("  (--quick: small shapes, so these say little)")


# ------------------------------------------------------------------------------------- main


def main(argv=None) -> None:
    config = parse_args(argv)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    memory = PeakMemory(device, config.memory)
    generator = torch.Generator().manual_seed(config.seed)

    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(
        f"torch {torch.__version__}, Python {sys.version.split()[0]}, device {device}{threads}; "
        f"forward + backward, median of {config.repeats} repeats after {config.warmup} warm-up"
    )
    monai_losses, monai_message = load_monai() if config.monai else (None, "MONAI: --no-monai")
    if monai_losses is not None:
        import monai

        print(f"MONAI {monai.__version__}")
    if monai_message:
        print(monai_message)

    pending = []
    binary_groups(config, device, generator, monai_losses, pending)
    loop = class_groups(config, device, generator, pending)
    if not memory.available:
        print(f"peak memory: {memory.reason}")
    peaks = [
        {
            name: memory.measure(call)
            for name, call in contenders.items()
            if name != "streaming floor"
        }
        for _, contenders, _, _, _ in pending
    ]
    results = {}
    for (title, contenders, baseline, input_bytes, notes), group_peaks in zip(
        pending, peaks, strict=True
    ):
        times = alternating_times(contenders, config.repeats, config.warmup, device)
        results[title] = report(title, contenders, times, baseline, group_peaks, input_bytes, notes)
    check_targets(results, loop, config)


if __name__ == "__main__":
    main()

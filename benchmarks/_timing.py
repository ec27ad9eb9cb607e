"""What the benchmark scripts share: their timing options, the device, and the timing loop.

A helper module, not a benchmark (``make bench`` skips files whose name starts with ``_``);
the scripts import it from their own folder.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def add_timing_options(parser: argparse.ArgumentParser, repeats: int, warmup: int, device: str):
    """``--repeats``, ``--warmup`` and ``--device``, with the script's defaults."""
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed repetitions")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=device,
        help="auto: CUDA if available, else CPU",
    )


def check_timing_options(parser: argparse.ArgumentParser, config) -> None:
    """Exit through ``parser.error`` on repeats < 1, warmup < 0 or CUDA asked for but absent."""
    if config.repeats < 1 or config.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if config.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")


def pick_device(name: str) -> torch.device:
    """``"auto"``: CUDA if available, else the CPU; otherwise the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternating_times(
    contenders: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each contender, ``repeats`` times after ``warmup`` untimed rounds.

    Every round calls every contender once, in alternating order, so that no contender always
    runs on a cache warmed by the same neighbour and a change in the machine's load falls on
    all of them.
    """
    times = {name: [] for name in contenders}
    names = list(contenders)
    for repetition in range(warmup + repeats):
        for name in names if repetition % 2 == 0 else names[::-1]:
            synchronize(device)
            start = time.perf_counter()
            contenders[name]()
            synchronize(device)
            if repetition >= warmup:
                times[name].append(time.perf_counter() - start)
    return times

"""Predict masks with a U-Net trained by companion.torch.train::

    python -m companion.torch.predict --checkpoint run/checkpoint.pt --images photos --out masks
    python -m companion.torch.predict --checkpoint run/checkpoint.pt --images scan.tif \\
        --out masks --threshold-from-val --probabilities --overlay
    python -m companion.torch.predict --checkpoint run/checkpoint.pt --images big --out masks \\
        --tile 256 --overlap 64 --batch-size 16 --device cuda --amp bf16

The U-Net is rebuilt from the configuration stored in the checkpoint and loads its weights
(torch.load with weights_only=True). Images are read as the training read them
(companion.folders.read_image: 8- and 16-bit PNG and TIFF, grayscale or RGB, and .npy), with
the channels the model was trained on; images of any size are predicted in tiles of the
training size (companion.tiling.predict_tiled: each pixel from the tile whose centre is
nearest), or resized to the training's --image-size when it resized its --data images.

In ``--out``, per image STEM: STEM.png, the mask (0/255 for a binary model, class indices,
uint8 or uint16, for a multi-class one); with ``--probabilities``, STEM.npy (float32); with
``--overlay``, STEM_overlay.png. Binary models threshold their probabilities at 0.5,
``--threshold``, or with ``--threshold-from-val`` at the threshold the training chose on its
validation set. Bad input (a missing checkpoint, an unreadable image, an image whose channels
are not the model's, ``--out`` the input folder) stops the script with one line naming it,
exit status 2.
"""

import argparse
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from companion import prediction, training
from companion.folders import DataError
from companion.prediction import PredictOptions, TrainedModel
from companion.torch.models import UNet
from companion.torch.train import pick_device
from companion.training import option

__all__ = ["Config", "build_parser", "load_model", "main", "make_predict_batch"]

PROG = "python -m companion.torch.predict"


@dataclasses.dataclass
class Config(PredictOptions):
    """The script's options, one command-line flag each (``--help`` lists them): those of
    :class:`~companion.prediction.PredictOptions`, the checkpoint, and the system options."""

    checkpoint: str = option(
        None,
        "required: the checkpoint.pt written by python -m companion.torch.train",
        "input and output",
        type=str,
        required=True,
    )
    device: str = option(
        "auto", "auto: CUDA, then MPS, then CPU", "system", choices=("auto", "cpu", "cuda", "mps")
    )
    amp: str = option(
        "none",
        "mixed precision: bf16 or fp16 (CUDA only) autocast of the forward pass",
        "system",
        choices=("none", "bf16", "fp16"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, one flag per field of :class:`Config`."""
    return training.build_parser(Config, prog=PROG, description=__doc__)


def _check_system(parser: argparse.ArgumentParser, config: Config) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    if config.device == "mps" and not torch.backends.mps.is_available():
        parser.error("--device mps, but torch.backends.mps.is_available() is False")
    device = pick_device(config.device)
    if config.amp == "fp16" and device.type != "cuda":
        parser.error(f"--amp fp16 needs CUDA; on {device.type} use --amp bf16 or --amp none")
    return device


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[UNet, TrainedModel]:
    """The U-Net of a checkpoint of ``companion.torch.train``, in evaluation mode on
    ``device``, and what the prediction needs to know of its training.

    Raises:
        DataError: if there is no file at ``path``, or it is not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file raises pickle's, zipfile's or torch's errors
        message = " ".join(str(error).split()[:20])
        raise DataError(f"{path}: not a readable checkpoint ({message})") from None
    if not isinstance(checkpoint, dict) or not {"model", "config"} <= set(checkpoint):
        raise DataError(f"{path}: not a checkpoint of companion.torch.train (no model, config)")
    trained = TrainedModel(
        path,
        checkpoint["config"],
        checkpoint.get("threshold"),
        checkpoint.get("normalization"),
    )
    config = trained.config
    model = UNet(
        trained.in_channels, trained.out_channels, config["base_channels"], config["depth"]
    )
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise DataError(f"{path}: its weights do not fit its configuration ({error})") from None
    return model.to(device).eval(), trained


def make_predict_batch(
    model: UNet, binary: bool, device: torch.device, amp: str = "none"
) -> Callable[[np.ndarray], np.ndarray]:
    """The function :func:`companion.tiling.predict_tiled` calls: float32 tiles
    ``(N, h, w, C)`` to probabilities ``(N, h, w, K)`` (sigmoid for a binary model, softmax
    over the classes otherwise), computed on ``device`` under ``amp`` autocast, returned in
    float32."""
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]

    @torch.no_grad()
    def predict_batch(tiles: np.ndarray) -> np.ndarray:
        # A copy in (N, C, H, W) order: with one channel, a permuted view's strides are also
        # those of channels-last, and the convolutions would take that path (which rounds
        # otherwise) instead of the training's.
        images = torch.from_numpy(np.moveaxis(tiles, -1, 1).copy()).to(device)
        autocast = contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype)
        with autocast:
            logits = model(images)
        logits = logits.float()
        probabilities = torch.sigmoid(logits) if binary else torch.softmax(logits, dim=1)
        return probabilities.permute(0, 2, 3, 1).cpu().numpy()

    return predict_batch


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the script on ``argv``; returns the masks written."""
    parser = build_parser()
    config = Config(**vars(parser.parse_args(argv)))
    prediction.check_options(parser, config)
    device = _check_system(parser, config)
    try:
        model, trained = load_model(Path(config.checkpoint), device)
        predict_batch = make_predict_batch(model, trained.binary, device, config.amp)
        return prediction.predict_images(config, trained, predict_batch)
    except DataError as error:
        training.exit_with_data_error(PROG, error)


if __name__ == "__main__":
    main()

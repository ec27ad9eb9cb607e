"""Predict masks with a U-Net trained by companion.keras.train::

    python -m companion.keras.predict --run runs/keras --images photos --out masks
    python -m companion.keras.predict --run runs/keras --images scan.tif --out masks \\
        --threshold-from-val --probabilities --overlay
    KERAS_BACKEND=torch python -m companion.keras.predict --run runs/keras --images big \\
        --out masks --tile 256 --overlap 64 --batch-size 16

The Keras twin of companion.torch.predict, with the same flags where they apply, on the
TensorFlow and the PyTorch backends (KERAS_BACKEND). ``--run`` is the ``--out`` folder of
companion.keras.train: the U-Net is rebuilt from its config.json (companion.keras.models.unet,
for inputs of any size) and loads checkpoint.weights.h5; threshold.json holds the threshold
chosen on the validation set (``--threshold-from-val``). Images are read as the training read
them (companion.folders.read_image), with the channels the model was trained on, and predicted
in tiles of the training size (companion.tiling.predict_tiled: each pixel from the tile whose
centre is nearest), or resized to the training's --image-size when it resized its --data
images.

In ``--out``, per image STEM: STEM.png, the mask (0/255 for a binary model, class indices,
uint8 or uint16, for a multi-class one); with ``--probabilities``, STEM.npy (float32); with
``--overlay``, STEM_overlay.png. Bad input (a missing run folder, an unreadable image, an image
whose channels are not the model's, ``--out`` the input folder) stops the script with one line
naming it, exit status 2.
"""

# ruff: noqa: E402 (the environment is set before TensorFlow and Keras are imported)
import os

# Before TensorFlow loads, or its start-up messages reach stdout and stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import contextlib
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from companion import prediction, training
from companion.folders import DataError
from companion.keras.models import unet
from companion.keras.train import CHECKPOINT, CONFIG, gpu_count, precision_policy
from companion.prediction import PredictOptions, TrainedModel
from companion.training import option

__all__ = ["Config", "build_parser", "load_model", "main", "make_predict_batch"]

PROG = "python -m companion.keras.predict"
#: The file of companion.keras.train's --out that holds the threshold chosen on validation.
THRESHOLD = "threshold.json"


@dataclasses.dataclass
class Config(PredictOptions):
    """The script's options, one command-line flag each (``--help`` lists them): those of
    :class:`~companion.prediction.PredictOptions`, the run folder, and the system options."""

    run: str = option(
        None,
        "required: the --out folder of python -m companion.keras.train: config.json, "
        "checkpoint.weights.h5 and, for binary losses, threshold.json",
        "input and output",
        type=str,
        required=True,
    )
    device: str = option(
        "auto",
        "auto: a GPU if the backend sees one, else the CPU",
        "system",
        choices=("auto", "cpu", "cuda"),
    )
    amp: str = option(
        "none",
        "mixed precision policy: mixed_bfloat16, or mixed_float16 (GPU only)",
        "system",
        choices=("none", "bf16", "fp16"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, one flag per field of :class:`Config`."""
    return training.build_parser(Config, prog=PROG, description=__doc__)


def _check_system(parser: argparse.ArgumentParser, config: Config) -> None:
    gpus = 0 if config.device == "cpu" else gpu_count()
    torch_backend = keras.backend.backend() == "torch"
    if config.device == "cpu" and torch_backend and keras.ops.zeros(()).device.type != "cpu":
        parser.error(
            "--device cpu: the torch backend chose its device when Keras was imported; "
            "start with KERAS_TORCH_DEVICE=cpu instead"
        )
    if config.device == "cuda" and gpus == 0:
        parser.error(f"--device cuda, but the {keras.backend.backend()} backend sees no GPU")
    if config.amp == "fp16" and gpus == 0:
        parser.error("--amp fp16 (mixed_float16) needs a GPU; on the CPU use --amp bf16 or none")


def load_model(run: Path) -> tuple[keras.Model, TrainedModel]:
    """The U-Net of a run of ``companion.keras.train`` (its ``--out`` folder), built for
    inputs of any size under the current dtype policy, and what the prediction needs to know
    of its training.

    Raises:
        DataError: if the folder lacks config.json or checkpoint.weights.h5, or they do not
            fit together.
    """
    run = Path(run)
    for name in (CONFIG, CHECKPOINT):
        if not (run / name).is_file():
            raise DataError(f"{run / name}: no such file; --run is the --out of the training")
    try:
        config = json.loads((run / CONFIG).read_text())
        threshold = None
        if (run / THRESHOLD).is_file():
            threshold = json.loads((run / THRESHOLD).read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{run}: unreadable config.json or threshold.json ({error})") from None
    trained = TrainedModel(run, config, threshold, config.get("normalization"))
    model = unet(
        (None, None, trained.in_channels),
        out_channels=trained.out_channels,
        base_channels=config["base_channels"],
        depth=config["depth"],
    )
    try:
        # The file holds the optimizer's variables too; a model without an optimizer takes
        # its own and skips the rest.
        model.load_weights(run / CHECKPOINT, skip_mismatch=False)
    except Exception as error:  # h5py's, Keras's or the backend's
        message = " ".join(str(error).split()[:20])
        raise DataError(f"{run / CHECKPOINT}: does not fit {CONFIG} ({message})") from None
    return model, trained


def make_predict_batch(model: keras.Model, binary: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The function :func:`companion.tiling.predict_tiled` calls: float32 tiles
    ``(N, h, w, C)`` to probabilities ``(N, h, w, K)`` (sigmoid for a binary model, softmax
    over the classes otherwise), in float32."""

    def predict_batch(tiles: np.ndarray) -> np.ndarray:
        logits = np.asarray(model.predict_on_batch(tiles), dtype=np.float64)
        if binary:
            # 1 / (1 + exp(-x)) without overflow for large negative logits.
            probabilities = np.exp(-np.logaddexp(0.0, -logits))
        else:
            shifted = logits - logits.max(axis=-1, keepdims=True)
            probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return probabilities.astype(np.float32)

    return predict_batch


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the script on ``argv``; returns the masks written."""
    parser = build_parser()
    config = Config(**vars(parser.parse_args(argv)))
    prediction.check_options(parser, config)
    _check_system(parser, config)
    placement = (
        keras.device("cpu:0")
        if config.device == "cpu" and keras.backend.backend() != "torch"
        else contextlib.nullcontext()
    )
    try:
        with placement, precision_policy(config.amp):
            model, trained = load_model(Path(config.run))
            predict_batch = make_predict_batch(model, trained.binary)
            return prediction.predict_images(config, trained, predict_batch)
    except DataError as error:
        training.exit_with_data_error(PROG, error)


if __name__ == "__main__":
    main()

"""python -m companion.torch.train: flags, outputs, resume, torchrun, losses, benchmark, and
training on a folder of image files (--data)."""

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import parse_error
from test_folders import BAD_INPUTS, bad_folder, write_pairs

from companion import folders, training
from companion.data import small_targets
from companion.torch import train
from companion.torch.models import UNet

# A U-Net of a few thousand parameters on 32x32 images: each run takes about a second.
TINY = [
    "--device", "cpu", "--image-size", "32", "--n-train", "16", "--n-val", "8",
    "--batch-size", "8", "--base-channels", "4", "--depth", "2", "--quiet",
]  # fmt: skip


def load_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / train.CHECKPOINT, weights_only=True)["model"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """16 PNG pairs of 32x32 small_targets images (uint8) and 0/255 masks."""
    root = tmp_path_factory.mktemp("data")
    images, masks = small_targets(16, size=32, seed=0)
    images = np.clip(images * 60 + 100, 0, 255).astype(np.uint8)
    write_pairs(root, images, (masks * 255).astype(np.uint8))
    return root


# The flags of TINY for a folder of 16 images: 12 train, 4 validate.
DATA = [
    "--device", "cpu", "--batch-size", "4", "--base-channels", "4", "--depth", "2", "--quiet",
    "--val-fraction", "0.25",
]  # fmt: skip


def assert_same_weights(first: dict, second: dict, atol: float) -> None:
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=atol, msg=name)


# -- the command line ---------------------------------------------------------------------


def test_every_config_field_has_a_flag_with_help():
    parser = train.build_parser()
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    # Every field but in_channels, which the data set.
    assert set(actions) == {field.name for field in dataclasses.fields(train.Config)} - {
        "in_channels"
    }
    for name, action in actions.items():
        assert action.help and len(action.help) > 10, name
        assert action.option_strings == ["--" + name.replace("_", "-")]


def test_defaults_come_from_the_dataclass():
    assert train.parse_config([]) == train.Config()


def test_the_public_names_are_the_entry_points():
    assert {"Config", "parse_config", "setup", "train", "benchmark", "main"} <= set(train.__all__)
    assert all(hasattr(train, name) for name in train.__all__)
    assert "prepare" not in train.__all__


def test_help_lists_every_flag_and_the_torchrun_recipe():
    text = train.build_parser().format_help()
    assert text.startswith("usage: python -m companion.torch.train")
    assert "torchrun --standalone --nproc_per_node 4 -m companion.torch.train" in text
    for field in dataclasses.fields(train.Config):
        if field.name != "in_channels":
            assert "--" + field.name.replace("_", "-") in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epoch", "3"], "unrecognized arguments: --epoch 3"),
        (["--lo", "dice"], "unrecognized arguments: --lo dice"),
        (["--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
        (["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs CUDA"),
        (
            ["--image-size", "30", "--depth", "2"],
            "--image-size 30 must be a multiple of 2**depth = 4",
        ),
        (["--n-train", "4", "--batch-size", "8"], "--n-train 4 must hold at least one batch (8)"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--n-classes", "1", "--loss", "wce"], "--n-classes must be >= 2"),
        (["--benchmark-steps", "0"], "--benchmark-steps must be >= 1"),
        (["--num-workers", "-1"], "--num-workers must be >= 0"),
        (["--benchmark", "--resume"], "--benchmark writes no checkpoint"),
        (["--crop", "16"], "--crop applies to --data only"),
        (["--augment"], "--augment applies to --data only"),
        (["--data", "no/such/folder"], "--data no/such/folder: no such folder"),
        (["--data", ".", "--crop", "30", "--depth", "2"], "--crop 30 must be a multiple of"),
        (
            ["--target-precision", "0.9", "--target-recall", "0.9"],
            "--target-precision and --target-recall exclude each other",
        ),
        (["--target-recall", "1.5"], "--target-recall must be in (0, 1]"),
        (
            ["--target-precision", "0.9", "--loss", "wce"],
            "--target-precision applies to the binary losses only",
        ),
    ],
)
def test_bad_flags_are_clear_errors(capsys, argv, message):
    assert message in parse_error(capsys, train.parse_config, argv)


def test_resume_needs_a_checkpoint(capsys, tmp_path):
    message = parse_error(capsys, train.parse_config, ["--resume", "--out", str(tmp_path)])
    assert f"--resume, but there is no checkpoint at {tmp_path / 'checkpoint.pt'}" in message


def test_batch_must_split_evenly_across_processes(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    message = parse_error(capsys, train.parse_config, ["--batch-size", "8"])
    assert "--batch-size 8 must be a multiple of the 3 processes" in message


def test_a_loss_missing_from_the_package_fails_the_import(run_module):
    # The script imports its losses from companion.torch: one renamed or removed there fails
    # the import of the script (and of this file), not a run that picks it, nor a skip.
    code = "import companion.torch; del companion.torch.dice_loss; import companion.torch.train"
    result = run_module("-c", code)
    assert result.returncode == 1
    assert "cannot import name 'dice_loss' from 'companion.torch'" in result.stderr


def test_a_bad_flag_exits_the_process_with_status_2(run_module):
    result = run_module("-m", "companion.torch.train", "--amp", "fp16", "--device", "cpu")
    assert result.returncode == 2
    assert "error: --amp fp16 needs CUDA" in result.stderr
    assert result.stdout == ""


# -- a run and its outputs ----------------------------------------------------------------


def test_the_module_trains_and_writes_its_outputs(tmp_path, run_module):
    result = run_module(
        "-m", "companion.torch.train", *TINY, "--epochs", "2", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training masks: positive fraction 0.0")
    assert [line.split()[:2] for line in lines[1:]] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint.pt",
        "curves.png",
        "metrics.csv",
    ]
    with open(tmp_path / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(train.METRIC_COLUMNS)
    assert [row["epoch"] for row in rows] == ["1", "2"]

    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(checkpoint) == {
        "model", "optimizer", "scaler", "epoch", "history", "config", "rng", "normalization",
        "statistics", "threshold",
    }  # fmt: skip
    assert checkpoint["epoch"] == 2
    assert checkpoint["config"]["in_channels"] == 1 and checkpoint["config"]["data"] is None
    assert set(checkpoint["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert checkpoint["config"]["base_channels"] == 4
    # The history is what metrics.csv shows.
    for row, saved in zip(rows, checkpoint["history"], strict=True):
        np.testing.assert_allclose(float(row["val_loss"]), saved["val_loss"], rtol=1e-15)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    history = train.main([*TINY, "--epochs", "2", "--out", str(straight)])
    train.main([*TINY, "--epochs", "1", "--out", str(resumed)])
    history_resumed = train.main([*TINY, "--epochs", "2", "--out", str(resumed), "--resume"])
    assert_same_weights(load_weights(straight), load_weights(resumed), atol=1e-6)
    assert [row["epoch"] for row in history_resumed] == [1, 2]
    for row, again in zip(history, history_resumed, strict=True):
        assert row == pytest.approx(again, rel=1e-6)
    # A third run after the last epoch has nothing left to do.
    assert (
        train.main([*TINY, "--epochs", "2", "--out", str(resumed), "--resume"]) == history_resumed
    )


def test_resume_reads_the_checkpoint_once(tmp_path, monkeypatch):
    train.main([*TINY, "--epochs", "1", "--out", str(tmp_path)])
    loaded = []
    load = torch.load

    def recording_load(path, *args, **kwargs):
        loaded.append(Path(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    history = train.main([*TINY, "--epochs", "2", "--out", str(tmp_path), "--resume"])
    assert [row["epoch"] for row in history] == [1, 2]
    # Once for the check that the run is the same, whose checkpoint the training then continues.
    assert loaded == [tmp_path / "checkpoint.pt"]


def test_resume_into_fp16_starts_a_fresh_grad_scaler(tmp_path):
    # fp16 needs CUDA in the script, so the switch is checked on the restore step itself: the
    # checkpoint of a run without fp16 holds an empty scaler state.
    train.main([*TINY, "--epochs", "1", "--out", str(tmp_path)])
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["scaler"] == {}
    model = UNet(1, 1, 4, 2)  # the --base-channels and --depth of TINY
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    epoch, history = train.restore_checkpoint(checkpoint, model, optimizer, scaler)
    assert (epoch, len(history)) == (1, 1)
    assert scaler.get_scale() == 2.0**16  # fresh
    with pytest.raises(RuntimeError, match="empty"):  # what loading it would have done
        scaler.load_state_dict(checkpoint["scaler"])


def test_resume_refuses_a_different_model(capsys, tmp_path):
    train.main([*TINY, "--epochs", "1", "--out", str(tmp_path)])
    capsys.readouterr()
    message = parse_error(
        capsys,
        train.parse_config,
        [*TINY, "--epochs", "2", "--out", str(tmp_path), "--resume", "--depth", "1"],
    )
    assert "was trained with --depth 2" in message


@pytest.mark.parametrize("loss", ["bce", "wce"])
def test_torchrun_with_two_processes_trains_as_one_process(tmp_path, loss, run_module):
    # Global batch 8: one process takes all 8 images of a step, each of two takes 4. SGD keeps
    # the comparison sharp (Adam would hide a gradient off by a constant factor). wce divides
    # by the weight of the global batch: a per-process weight would move the weights by 1e-3.
    flags = [*TINY, "--epochs", "2", "--optimizer", "sgd", "--lr", "0.1", "--loss", loss]
    distributed = run_module(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "companion.torch.train", *flags, "--out", str(tmp_path / "two"),
    )  # fmt: skip
    assert distributed.returncode == 0, distributed.stderr
    # One thread, as in each torchrun process: with two, float32 sums over a batch's pixels
    # run in another order and the head's bias moves by about 2e-6.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main([*flags, "--out", str(tmp_path / "one")])
    finally:
        torch.set_num_threads(threads)
    # Rank 0 alone prints.
    assert distributed.stdout.count("epoch 2/2") == 1
    assert_same_weights(load_weights(tmp_path / "one"), load_weights(tmp_path / "two"), atol=1e-6)
    # Each rank evaluated half the validation set; the pooled scores are the same.
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["history"]
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["history"]
    for row, other in zip(one, two, strict=True):
        # wce's validation loss too: it pools weighted sums and weights over the whole set.
        assert row == pytest.approx(other, rel=1e-5)


# -- losses -------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["wce", "wce_map", "dice"])
def test_validation_loss_terms_pool_over_batches(loss):
    # However the set is cut into batches, the pooled terms give the loss of the whole set:
    # for the weighted means, sum(w * nll) / sum(w), not a mean of the batches' ratios.
    config = train.parse_config([*TINY, "--loss", loss])
    generator = torch.Generator().manual_seed(3)
    if loss == "dice":
        logits = torch.randn(6, 1, 8, 8, generator=generator)
        target = (torch.rand(6, 1, 8, 8, generator=generator) < 0.2).float()
    else:
        logits = torch.randn(6, 3, 8, 8, generator=generator)
        target = torch.randint(0, 3, (6, 8, 8), generator=generator)
    weight_map = 1.0 + 9.0 * torch.rand(6, 8, 8, generator=generator)
    stats = {"class_weights": [0.5, 2.0, 4.0]}
    terms = train.build_loss_terms(config, stats, torch.device("cpu"))
    whole = train.build_loss(config, stats, torch.device("cpu"))(logits, target, weight_map)
    for cuts in ([0, 6], [0, 1, 6], [0, 2, 3, 6]):
        bounds = zip(cuts[:-1], cuts[1:], strict=True)
        pieces = [terms(logits[a:b], target[a:b], weight_map[a:b]) for a, b in bounds]
        pooled = sum(p[0] for p in pieces) / sum(p[1] for p in pieces)
        torch.testing.assert_close(pooled, whole, rtol=1e-6, atol=0.0)


def test_cost_matrix_charges_missed_objects_most():
    np.testing.assert_array_equal(
        train.cost_matrix(3, miss_cost=5.0), [[1.0, 1.0, 1.0], [5.0, 1.0, 1.0], [5.0, 1.0, 1.0]]
    )


def test_wce_trains_on_the_multiclass_data(tmp_path):
    history = train.main(
        [*TINY, "--loss", "wce", "--n-classes", "4", "--epochs", "3", "--out", str(tmp_path)]
    )
    assert len(history) == 3
    # Weighted cross-entropy of 4 classes starts near log(4) and goes down.
    assert history[-1]["train_loss"] < history[0]["train_loss"] < 2 * np.log(4)
    assert all(0.0 <= row["dice"] <= 1.0 for row in history)


def test_bce_loss_is_the_mean_binary_cross_entropy():
    config = train.Config()
    loss_fn = train.build_loss(config, {}, torch.device("cpu"))
    logits, target = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    np.testing.assert_allclose(loss_fn(logits, target, None).item(), expected, rtol=1e-6)


PACKAGE_LOSSES = ["weighted_bce", "dice", "dice_bce", "focal", "tversky", "wce_map", "cost"]


def test_every_loss_choice_is_bce_wce_or_a_package_loss():
    assert set(training.BINARY_LOSSES + training.MULTICLASS_LOSSES) == {"bce", "wce"} | set(
        PACKAGE_LOSSES
    )


@pytest.mark.parametrize("loss", PACKAGE_LOSSES)
def test_each_package_loss_trains(tmp_path, loss):
    history = train.main([*TINY, "--loss", loss, "--epochs", "2", "--out", str(tmp_path)])
    assert len(history) == 2
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) for row in history)


@pytest.mark.parametrize("loss", ["bce", "wce"])
def test_prior_bias_starts_the_network_at_the_class_prior(loss):
    config = train.parse_config([*TINY, "--loss", loss, "--prior-bias"])
    prepared = train.prepare(config, train.setup(config))
    model, targets = prepared.model, prepared.train_set.tensors[1]
    if config.binary:
        prior = targets.mean().item()
        expected = [math.log(prior / (1 - prior))]
    else:
        prior = torch.bincount(targets.flatten(), minlength=config.n_classes) / targets.numel()
        expected = prior.log().tolist()
    np.testing.assert_allclose(model.head.bias.detach().numpy(), expected, rtol=1e-6)
    # Without the flag, PyTorch's default initialization.
    default = train.parse_config([*TINY, "--loss", loss])
    untouched = train.prepare(default, train.setup(default)).model
    assert not np.allclose(untouched.head.bias.detach().numpy(), expected, rtol=0.1)


def test_prior_bias_must_match_on_resume(capsys, tmp_path):
    train.main([*TINY, "--epochs", "1", "--out", str(tmp_path)])
    capsys.readouterr()
    argv = [*TINY, "--epochs", "2", "--out", str(tmp_path), "--resume", "--prior-bias"]
    assert "was trained with --prior-bias False" in parse_error(capsys, train.parse_config, argv)


# -- precision, memory format, benchmark --------------------------------------------------


def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path):
    history = train.main(
        [*TINY, "--amp", "bf16", "--channels-last", "--epochs", "1", "--out", str(tmp_path)]
    )
    plain = train.main([*TINY, "--epochs", "1", "--out", str(tmp_path / "plain")])
    # bfloat16 keeps about 3 significant digits: the first epoch's loss agrees to 2%.
    assert history[0]["train_loss"] == pytest.approx(plain[0]["train_loss"], rel=0.02)
    assert history[0]["train_loss"] != plain[0]["train_loss"]


def test_benchmark_reports_images_per_second_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    result = train.main([*TINY, "--benchmark", "--benchmark-steps", "3", "--out", str(out)])
    assert result.steps == 3
    assert result.images_per_second == pytest.approx(8 / result.median_step_seconds)
    assert "images/s (median of 3 steps" in capsys.readouterr().out
    assert not out.exists()


# -- your own data: --data ----------------------------------------------------------------


def test_trains_on_a_folder_and_stores_what_prediction_needs(folder, tmp_path, capsys):
    history = train.main([*DATA, "--data", str(folder), "--epochs", "2", "--out", str(tmp_path)])
    assert [row["epoch"] for row in history] == [1, 2]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["config"]["data"] == str(folder)
    assert checkpoint["config"]["in_channels"] == 1
    assert checkpoint["normalization"] == folders.NORMALIZATION
    # The statistics printed and stored are the streaming pass over the 12 training masks.
    train_samples, _ = folders.split_samples(folder, 0.25, seed=0)
    expected = folders.class_statistics(
        (folders.read_sample(sample, True, 2)[1] for sample in train_samples), 2, binary=True
    )
    assert checkpoint["statistics"]["frequencies"] == expected["frequencies"].tolist()
    assert checkpoint["statistics"]["pos_weight"] == expected["pos_weight"]
    assert f"pos_weight {expected['pos_weight']:.4g}" in capsys.readouterr().out
    threshold = checkpoint["threshold"]
    assert 0.0 <= threshold["value"] <= 1.0
    assert threshold["rule"].startswith("max F1 on validation")


def test_the_stored_threshold_follows_the_target_flags(folder, tmp_path):
    # Shared flags: the three runs train the same weights; only the threshold's rule differs.
    flags = [*DATA, "--data", str(folder), "--epochs", "1", "--prior-bias"]
    thresholds = {}
    for name, extra in (
        ("f1", []),
        ("precision", ["--target-precision", "0.01"]),
        ("recall", ["--target-recall", "0.5"]),
    ):
        train.main([*flags, *extra, "--out", str(tmp_path / name)])
        thresholds[name] = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)[
            "threshold"
        ]
    assert thresholds["precision"]["rule"].startswith("precision >= 0.01 on validation")
    assert thresholds["recall"]["rule"].startswith("recall >= 0.5 on validation")
    assert all(0.0 <= threshold["value"] <= 1.0 for threshold in thresholds.values())


def test_rgb_images_give_a_three_channel_model(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, size=(6, 16, 16)).astype(np.uint8)
    write_pairs(tmp_path / "data", images, masks)
    argv = [*DATA, "--data", str(tmp_path / "data"), "--loss", "wce_map", "--batch-size", "2"]
    history = train.main([*argv, "--epochs", "1", "--out", str(tmp_path / "out")])
    assert np.isfinite(history[0]["train_loss"])
    checkpoint = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert checkpoint["config"]["in_channels"] == 3
    assert checkpoint["model"]["encoders.0.conv1.weight"].shape[1] == 3
    assert "threshold" not in checkpoint  # multi-class: argmax, no threshold


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stops_before_training_naming_the_file(tmp_path, capsys, case):
    named, options = bad_folder(tmp_path / "data", case)
    argv = [*DATA, "--data", str(tmp_path / "data"), "--batch-size", "2", "--val-fraction", "0.34"]
    if not options.get("binary", True):
        argv += ["--loss", "wce", "--n-classes", str(options["n_classes"])]
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"python -m companion.torch.train: error: {named}: ")
    assert BAD_INPUTS[case] in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not (tmp_path / "out").exists()


def test_bad_input_exits_the_process_with_status_2_and_one_line(tmp_path, run_module):
    named, _ = bad_folder(tmp_path / "data", "not labels")
    result = run_module(
        "-m", "companion.torch.train", *DATA, "--data", str(tmp_path / "data"),
        "--batch-size", "2", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m companion.torch.train: error: {named}: mask values 0, 128, 255; a binary "
        "mask holds 0/1 or 0/255"
    ]


def test_a_run_never_overwrites_a_different_run(folder, tmp_path, capsys):
    argv = [*DATA, "--data", str(folder), "--epochs", "1", "--out", str(tmp_path)]
    train.main(argv)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    message = parse_error(capsys, train.parse_config, [*argv, "--crop", "16"])
    assert message == (
        f"python -m companion.torch.train: error: --out {tmp_path} holds another run "
        f"({tmp_path / 'checkpoint.pt'} was trained with --crop None): choose another --out, "
        "or continue that run with --resume\n"
    )
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    # The same run again starts afresh in its own folder.
    assert len(train.main(argv)) == 1


def test_resumed_run_on_a_folder_ends_with_the_weights_of_an_uninterrupted_one(folder, tmp_path):
    # Random crops and augmentation are seeded by (seed, epoch, index): the resumed epoch
    # sees the crops of the uninterrupted one.
    argv = [*DATA, "--data", str(folder), "--crop", "16", "--augment", "--num-workers", "1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    history = train.main([*argv, "--epochs", "2", "--out", str(straight)])
    train.main([*argv, "--epochs", "1", "--out", str(resumed)])
    again = train.main([*argv, "--epochs", "2", "--out", str(resumed), "--resume"])
    assert_same_weights(load_weights(straight), load_weights(resumed), atol=1e-6)
    for row, other in zip(history, again, strict=True):
        assert row == pytest.approx(other, rel=1e-6)
    # A resumed run must read the same data.
    argv_changed = [*argv, "--epochs", "3", "--out", str(resumed), "--resume", "--val-fraction"]
    with pytest.raises(SystemExit):
        train.parse_config([*argv_changed, "0.5"])


def test_torchrun_with_two_processes_on_a_folder_trains_as_one_process(
    folder, tmp_path, run_module
):
    flags = [
        *DATA, "--data", str(folder), "--crop", "16", "--augment", "--epochs", "2",
        "--optimizer", "sgd", "--lr", "0.1",
    ]  # fmt: skip
    distributed = run_module(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "companion.torch.train", *flags, "--out", str(tmp_path / "two"),
    )  # fmt: skip
    assert distributed.returncode == 0, distributed.stderr
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main([*flags, "--out", str(tmp_path / "one")])
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(load_weights(tmp_path / "one"), load_weights(tmp_path / "two"), atol=1e-6)
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    for row, other in zip(one["history"], two["history"], strict=True):
        assert row == pytest.approx(other, rel=1e-5)
    # The threshold comes from the pooled histogram of every rank's validation tiles.
    assert one["threshold"]["value"] == pytest.approx(two["threshold"]["value"], abs=1e-3)

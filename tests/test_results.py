"""The stored training results the book reads (book/results/) and tools/results.py, which
makes them."""

import csv
import importlib.util
import shlex
from pathlib import Path

import pytest

from companion.torch import train

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("results_tool", ROOT / "tools" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = load_tool()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(results.DEFAULT_CSV, newline="") as file:
        return list(csv.DictReader(file))


def test_the_file_has_the_documented_columns(rows):
    with open(results.DEFAULT_CSV, newline="") as file:
        assert tuple(next(csv.reader(file))) == results.COLUMNS
    assert rows, "no rows"
    for row in rows:
        assert all(row[column] != "" for column in results.COLUMNS), row
        for column in ("train_loss", "val_loss", "dice", "iou", "precision", "recall"):
            assert 0.0 <= float(row[column]) < 10.0, (column, row)


def test_every_stored_command_parses_with_the_scripts_own_parser(rows):
    for command in {row["command"] for row in rows}:
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "companion.torch.train"], command
        config = train.parse_config(words[3:])
        row = next(row for row in rows if row["command"] == command)
        assert (config.loss, str(config.prior_bias), str(config.seed)) == (
            row["loss"],
            row["prior_bias"],
            row["seed"],
        )


def test_the_file_holds_every_planned_run_with_all_its_epochs(rows):
    planned = results.runs()
    assert {run["command"] for run in planned} == {row["command"] for row in rows}
    for run in planned:
        epochs = [int(row["epoch"]) for row in rows if row["command"] == run["command"]]
        config = train.parse_config(shlex.split(run["command"])[3:])
        assert epochs == list(range(1, config.epochs + 1)), run["command"]
    # Every loss, from both starts (weighted_bce from its own only), with 3 seeds or more.
    for loss in results.LOSSES:
        for prior_bias in ("False", "True"):
            seeds = {
                row["seed"]
                for row in rows
                if (row["loss"], row["prior_bias"]) == (loss, prior_bias)
            }
            expected = 0 if (loss, prior_bias) == ("weighted_bce", "True") else 3
            assert len(seeds) >= expected, (loss, prior_bias, seeds)


def test_the_dry_run_lists_nothing_left_to_run(capsys):
    assert results.main(["--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == "nothing to run"


def test_the_tool_skips_the_runs_already_in_the_file(tmp_path, capsys):
    path = tmp_path / "partial.csv"
    first = results.runs()[0]
    row = {column: "0" for column in results.COLUMNS} | {"command": first["command"]}
    results.write_rows(path, [row])
    assert results.main(["--dry-run", "--out", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [run["command"] for run in results.runs()[1:]]

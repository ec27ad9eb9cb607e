"""No computed number typed into the book's prose: numbers that a notebook prints are glued.

A heuristic. A number in a markdown cell is suspect when the same notebook prints it (in a
stored output, after rounding to the digits the prose shows) and no code cell of the notebook
types it as a literal (a learning rate, an image size: definitions and inputs may be typed).
Such a number was copied from an output by hand, and the next run can change the output
without changing the prose; MyST-NB's ``glue`` inserts it from the output instead. Numbers
of one significant digit (0.4, 5%, 3) are left out, being too common to tell apart, and so
are version numbers.
Deliberate exceptions are listed in :data:`TYPED_ON_PURPOSE` with the reason.
"""

import json
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

#: ``{notebook stem: {number as typed: why it may stay typed}}``.
TYPED_ON_PURPOSE: dict[str, dict[str, str]] = {
    "class_imbalance": {"0.25": "the focal loss's alpha in its paper, a definition"},
    "weighted_cross_entropy": {
        "16.1": "-log(1e-7), from Keras's epsilon, a constant inside display math",
    },
    "training_at_scale": {
        "50": "the epoch count of an example run, an input",
        "128": "the default image size of benchmarks/train_throughput.py, a definition",
        "512": "the batch shape of benchmarks/huber_torch.py, a definition",
    },
}

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?%?(?![\w])")
VERSION = re.compile(r"\b\d+\.\d+\.\d+\w*")
# What prose holds besides numbers of its own: code blocks (not directives such as
# ```{admonition}), roles ({glue:text}`name:.2f`, {cite}`key`, ...), inline code, links,
# cross-reference targets and directive options.
NOT_PROSE = [
    re.compile(r"^(`{3,})(?![`{])[^\n]*\n.*?^\1[ \t]*$", re.DOTALL | re.MULTILINE),
    re.compile(r"\{[\w:-]+\}`[^`]*`"),
    re.compile(r"`[^`\n]*`"),
    re.compile(r"\]\([^)]*\)"),
    re.compile(r"https?://\S+"),
    re.compile(r"^\((?:[\w-]+)\)=$", re.MULTILINE),
    re.compile(r"^:[\w-]+:.*$", re.MULTILINE),
]


def text_of(cell) -> str:
    return "".join(cell["source"])


def printed_text(cell) -> str:
    """Everything a code cell's stored outputs show as text (glued values included)."""
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append("".join(output["text"]))
        for mime, value in output.get("data", {}).items():
            if mime.endswith("text/plain"):
                parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def numbers_in(text: str) -> list[str]:
    return NUMBER.findall(VERSION.sub(" ", text))


def value(token: str) -> Decimal:
    """A token's value, a percentage as a fraction."""
    number = Decimal(token.rstrip("%"))
    return number / 100 if token.endswith("%") else number


def decimals(token: str) -> int:
    """The decimal places the token shows, in the units of its value (a percentage's + 2)."""
    digits = token.rstrip("%").partition(".")[2]
    places = 0 if "e" in token.lower() else len(digits)
    return places + 2 if token.endswith("%") else places


def checked(token: str) -> bool:
    """Numbers precise enough to tell apart: two significant digits or more (0.35, 6.4, 16%,
    12), not 0.4, 5% or 3."""
    digits = token.rstrip("%").lstrip("-").split("e")[0].split("E")[0].replace(".", "")
    return len(digits.lstrip("0")) >= 2


def matches(typed: str, printed: Decimal) -> bool:
    """Whether ``printed``, rounded to the digits ``typed`` shows, is ``typed``."""
    places = Decimal(1).scaleb(-decimals(typed))
    target = value(typed)
    if (printed < 0) != (target < 0) or abs(printed) > 1e12:
        return False
    modes = (ROUND_HALF_EVEN, ROUND_HALF_UP)
    return any(abs(printed).quantize(places, rounding=mode) == abs(target) for mode in modes)


def typed_computed_numbers(notebook: dict, exceptions: dict[str, str]) -> list[str]:
    """``"cell N: 0.85 (printed as 0.853)"`` for every suspect number of a notebook."""
    cells = notebook["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    literals = {value(token) for cell in code for token in numbers_in(text_of(cell))}
    printed = {}
    for cell in code:
        for token in numbers_in(printed_text(cell)):
            printed.setdefault(value(token), token)
    found = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        prose = text_of(cell)
        for pattern in NOT_PROSE:
            prose = pattern.sub(" ", prose)
        for token in numbers_in(prose):
            if not checked(token) or token in exceptions or value(token) in literals:
                continue
            hits = [shown for number, shown in printed.items() if matches(token, number)]
            if hits:
                found.append(f"cell {index}: {token} (printed as {hits[0]})")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_computed_number_is_typed_into_the_prose(path):
    notebook = json.loads(path.read_text())
    found = typed_computed_numbers(notebook, TYPED_ON_PURPOSE.get(path.stem, {}))
    assert not found, (
        f"{path.name}: numbers in the prose that an output prints; insert them with "
        "{glue:text}`name:format` (or, for a definition, list them in TYPED_ON_PURPOSE):\n  "
        + "\n  ".join(found)
    )


def test_every_exception_is_still_in_its_notebook():
    for stem, exceptions in TYPED_ON_PURPOSE.items():
        prose = " ".join(
            text_of(cell)
            for cell in json.loads((ROOT / "book" / f"{stem}.ipynb").read_text())["cells"]
            if cell["cell_type"] == "markdown"
        )
        for token in exceptions:
            assert token in numbers_in(prose), f"{stem}: {token} is no longer in the prose"


# {glue:text}`name:format`, {glue}`name` and the other glue roles; the format is group 2.
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::([^`]*))?`")


def glue_references(notebook: dict) -> list[tuple[str, str]]:
    """Each place the prose glues a name: the name, and its format ("" for none)."""
    return [
        (name, form)
        for cell in notebook["cells"]
        if cell["cell_type"] == "markdown"
        for name, form in GLUE_ROLE.findall(text_of(cell))
    ]


def glued_values(notebook: dict) -> dict[str, str]:
    """The names glued in a notebook's stored outputs, with their stored text/plain."""
    return {
        output["metadata"]["scrapbook"]["name"]: output["data"].get(
            "application/papermill.record/text/plain", ""
        )
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
        if "scrapbook" in output.get("metadata", {})
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_glue_reference_has_a_stored_value(path):
    notebook = json.loads(path.read_text())
    missing = {name for name, _ in glue_references(notebook)} - set(glued_values(notebook))
    assert not missing, sorted(missing)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_value_glued_with_a_format_is_a_plain_number(path):
    # {glue:text}`name:.3f` formats the stored text/plain with float(); a NumPy scalar stores
    # "np.float64(0.5)", which the book build reports as a warning and fails on.
    notebook = json.loads(path.read_text())
    values = glued_values(notebook)
    bad = []
    for name, form in glue_references(notebook):
        if form and name in values:
            try:
                float(values[name])
            except ValueError:
                bad.append(f"{name} = {values[name]}")
    assert not bad, sorted(set(bad))


# -- the heuristic itself ------------------------------------------------------------------


def notebook_of(markdown: str, code: str, printed: str) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "source": code, "outputs": [{"text": printed}]},
            {"cell_type": "markdown", "source": markdown},
        ]
    }


@pytest.mark.parametrize(
    "markdown, printed",
    [
        ("The Dice score reached 0.85.", "dice 0.8531"),
        ("From 16% to 88% of the pairs.", "separated 0.163 0.875"),
        ("A log-likelihood of -2390.04.", "log L = -2390.0383"),
        ("It took 37 epochs.", "epochs: 37"),
        ("```{admonition} Solution\n:class: dropdown\nThe fit gives 0.85.\n```", "dice 0.8531"),
    ],
)
def test_a_typed_printed_number_is_found(markdown, printed):
    found = typed_computed_numbers(notebook_of(markdown, "run()", printed), {})
    assert found and found[0].startswith("cell 1: ")


@pytest.mark.parametrize(
    "markdown, code",
    [
        ("The Dice score reached {glue:text}`dice:.2f`.", "run()"),
        ("Trained at learning rate 0.01.", "LEARNING_RATE = 0.01"),
        ("Keras 3.15.1 fails here.", "run()"),
        ("The call `lr=0.85` in a sentence.", "run()"),
        ("Seven runs, 3 of them stalled.", "run()"),
        ("A Dice of 0.9 means little here.", "run()"),
        ("Run it:\n\n```bash\npython train.py --lr 0.85\n```\n", "run()"),
    ],
)
def test_glued_defined_and_small_numbers_are_not_flagged(markdown, code):
    printed = "dice 0.8531 lr 0.01 Keras 3.15.1 stalled 3 of 7, 0.85"
    assert typed_computed_numbers(notebook_of(markdown, code, printed), {}) == []


def test_an_exception_is_not_flagged():
    notebook = notebook_of("The noise is 0.12 here.", "run()", "sigma 0.1203")
    assert typed_computed_numbers(notebook, {}) != []
    assert typed_computed_numbers(notebook, {"0.12": "the noise level, an input"}) == []

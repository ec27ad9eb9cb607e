"""The book's configuration (every chapter in the table of contents, launch buttons guarded)
and what a chapter's page shows (tools/book_stats.py)."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(node) -> list[str]:
    files = [node["file"]] if "file" in node else []
    for key in ("parts", "chapters", "sections"):
        for child in node.get(key, []):
            files += toc_files(child)
    return files


def test_every_notebook_is_in_the_table_of_contents():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = set(toc_files(toc)) | {toc["root"]}
    notebooks = {f"book/{path.stem}" for path in (ROOT / "book").glob("*.ipynb")}
    assert notebooks, "no chapter notebooks found"
    assert notebooks <= listed, f"not in _toc.yml: {sorted(notebooks - listed)}"
    for entry in listed:
        assert any((ROOT / entry).with_suffix(s).is_file() for s in (".ipynb", ".md")), entry


def load_launch_guard():
    spec = importlib.util.spec_from_file_location(
        "launch_guard", ROOT / "book/_ext/launch_guard.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._drop_launch_buttons_without_repository


def test_launch_buttons_need_a_repository_url():
    guard = load_launch_guard()
    buttons = {"binderhub_url": "https://mybinder.org"}
    without = SimpleNamespace(html_theme_options={"repository_url": "", "launch_buttons": buttons})
    guard(None, without)
    assert "launch_buttons" not in without.html_theme_options
    with_url = SimpleNamespace(
        html_theme_options={"repository_url": "https://github.com/o/r", "launch_buttons": buttons}
    )
    guard(None, with_url)
    assert with_url.html_theme_options["launch_buttons"] == buttons


def load_book_stats():
    spec = importlib.util.spec_from_file_location("book_stats", ROOT / "tools/book_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.stem)
def test_a_chapter_page_shows_the_argument_not_the_checks(path):
    """Checks run but fold away, no source is dumped, no line scrolls, the setup is folded."""
    book_stats = load_book_stats()
    notebook = json.loads(path.read_text())
    stats = book_stats.notebook_stats(notebook)
    assert stats["checks"] == 0, f"{path.name}: {stats['checks']} shown cells assert"
    assert stats["dumps"] == 0, f"{path.name}: {stats['dumps']} cells print source"
    assert stats["wide"] == 0, f"{path.name}: {stats['wide']} lines over {book_stats.WIDTH}"
    first_code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    tags = set(first_code["metadata"].get("tags", []))
    assert tags & book_stats.HIDDEN_INPUT, f"{path.name}: the setup cell is not folded"


@pytest.mark.parametrize(
    ("markdown", "words"),
    [
        ("Two words.", 2),
        ("One\n```python\nx = 1 + 2\n```\n", 1),
        ("```{admonition} Title\n:class: tip\nThree words here\n```", 3),
        ("::::{dropdown} Title\nfour words in it\n::::", 4),
        ("A $x^2$ and {glue:text}`n:.2f`.", 4),
    ],
)
def test_the_prose_count_keeps_directive_text_and_drops_code(markdown, words):
    assert load_book_stats().prose_words(markdown) == words

"""The book's configuration: every chapter is in the table of contents, launch buttons guarded."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

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

"""book/_ext/offline_mathjax.py: the book ships MathJax and points its pages at that copy."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from sphinx.errors import ExtensionError

ROOT = Path(__file__).resolve().parents[1]


def load_extension():
    spec = importlib.util.spec_from_file_location(
        "offline_mathjax", ROOT / "book/_ext/offline_mathjax.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


offline_mathjax = load_extension()


def test_copy_holds_the_component_and_what_it_loads_on_demand(tmp_path):
    offline_mathjax.copy_mathjax(offline_mathjax.mathjax_distribution(), tmp_path)
    for needed in (
        "tex-mml-chtml.js",
        "LICENSE",
        "input/tex/extensions/ams.js",
        "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
        "ui/menu.js",
        "a11y/explorer.js",
        "sre/mathmaps/en.json",
    ):
        assert (tmp_path / needed).is_file(), needed
    # Combined components no page loads are left out.
    assert not (tmp_path / "tex-svg-full.js").exists()


def test_mathjax_path_is_relative_to_static():
    config = SimpleNamespace(mathjax_path="https://cdn.example/tex-mml-chtml.js")
    offline_mathjax._point_mathjax_path_at_local_copy(None, config)
    assert config.mathjax_path == "mathjax/tex-mml-chtml.js"


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(offline_mathjax.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ExtensionError, match=r"'mathjax' is not installed.*django-static-mathjax"):
        offline_mathjax.mathjax_distribution()

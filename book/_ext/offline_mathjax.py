"""Serve MathJax from the built book itself, so every page renders its formulas offline.

Sphinx loads MathJax from a CDN by default: a book opened from disk without a network, or
served from a machine that cannot reach the CDN, shows raw TeX. This extension copies MathJax
3 from the ``django-static-mathjax`` package (part of the ``book`` extra) into
``_static/mathjax/`` of the HTML output and points ``mathjax_path`` at that copy. The path is
relative, so the book works from ``file://`` and from any web server.

The page loads one combined component (``tex-mml-chtml.js``); the component fetches the rest
on demand, relative to its own URL: TeX extensions (``input/tex/extensions/``), fonts
(``output/chtml/fonts/``), the context menu (``ui/``), accessibility and speech (``a11y/``,
``sre/``). Every subfolder is copied for that reason; the other combined components, which no
page loads, are left out.
"""

import importlib.util
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

COMPONENT = "tex-mml-chtml.js"
# Top-level files the component may load besides itself (the loader names them by module).
TOP_LEVEL_MODULES = ("core.js", "loader.js", "startup.js")
STATIC_SUBDIR = "mathjax"
INSTALL_HINT = (
    "install the book's dependencies with `pip install -c constraints.txt -e '.[book]'` "
    "(or `make install`), which include django-static-mathjax"
)


def mathjax_distribution() -> Path:
    """The folder holding MathJax's ``es5`` tree, from the installed ``mathjax`` package.

    Raises:
        ExtensionError: the package is missing or does not contain MathJax 3's es5 build.
    """
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            f"offline_mathjax: the Python package 'mathjax' is not installed; {INSTALL_HINT}."
        )
    package_root = Path(next(iter(spec.submodule_search_locations)))
    distribution = package_root / "static" / "mathjax"
    if not (distribution / "es5" / COMPONENT).is_file():
        raise ExtensionError(
            f"offline_mathjax: {distribution / 'es5' / COMPONENT} does not exist; the installed "
            f"'mathjax' package is not django-static-mathjax 3.x; {INSTALL_HINT}."
        )
    return distribution


def copy_mathjax(distribution: Path, destination: Path) -> None:
    """Copy the component, everything it can load on demand, and MathJax's licence."""
    es5 = distribution / "es5"
    destination.mkdir(parents=True, exist_ok=True)
    for entry in es5.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, destination / entry.name, dirs_exist_ok=True)
        elif entry.name in (COMPONENT, *TOP_LEVEL_MODULES):
            shutil.copy2(entry, destination / entry.name)
    shutil.copy2(distribution / "LICENSE", destination / "LICENSE")


def _point_mathjax_path_at_local_copy(app, config):
    mathjax_distribution()  # fail before reading any page, with the install hint
    # Sphinx resolves a path without a scheme against _static/, relative to each page.
    config.mathjax_path = f"{STATIC_SUBDIR}/{COMPONENT}"


def _copy_mathjax_into_static(app):
    if app.builder.format != "html":
        return
    # Copied before the pages are written, so Sphinx can add its cache-busting checksum.
    copy_mathjax(mathjax_distribution(), Path(app.outdir) / "_static" / STATIC_SUBDIR)


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _point_mathjax_path_at_local_copy)
    app.connect("builder-inited", _copy_mathjax_into_static)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

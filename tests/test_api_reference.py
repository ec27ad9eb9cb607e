"""The API reference (book/api/*.md) documents every public object of the package, once.

The pages name objects in autodoc directives (``.. autofunction:: companion.torch.dice_loss``
inside ``{eval-rst}`` blocks, or MyST's ``{autofunction}`` form). A public object is a name in
a module's ``__all__``, or, for a module without one, a function or class defined in it. An
object re-exported elsewhere (``companion.torch.dice_loss`` is
``companion.torch.segmentation.dice_loss``) counts as documented under any of its paths.
"""

import functools
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "book" / "api").glob("*.md"))

FRAMEWORK_FREE = [
    "reference", "backprop", "optim", "data", "weightmaps", "folders", "lasso", "training",
    "tiling", "prediction",
]  # fmt: skip
FRAMEWORK_MODULES = ["regression", "segmentation", "precision", "models", "train", "predict"]
MODULES = (
    ["companion"]
    + [f"companion.{name}" for name in FRAMEWORK_FREE]
    + [
        f"companion.{side}{suffix}"
        for side in ("torch", "keras")
        for suffix in ["", *(f".{name}" for name in FRAMEWORK_MODULES)]
    ]
)

# `.. autoclass:: companion.optim.SGD` in reST, or ```{autoclass} companion.optim.SGD in MyST.
DIRECTIVE = re.compile(
    r"^\s*(?:\.\.\s+|```+\{)(auto\w+|py:\w+)(?:::|\})\s+([\w.]+)", flags=re.MULTILINE
)
MODULE_DIRECTIVES = {"automodule", "py:module"}


def documented() -> list[tuple[str, str]]:
    """(directive, dotted path) of every directive on the API pages."""
    return [match.groups() for page in API_PAGES for match in DIRECTIVE.finditer(page.read_text())]


@functools.cache
def resolve(path: str):
    """The object at a dotted path: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(path)


def public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    ]


def test_the_api_pages_exist_and_name_objects():
    assert API_PAGES, "no pages in book/api"
    assert len(documented()) > 100


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_object_is_documented(module_name):
    module = importlib.import_module(module_name)
    # By identity, so that companion.torch.segmentation.dice_loss is documented by
    # companion.torch.dice_loss, the path it is imported from.
    documented_objects = [
        resolve(path) for kind, path in documented() if kind not in MODULE_DIRECTIVES
    ]
    missing = [
        name
        for name in public_names(module)
        if not any(getattr(module, name) is value for value in documented_objects)
    ]
    assert not missing, f"not in book/api: {', '.join(f'{module_name}.{n}' for n in missing)}"


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_is_a_link_target(module_name):
    modules = {path for kind, path in documented() if kind in MODULE_DIRECTIVES}
    assert module_name in modules, f"no automodule for {module_name} in book/api"


def test_every_directive_names_an_existing_object_once():
    paths = [path for _, path in documented()]
    assert len(paths) == len(set(paths)), "a path is documented twice"
    objects = {}
    for kind, path in documented():
        value = resolve(path)
        if kind in MODULE_DIRECTIVES:
            assert inspect.ismodule(value), path
            continue
        # Two directives for one object would give Sphinx two targets (or a duplicate warning).
        duplicate = next((other for other, seen in objects.items() if seen is value), None)
        assert duplicate is None, f"{path} and {duplicate} are the same object"
        objects[path] = value


@pytest.mark.parametrize("module_name", ["companion.torch.train", "companion.keras.train"])
def test_a_scripts_page_lists_only_what_its_all_exports(module_name):
    # A script's helpers are its own business; the reference lists the names a user calls.
    module = importlib.import_module(module_name)
    listed = [
        path.rpartition(".")[2]
        for kind, path in documented()
        if kind not in MODULE_DIRECTIVES and path.rpartition(".")[0] == module_name
    ]
    assert sorted(listed) == sorted(set(module.__all__) - {"BenchmarkResult"}), listed
    assert module.BenchmarkResult is importlib.import_module("companion.training").BenchmarkResult

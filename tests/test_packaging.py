"""The install files agree with each other, and importing companion stays light."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT_EXTRAS = ("tf-cpu", "book")


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pip_section(environment: dict) -> list[str]:
    for dependency in environment["dependencies"]:
        if isinstance(dependency, dict) and "pip" in dependency:
            return dependency["pip"]
    raise AssertionError("environment.yml has no pip: section")


def test_environment_yml_names_the_same_requirements_as_pyproject():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = pip_section(environment)
    editable = [line for line in pip if line.startswith("-e")]
    assert editable == [f"-e .[{','.join(ENVIRONMENT_EXTRAS)}]"]
    expected = list(PYPROJECT["project"]["dependencies"])
    for extra in ENVIRONMENT_EXTRAS:
        expected += PYPROJECT["project"]["optional-dependencies"][extra]
    assert sorted(line for line in pip if not line.startswith("-e")) == sorted(expected)


def test_constraints_pin_every_dependency_exactly():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[requirement_name(name)] = version
    assert pins["torch"] == "2.13.0"
    assert "tensorflow-cpu" in pins
    project = PYPROJECT["project"]
    needed = list(project["dependencies"])
    for extra in ("tf-cpu", "book", "test", "bench"):
        needed += project["optional-dependencies"][extra]
    missing = sorted({requirement_name(r) for r in needed} - set(pins))
    assert not missing, f"constraints.txt does not pin {missing}"


# Every top-level module is framework-free by design; only companion.torch and
# companion.keras may import a deep-learning framework.
FRAMEWORK_FREE = ["companion"] + sorted(
    f"companion.{path.stem}"
    for path in (ROOT / "companion").glob("*.py")
    if path.stem != "__init__"
)


@pytest.mark.parametrize("module", FRAMEWORK_FREE)
def test_import_does_not_load_a_deep_learning_framework(module):
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_version_is_exposed():
    import companion

    assert re.fullmatch(r"\d+\.\d+\.\d+", companion.__version__)


def test_the_installed_distribution_that_provides_companion_is_this_project():
    # "companion" on PyPI is an unrelated project: the distribution has a name of its own, and
    # the import name stays companion.
    from importlib import metadata

    name = PYPROJECT["project"]["name"]
    assert name != "companion"
    providers = metadata.packages_distributions().get("companion", [])
    assert name in providers, f"companion is provided by {providers}, not {name}"
    assert metadata.version(name) == __import__("companion").__version__

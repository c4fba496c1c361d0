"""Every run-time dependency has a lower and an upper bound, and the version installed here
(the one the suite just tested) is inside them.

The upper bounds stop below the next release that may break what we use: the next major,
or the next minor for a 0.x project. Raising one is a decision: install the new release,
run the suite, then move the bound. `packaging` comes with pytest; so does `tomli`, the
TOML reader on Python 3.10.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# Every extra but `dev` (the tools to work on the package) brings code paths of the
# package: its packages are run-time dependencies too.
TOOLS_EXTRA = "dev"
UPPER = frozenset({"<", "<=", "~=", "=="})
LOWER = frozenset({">", ">=", "~=", "=="})
# Bounded at the next minor although past 1.0: the limiter relies on how aiolimiter
# behaves (tests/test_limiter.py pins it), not only on its documented API.
NEXT_MINOR = frozenset({"aiolimiter"})


def project_table() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return table


def runtime_extras() -> list[str]:
    return [extra for extra in project_table()["optional-dependencies"] if extra != TOOLS_EXTRA]


def requirements(*extras: str, core: bool = True) -> list[Requirement]:
    project = project_table()
    lines: list[str] = list(project["dependencies"]) if core else []
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


RUNTIME = requirements(*runtime_extras())


def next_breaking_release(name: str, version: Version) -> Version:
    """The first release that may break us: the next major, or the next minor below 1.0
    (and for the libraries in NEXT_MINOR)."""
    if version.major == 0 or name in NEXT_MINOR:
        return Version(f"{version.major}.{version.minor + 1}")
    return Version(f"{version.major + 1}")


def installed(requirement: Requirement) -> Version:
    if requirement.marker is not None and not requirement.marker.evaluate():
        pytest.skip(f"{requirement.name} is not used on this platform")
    return Version(metadata.version(requirement.name))


def test_the_runtime_dependencies_include_the_libraries_the_package_is_built_on() -> None:
    names = {requirement.name for requirement in RUNTIME}
    assert {"aiohttp", "aiolimiter", "msgspec", "redis", "rich", "tenacity", "uvloop"} <= names


@pytest.mark.parametrize("requirement", RUNTIME, ids=str)
def test_each_runtime_dependency_has_both_bounds(requirement: Requirement) -> None:
    operators = {specifier.operator for specifier in requirement.specifier}
    assert operators & LOWER, f"{requirement}: no lower bound"
    assert operators & UPPER, f"{requirement}: no upper bound"


@pytest.mark.parametrize("requirement", RUNTIME, ids=str)
def test_installed_version_is_inside_the_bounds(requirement: Requirement) -> None:
    version = installed(requirement)
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{requirement.name} {version} is installed, outside {requirement.specifier}: "
        "test the new release, then move the bound"
    )


@pytest.mark.parametrize("requirement", RUNTIME, ids=str)
def test_upper_bound_stops_below_the_next_breaking_release(requirement: Requirement) -> None:
    breaking = next_breaking_release(requirement.name, installed(requirement))
    assert breaking not in requirement.specifier, f"{requirement} lets {breaking} in"


def test_dev_extra_repeats_the_runtime_bounds() -> None:
    """`make test` installs `.[dev]`: its copies of the extras' packages must not drift."""
    runtime = {requirement.name: requirement for requirement in RUNTIME}
    repeated = [r for r in requirements(TOOLS_EXTRA, core=False) if r.name in runtime]
    assert repeated, "the dev extra installs none of the optional run-time packages"
    for requirement in repeated:
        assert requirement.specifier == runtime[requirement.name].specifier, requirement

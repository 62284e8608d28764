"""pyproject.toml and environment.yml must install the same packages with the same ranges."""

import re
import sys

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import yaml

from conftest import ROOT

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    """'name >=1,<2; python_version < "3.11"' -> ('name', '>=1,<2'): conda has no environment markers,
    so environment.yml lists such a package unconditionally and only name and range are compared."""
    requirement = requirement.split(";")[0]
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, requirement
    return match.group(1).lower(), match.group(2).replace(" ", "")


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["course"] + extras["grade"] + extras["dev"]
    return dict(_split(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip section installs the project itself
            assert dep.get("pip") == ["-e ."], dep
            continue
        name, spec = _split(dep)
        if name not in NOT_PACKAGES:
            out[CONDA_TO_PIP.get(name, name)] = spec
    return out


def test_environment_yml_matches_pyproject():
    pip, conda = pip_requirements(), conda_requirements()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but not in environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but not in pyproject.toml"
    differing = {k: (pip[k], conda[k]) for k in pip if pip[k] != conda[k]}
    assert differing == {}, f"ranges differ: {differing}"


def test_required_packages_have_ranges_not_pins():
    pip = pip_requirements()
    for name in ("torch", "torchvision", "jupyterlab", "ipywidgets", "matplotlib", "seaborn", "nbval", "papermill"):
        assert name in pip, name
    for name, spec in pip.items():
        assert ">=" in spec and "<" in spec and "==" not in spec, f"{name}{spec}: use a lower bound and a major cap"


def test_the_library_does_not_bring_the_notebook_server():
    """On a JupyterHub image or Colab, installing the library must not replace their Jupyter."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_split(r)[0] for r in project["dependencies"]}
    tooling = {"jupyterlab", "papermill", "nbval", "nbconvert", "jupyter-server-mathjax", "ipykernel", "notebook"}
    assert core & tooling == set()
    assert tooling - {"notebook"} <= {_split(r)[0] for r in project["optional-dependencies"]["course"]}
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[course,grade,dev]"' in makefile


def test_markers_are_valid_and_split_off():
    assert _split('tomli>=2.0,<3; python_version < "3.11"') == ("tomli", ">=2.0,<3")
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(r.startswith("tomli") and 'python_version < "3.11"' in r for r in dev)


def test_ci_calls_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme


def test_every_known_failure_is_listed_in_the_readme():
    """A claim declared as a known failure is a promise to the reader: the README lists each one."""
    import nbformat

    readme = (ROOT / "README.md").read_text()
    table = readme.split("Every claim declared as a known failure is listed here", 1)[1].split("\n\n", 2)[1]
    declared = []
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if re.search(r"known_failure\s*=\s*(?!None\b)", code):
            declared.append(path.stem)
    listed = re.findall(r"^\| `(\d\d_\w+)` \|", table, flags=re.M)
    assert sorted(listed) == declared, f"README lists {listed}, notebooks declare {declared}"


def test_package_docstring_lists_every_module():
    from pathlib import Path

    import tutorial_lib

    modules = {p.stem for p in Path(tutorial_lib.__file__).parent.glob("*.py") if p.stem != "__init__"}
    missing = sorted(m for m in modules if f":mod:`tutorial_lib.{m}`" not in tutorial_lib.__doc__)
    assert not missing, f"tutorial_lib's docstring does not list {missing}"


def test_a_failed_venv_leaves_nothing_behind_and_names_the_package(tmp_path):
    """A half-made .venv (a python without pip) is removed; when venv fails, the message says what to install."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)  # not a virtual environment
    out = subprocess.run(["make", "env", "PYTHON=false"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "apt-get install python3-venv" in out.stderr and "nothing was left behind" in out.stderr
    assert not (tmp_path / ".venv").exists()

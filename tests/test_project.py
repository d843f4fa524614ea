"""Project-level checks: lint, API coverage, import hygiene, packaging (the wheel installed in a fresh virtual
environment outside the checkout runs the README's first example). The documentation site is checked in
``tests/test_docs_site.py``."""

import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import jaxprob

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_public_name_is_in_the_api_reference():
    api = {p.stem: p.read_text() for p in (ROOT / "docs" / "api").glob("*.md")}
    modules = [name for name in jaxprob.__all__ if isinstance(getattr(jaxprob, name), type(jaxprob))]
    assert modules, "no module namespaces exported"
    for name in modules:
        assert name in api and f"::: jaxprob.{name}" in api[name], f"docs/api/{name}.md is missing"
        module = importlib.import_module(f"jaxprob.{name}")
        assert hasattr(module, "__all__"), f"jaxprob.{name} has no __all__"
        for public in module.__all__:
            assert hasattr(module, public), f"jaxprob.{name}.__all__ lists a missing name {public}"
    for name in jaxprob.__all__:
        assert hasattr(jaxprob, name), name


def test_import_changes_no_jax_config():
    code = ("import jax; before = dict(jax.config.values); import jaxprob; "
            "after = dict(jax.config.values); "
            "changed = [k for k in before if before[k] != after.get(k)]; print(changed); assert not changed")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("*.md")))
def test_docs_pages_link_to_existing_files(path):
    for target in re.findall(r"\]\(([^)#:]+\.(?:md|png))\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


# ---- packaging ---------------------------------------------------------------------------------------------------
PACKAGE_DATA = ["jaxprob/data/faithful.csv", "jaxprob/data/alice29.txt", "jaxprob/data/README.md"]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The sdist and the wheel that `python -m build` makes (without isolation: no package index needed)."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    wheels, sdists = list(out.glob("jaxprob-*.whl")), list(out.glob("jaxprob-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0], sdists[0]


def test_wheel_and_sdist_hold_the_package_data_and_the_licence(dists):
    wheel, sdist = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in PACKAGE_DATA + ["jaxprob/__init__.py", "jaxprob/mixture.py"]:
        assert data in names, f"{data} is not in the wheel"
    assert not [n for n in names if n.startswith(("experiments/", "tests/", "benchmarks/"))], "non-library code"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: jax>=0.9.0" in metadata and "License-Expression: MIT" in metadata
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    for data in PACKAGE_DATA + ["LICENSE", "README.md", "pyproject.toml"]:
        assert data in members, f"{data} is not in the sdist"


def _first_readme_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert blocks, "the README has no python example"
    return blocks[0]


def test_wheel_installed_outside_the_checkout_runs_the_readme_example(dists, tmp_path):
    wheel, _ = dists
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "--ignore-installed", str(wheel)], capture_output=True, text=True,
                             timeout=300, env=env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    # then the dependencies come from this environment (no index): its site-packages is appended to the new one's
    # path; a path added by a .pth file is not a site directory, so this environment's own (editable) jaxprob is
    # not installed there, and the new site-packages, first on the path, holds the wheel's jaxprob
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_outer_site.pth").write_text("\n".join(sorted(deps)) + "\n")
    script = tmp_path / "readme_example.py"
    script.write_text("import jaxprob\nprint('JAXPROB_FILE', jaxprob.__file__)\n" + _first_readme_example())
    run = subprocess.run([str(python), str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    used = Path(run.stdout.split("JAXPROB_FILE ")[1].split("\n")[0])
    assert used.is_relative_to(venv) and not used.is_relative_to(ROOT), used
    assert "True" in run.stdout  # info.converged of the README's fit

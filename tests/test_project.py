"""Project-level checks: lint, strict documentation build, API coverage, import hygiene."""

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jaxprob

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_docs_build_strict_without_warnings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stderr, out.stderr


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

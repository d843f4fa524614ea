"""Every ```python block of the documentation pages and of the README runs: the blocks of a page in order, as one
script in a fresh namespace. All pages run in one separate interpreter (one JAX start-up, and programs compiled by
one page serve the next), which reports each page's outcome. It runs at XLA's default optimisation level (the rest
of the suite compiles at level 0, see ``tests/conftest.py``). The docstring examples are run by pytest's doctest
collection."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_level_env

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

RUNNER = r"""
import json, os, sys, traceback
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
results = {}
for name, code in json.loads(sys.stdin.read()).items():
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
        results[name] = "ok"
    except BaseException:
        results[name] = traceback.format_exc()[-3000:]
    plt.close("all")
print("RESULTS" + json.dumps(results))
"""


def _script(path: Path) -> str:
    return "\n".join(BLOCK.findall(path.read_text()))


PAGES_WITH_CODE = [p for p in PAGES if _script(p)]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    scripts = {p.name: _script(p) for p in PAGES_WITH_CODE}
    out = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(scripts), capture_output=True, text=True,
                         cwd=tmp_path_factory.mktemp("docs_examples"), timeout=1200,
                         env=default_level_env())
    marker = [line for line in out.stdout.splitlines() if line.startswith("RESULTS")]
    assert marker, f"the example runner crashed\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(marker[-1][len("RESULTS"):])


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_page_examples_run(path, outcomes):
    assert outcomes[path.name] == "ok", f"{path.name}: examples failed\n{outcomes[path.name]}"


def test_some_pages_have_examples():
    assert len(PAGES_WITH_CODE) >= 8

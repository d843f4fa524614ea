"""Every ```python block of the documentation pages and of the README runs (the blocks of a page in order, as
one script, in a fresh interpreter). The docstring examples are run by pytest's doctest collection."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _script(path: Path) -> str:
    return "\n".join(BLOCK.findall(path.read_text()))


@pytest.mark.parametrize("path", [p for p in PAGES if _script(p)], ids=lambda p: p.name)
def test_page_examples_run(path, tmp_path):
    code = "import matplotlib\nmatplotlib.use('Agg')\n" + _script(path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, f"{path.name}: examples failed\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def test_some_pages_have_examples():
    assert sum(bool(_script(p)) for p in PAGES) >= 8

"""Copy the gallery figures of an experiments run, and their metrics, into the documentation.

``python -m experiments._docs_figures OUT`` copies ``OUT/<study>/*.png`` and ``OUT/<study>/metrics.json`` to
``docs/figures/gallery/<study>/``: the figures the gallery and the topic pages show, and the metrics that the
numbers quoted in those pages are tested against (``tests/test_docs_site.py``). Run it after
``python -m experiments all --out OUT``; figures a study no longer makes are removed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "figures" / "gallery"


def copy_figures(out: Path) -> int:
    """Copy every study's figures and metrics.json from `out`; returns the number of figures copied."""
    n = 0
    for metrics in sorted(Path(out).glob("*/metrics.json")):
        study = metrics.parent
        target = DOCS / study.name
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*.png"):
            if not (study / old.name).exists():
                old.unlink()
        for png in sorted(study.glob("*.png")):
            shutil.copyfile(png, target / png.name)
            n += 1
        shutil.copyfile(metrics, target / "metrics.json")
    return n


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
    print(f"copied {copy_figures(out)} figures from {out} to {DOCS}")

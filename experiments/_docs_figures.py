"""Copy the gallery figures of an experiments run into the documentation.

``python -m experiments._docs_figures OUT`` copies ``OUT/<study>/*.png`` to ``docs/figures/gallery/<study>/``,
the files the topic pages of the documentation show. Run it after ``python -m experiments all --out OUT``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "figures" / "gallery"


def copy_figures(out: Path) -> int:
    n = 0
    for png in sorted(Path(out).glob("*/*.png")):
        target = DOCS / png.parent.name / png.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        n += 1
    return n


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
    print(f"copied {copy_figures(out)} figures from {out} to {DOCS}")

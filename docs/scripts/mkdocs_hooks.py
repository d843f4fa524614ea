"""MkDocs hooks of the jaxprob site (named in ``mkdocs.yml``; this folder is excluded from the site itself).

* MathJax is served by the site, not by a CDN: ``on_files`` adds MathJax 3's ``tex-svg-full.js`` (every TeX
  extension and the SVG fonts in one file, so nothing is fetched while a page renders) from the installed
  ``django-static-mathjax`` package (a plain copy of the MathJax 3.2.2 distribution; it needs no Django) as
  ``javascripts/mathjax/tex-svg-full.js``.
* The navigation is written out in ``mkdocs.yml``. ``on_config`` drops the entries whose page is not in ``docs/``
  yet (pages that other branches add) and appends any ``api/*.md`` page that the list does not name, so a new
  module's reference page is never left out of the navigation.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.jaxprob")

MATHJAX_FILE = "tex-svg-full.js"
MATHJAX_URI = f"javascripts/mathjax/{MATHJAX_FILE}"


def mathjax_source() -> Path:
    """Path of MathJax's combined TeX-to-SVG file inside the installed ``django-static-mathjax`` package."""
    spec = importlib.util.find_spec("mathjax")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "static" / "mathjax" / "es5" / MATHJAX_FILE
        if path.is_file():
            return path
    raise FileNotFoundError("MathJax is served from the package django-static-mathjax: "
                            "pip install -e '.[docs]' (or '.[test]')")


def _prune(nav, docs_dir: Path):
    kept = []
    for item in nav:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                value = _prune(value, docs_dir)
                if value:
                    kept.append({title: value})
            elif "://" in value or (docs_dir / value).is_file():
                kept.append(item)
            else:
                log.info("nav: %s is not in docs/ (yet); left out", value)
        elif isinstance(item, str) and (docs_dir / item).is_file():
            kept.append(item)
    return kept


def _api_section(nav):
    for item in nav:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                if any(isinstance(v, dict) and str(next(iter(v.values()))).startswith("api/") for v in value):
                    return value
                found = _api_section(value)
                if found is not None:
                    return found
    return None


def _listed(nav):
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from _listed(value)
        else:
            yield value


def on_config(config):
    docs_dir = Path(config["docs_dir"])
    nav = _prune(config["nav"] or [], docs_dir)
    api = _api_section(nav)
    if api is not None:
        listed = set(_listed(nav))
        for page in sorted(docs_dir.glob("api/*.md")):
            uri = page.relative_to(docs_dir).as_posix()
            if uri not in listed:
                api.append({page.stem: uri})
    config["nav"] = nav
    return config


def on_files(files, config):
    files.append(File.generated(config, MATHJAX_URI, abs_src_path=str(mathjax_source())))
    return files

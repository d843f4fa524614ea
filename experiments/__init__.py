"""Reproducible studies on real offline data. Run ``python -m experiments all`` or ``python -m experiments NAME``.

Every study is a module of this package (names not starting with ``_``) defining

* ``DESCRIPTION``: one line;
* ``DEFAULTS``: a dict of the study's sizes and settings (overridable with ``--param key=value``);
* ``run(out_dir: pathlib.Path, seed: int, **params) -> dict``: writes its PNG figures into ``out_dir`` and returns
  the metrics (JSON-serialisable, deterministic for a given seed: no timings in them).

The runner adds the seed, the parameters and the library versions, and writes ``metrics.json`` beside the figures.
"""

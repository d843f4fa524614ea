"""Command line: ``python -m experiments {all | NAME ...} [--seed S] [--out DIR] [--param key=value ...]``.

Without a study name it prints this help and the list of studies; ``all`` runs every study.
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib
import json
import pkgutil
import platform
import sys
import textwrap
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import experiments  # noqa: E402
from experiments._common import Progress, report, to_jsonable  # noqa: E402


def available() -> dict:
    """Map of study name -> module, discovered in the package (modules not starting with '_')."""
    names = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_"))
    return {name: importlib.import_module(f"experiments.{name}") for name in names}


def _parse_params(items):
    params = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--param expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw
    return params


def run_study(name, module, out_root: Path, seed: int, overrides: dict) -> dict:
    """Run one study into ``out_root/name``; writes ``metrics.json`` and ``timing.json`` and returns the record.

    ``metrics.json`` holds what the study computed, its seed, parameters, figures and the library versions, and no
    path or time: two runs with the same seed write the same bytes, whatever the output folder.
    """
    import jax

    import jaxprob

    params = dict(module.DEFAULTS)
    unknown = set(overrides) - set(params)
    if unknown:
        raise SystemExit(f"{name}: unknown parameter(s) {sorted(unknown)}; known: {sorted(params)}")
    params.update(overrides)
    out_dir = out_root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report("running")
    metrics = module.run(out_dir, seed=seed, **params)
    # wall-clock figures vary from run to run: they go to timing.json, so metrics.json is bit-identical per seed
    timing = dict(metrics.pop("timing", {}))
    timing["study_seconds"] = time.perf_counter() - t0
    (out_dir / "timing.json").write_text(json.dumps(to_jsonable(timing), indent=2, sort_keys=True) + "\n")
    record = {
        "experiment": name,
        "description": module.DESCRIPTION,
        "seed": seed,
        "params": params,
        "versions": {
            "jaxprob": jaxprob.__version__,
            "jax": jax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "metrics": metrics,
        "figures": sorted(p.name for p in out_dir.glob("*.png")),
    }
    (out_dir / "metrics.json").write_text(json.dumps(to_jsonable(record), indent=2, sort_keys=True) + "\n")
    return record


def collect_records(out_root: Path) -> list:
    """The records of every study found in ``out_root`` (its ``*/metrics.json``), by study name."""
    records = []
    for path in sorted(Path(out_root).glob("*/metrics.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("experiment") == path.parent.name:
            records.append(rec)
    return records


def write_index(out_root: Path, records=None):
    """``index.md`` and ``index.html`` over every study in ``out_root``: a run of one study adds to (or replaces its
    own section of) the index of earlier runs instead of rewriting it with that study alone."""
    records = collect_records(out_root) if records is None else records
    lines = ["# jaxprob experiments", ""]
    for rec in records:
        lines += [f"## {rec['experiment']}", "", rec["description"], "", f"seed {rec['seed']}, "
                  f"parameters `{json.dumps(to_jsonable(rec['params']), sort_keys=True)}`", ""]
        lines += [f"![{fig}]({rec['experiment']}/{fig})" for fig in rec["figures"]]
        lines += ["", f"Metrics: [{rec['experiment']}/metrics.json]({rec['experiment']}/metrics.json)", ""]
    (out_root / "index.md").write_text("\n".join(lines))
    write_html_index(out_root, records)


def write_html_index(out_root: Path, records):
    """``index.html``: every study's description, parameters, figures and headline metrics on one page."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>jaxprob experiments</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "img{max-width:100%;border:1px solid #ccc;margin:4px 0}pre{background:#f6f6f6;padding:6px;"
        "white-space:pre-wrap;font-size:12px}nav a{margin-right:1em}</style></head><body>",
        "<h1>jaxprob experiments</h1><nav>",
    ]
    parts += [f"<a href='#{html.escape(r['experiment'])}'>{html.escape(r['experiment'])}</a>" for r in records]
    parts.append("</nav>")
    for rec in records:
        name = html.escape(rec["experiment"])
        parts.append(f"<h2 id='{name}'>{name}</h2><p>{html.escape(rec['description'])}</p>")
        params = json.dumps(to_jsonable(rec["params"]), sort_keys=True)
        parts.append(f"<p>seed {rec['seed']}, parameters <code>{html.escape(params)}</code>, "
                     f"<a href='{name}/metrics.json'>metrics.json</a></p>")
        parts += [f"<figure><img src='{name}/{html.escape(f)}' alt='{html.escape(f)}'>"
                  f"<figcaption>{html.escape(f)}</figcaption></figure>" for f in rec["figures"]]
        metrics = json.dumps(to_jsonable(rec["metrics"]), indent=1, sort_keys=True)
        if len(metrics) > 4000:
            metrics = metrics[:4000] + "\n..."
        parts.append(f"<details><summary>metrics</summary><pre>{html.escape(metrics)}</pre></details>")
    parts.append("</body></html>")
    (out_root / "index.html").write_text("\n".join(parts))


def _parser(studies: dict) -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:26s} {textwrap.shorten(m.DESCRIPTION, 72)}" for name, m in studies.items())
    parser = argparse.ArgumentParser(
        prog="python -m experiments", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Run jaxprob's studies on real offline data: figures, metrics.json and "
                                  "timing.json per study in DIR/<study>/, and an index of every study in DIR "
                                  "(index.md, index.html).", 100),
        epilog=f"studies:\n{listing}\n\nexamples:\n  python -m experiments all\n"
               "  python -m experiments kmeans_quantization --seed 1 --out out2 --param 'ks=[2,4,8]'")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="'all' for every study, or one or more study names (listed below)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the study's PRNG keys and data splits (default 0); the same seed gives a "
                             "bit-identical metrics.json")
    parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                        help="output folder (default: out); each study writes DIR/<study>/, and the index "
                             "DIR/index.html lists every study found in DIR")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a study parameter, VALUE read as a Python literal (repeatable; only with "
                             "a single study name; quote it in the shell: --param 'ks=[2,4,8]')")
    parser.add_argument("--list", action="store_true", help="list the studies with their parameters and exit")
    return parser


def main(argv=None):
    studies = available()
    parser = _parser(studies)
    args = parser.parse_args(argv)
    if args.list:
        for name, module in studies.items():
            print(f"{name:28s} {module.DESCRIPTION}")
            print(f"{'':28s} parameters: {json.dumps(to_jsonable(module.DEFAULTS), sort_keys=True)}")
        return 0
    if not args.names:
        parser.print_help()
        return 0
    if "all" in args.names:
        if len(args.names) != 1:
            raise SystemExit("'all' runs every study: give it alone, or name the studies")
        names = list(studies)
    else:
        names = list(dict.fromkeys(args.names))
    for name in names:
        if name not in studies:
            raise SystemExit(f"unknown study {name!r}; known: {', '.join(studies)}")
    overrides = _parse_params(args.param)
    if overrides and len(names) != 1:
        raise SystemExit("--param needs exactly one study name")
    args.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(names)}] {name}: {studies[name].DESCRIPTION}", flush=True)
        with Progress(name):
            run_study(name, studies[name], args.out, args.seed, overrides)
        print(f"      done in {time.perf_counter() - t0:.1f} s -> {args.out / name}", flush=True)
    write_index(args.out)
    print(f"all done in {time.perf_counter() - t_all:.1f} s; index: {args.out / 'index.md'} "
          f"and {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

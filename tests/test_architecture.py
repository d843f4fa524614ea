"""The layering rules of docs/architecture.md, and the engine's promises about compilation.

* a module imports only public names of another module (private helpers become public where they belong);
* a second call with the same shapes does not retrace the engine's step or the mixture fit (chex);
* a family is one module: the engine and the drivers name no family but the default Gaussian.
"""

import ast
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import em, families, mixture

PKG = Path(__file__).resolve().parents[1] / "jaxprob"


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _private_uses(pkg: Path):
    """(file, line, what) for every use of another module's private name (imports and attribute access)."""
    modules = {p.stem for p in pkg.glob("*.py")} | {p.name for p in pkg.iterdir() if (p / "__init__.py").exists()}
    hits = []
    for path in sorted(pkg.rglob("*.py")):
        me = path.stem if path.parent == pkg else path.relative_to(pkg).parts[0]
        tree = ast.parse(path.read_text())
        alias = {m: m for m in modules}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 0 and not mod.startswith("jaxprob"):
                    continue
                target = mod.split(".")[-1] if mod not in ("", "jaxprob") else None
                for a in node.names:
                    if target is None and a.name in modules:
                        alias[a.asname or a.name] = a.name
                    elif target and target != me and _private(a.name) and target in modules | {"gaussian"}:
                        hits.append((path.name, node.lineno, f"from {mod} import {a.name}"))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[0] == "jaxprob" and len(parts) > 1 and a.asname:
                        alias[a.asname] = parts[1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in alias:
                if alias[node.value.id] != me and _private(node.attr):
                    hits.append((path.name, node.lineno, f"{node.value.id}.{node.attr}"))
    return hits


def test_no_module_reaches_into_another_modules_private_names():
    assert _private_uses(PKG) == []


def test_the_private_name_check_can_fail(tmp_path):
    pkg = tmp_path / "jaxprob"
    pkg.mkdir()
    (pkg / "a.py").write_text("def _helper():\n    return 1\n")
    (pkg / "b.py").write_text("from jaxprob.a import _helper\nfrom jaxprob import a\nx = a._helper()\n")
    assert [h[2] for h in _private_uses(pkg)] == ["from jaxprob.a import _helper", "a._helper"]


def test_engine_and_drivers_name_no_family_but_the_default():
    # adding a family touches no other module: the engine and the drivers import no family module but the
    # Gaussian default
    for name in ("em.py", "scale.py", "selection.py", "mixture.py", "bayes.py"):
        for node in ast.walk(ast.parse((PKG / name).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxprob.families"):
                assert node.module == "jaxprob.families.gaussian", (name, node.module)
                assert all(a.name in ("gaussian", "check_reg_covar", "make_params") for a in node.names), name


def test_public_step_does_not_retrace():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 3)), jnp.float32)
    model = mixture.make_gmm(np.full(2, 0.5), rng.normal(size=(2, 3)), np.ones((2, 3)), "diag")
    prep = em.prepare(x, model.family)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, m):
        return em.step(p, m)

    m = model
    for _ in range(3):  # new values, same shapes and family: one trace
        m, _ = step(prep, m)
    other = mixture.make_gmm(np.full(2, 0.5), rng.normal(size=(2, 3)), np.ones((2, 3)), "diag", reg_covar=1e-3)
    step(prep, other)  # reg_covar is a traced leaf of the family: still one trace
    chex.clear_trace_counter()


def test_fit_compiles_once_per_shape():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 2)).astype(np.float32)
    fam = families.gaussian("spherical")
    mixture.fit(x, 2, key=jax.random.key(0), family=fam, max_iter=10)
    before = mixture._fit_jit._cache_size()
    mixture.fit(x + 1.0, 2, key=jax.random.key(1), family=families.gaussian("spherical", 1e-3), max_iter=10,
                tol=1e-4)
    assert mixture._fit_jit._cache_size() == before


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_em_step_on_prepared_data_equals_fit_iteration(ct):
    # the public step is the loop's step: max_iter iterations of fit from a start = that many em.step calls
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-2, 1, (50, 2)), rng.normal(2, 0.5, (50, 2))])
    with jax.enable_x64(True):
        start = mixture.init(jnp.asarray(x), 2, key=jax.random.key(0), covariance_type=ct)
        fitted, info = mixture.fit(jnp.asarray(x), 2, init_params=start, max_iter=4, tol=0.0)
        prep = em.prepare(jnp.asarray(x), start.family)
        m, lls = start, []
        for _ in range(4):
            m, ll = em.step(prep, m)
            lls.append(float(ll))
    np.testing.assert_allclose(np.asarray(info.trace), lls, rtol=1e-12)
    for u, v in zip(jax.tree.leaves(fitted.components), jax.tree.leaves(m.components), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-10, atol=1e-12)

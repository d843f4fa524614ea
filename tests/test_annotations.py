"""Every public function of jaxprob has type annotations on its parameters and its return (issue #21)."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import jaxprob

_FAMILY_MODULES = ("gaussian", "bernoulli", "categorical", "poisson", "student_t", "linear_regression")


def _public_modules() -> list[types.ModuleType]:
    mods = [getattr(jaxprob, name) for name in jaxprob.__all__ if inspect.ismodule(getattr(jaxprob, name))]
    mods += [importlib.import_module(f"jaxprob.families.{name}") for name in _FAMILY_MODULES]
    mods += [jaxprob.families, jaxprob.em]
    unique = {m.__name__: m for m in mods}
    return [unique[name] for name in sorted(unique)]


def _public_functions() -> dict[str, tuple[types.ModuleType, types.FunctionType]]:
    """`module.name` -> (module, function) for every function listed in a public module's `__all__`."""
    out = {}
    for module in _public_modules():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                out[f"{module.__name__}.{name}"] = (module, obj)
    return out


def missing_annotations(fn) -> list[str]:
    """Names of the parameters of `fn` without an annotation (`self`/`cls` exempt), plus "return" if unannotated."""
    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


PUBLIC = _public_functions()


def test_the_checker_flags_what_is_missing():
    def bare(x, *args, key=None, **kwargs):
        return x

    def partial(x: int, y) -> int:
        return x

    def no_return(x: int):
        return x

    def full(x: int, *args: object, key: str | None = None, **kwargs: object) -> int:
        return x

    class Model:
        def method(self, x: int) -> int:
            return x

    assert missing_annotations(bare) == ["x", "args", "key", "kwargs", "return"]
    assert missing_annotations(partial) == ["y"]
    assert missing_annotations(no_return) == ["return"]
    assert missing_annotations(full) == []
    assert missing_annotations(Model.method) == []


def test_the_public_functions_are_found():
    # a broken discovery (no module, no function) would make the parametrised test below pass vacuously
    assert len(PUBLIC) > 200
    for name in ("jaxprob.mixture.fit", "jaxprob.em.prepare", "jaxprob.families.gaussian.make_params",
                 "jaxprob.densities.gaussian_log_prob", "jaxprob.hmm.viterbi", "jaxprob.nn.train"):
        assert name in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_function_is_annotated(name):
    _, fn = PUBLIC[name]
    assert missing_annotations(fn) == [], f"{name} lacks annotations for {missing_annotations(fn)}"


def test_annotations_name_real_objects():
    # annotations are strings (`from __future__ import annotations`): evaluate each one in its module so that a
    # misspelt or unimported name fails here; names imported only under TYPE_CHECKING are supplied
    from matplotlib.axes import Axes

    failures = []
    for name, (_, fn) in sorted(PUBLIC.items()):
        namespace = dict(vars(importlib.import_module(fn.__module__)))
        namespace.setdefault("Axes", Axes)
        for param, annotation in fn.__annotations__.items():
            if isinstance(annotation, str):
                try:
                    eval(annotation, namespace)
                except Exception as err:
                    failures.append(f"{name}({param}: {annotation}): {err!r}")
    assert failures == []

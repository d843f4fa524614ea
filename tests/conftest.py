"""Shared test helpers. Float64 checks run inside ``with jax.enable_x64(True):`` blocks, never by a global flag.

Compiler level: the suite compiles several hundred small XLA programs and runs each for milliseconds, so compilation
dominates its time. LLVM's optimisation level 0 (``--xla_backend_optimization_level=0``) compiles them faster and
cuts the suite by about a fifth; it changes how fast the compiled code runs, not what it computes (XLA enables no
fast-math on CPU at any level). pytest loads this file before any test module imports JAX. A level already set in
``XLA_FLAGS`` is kept. The examples of the documentation pages run in a subprocess at XLA's default level
(``tests/test_docs_examples.py``), so the code as users run it is tested too.
"""

import faulthandler
import os
import signal
import sys
import threading

import numpy as np
import pytest

O0_FLAG = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {O0_FLAG}".strip()
    os.environ["JAXPROB_TESTS_SET_O0"] = "1"  # inherited by pytest-xdist workers and subprocesses


# jaxlib 0.10.2 (and 0.11.0) fuse some multiply-reduce programs into XNNPACK "ynn" fusions that can crash with a
# segmentation fault on an XLA worker thread (jax-ml/jax#39257, #40412; fixed in XLA after that release). The crash is
# asynchronous, so Python's traceback points at whatever the main thread did next (compiling a later program, in
# the suite's crashes). An empty fusion type turns that path off; versions before 0.10.1 do not know the flag.
YNN_OFF_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _jaxlib_version():
    from importlib.metadata import version

    return tuple(int(p) for p in version("jaxlib").split(".")[:3] if p.isdigit())


if "xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", "") and _jaxlib_version() >= (0, 10, 1):
    os.environ["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {YNN_OFF_FLAG}".strip()


def default_level_env():
    """The environment with the optimisation level set above removed (XLA's default level)."""
    env = dict(os.environ)
    if env.pop("JAXPROB_TESTS_SET_O0", None):
        env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if f != O0_FLAG)
    return env


# A test that runs this long is stuck (the slowest test takes about a minute on two loaded cores). The watchdog
# prints every thread's Python stack to the terminal and kills its worker, pytest-xdist reports the test as failed
# and starts a new worker, so a deadlock costs minutes and names its test instead of using up CI's whole time. It
# writes to a copy of the original stderr because pytest captures file descriptor 2 while a test runs.
HANG_SECONDS = float(os.environ.get("JAXPROB_TEST_HANG_SECONDS", "480"))
_STDERR = None


def pytest_configure(config):
    global _STDERR
    _STDERR = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if os.environ.get("JAXPROB_TEST_TRACE"):  # name each test, to find the one a crash happened in
        print(f"\n[test] {item.nodeid}", file=_STDERR, flush=True)

    def stuck():
        print(f"\n[watchdog] {item.nodeid} still running after {HANG_SECONDS:.0f} s; every thread's stack:",
              file=_STDERR, flush=True)
        faulthandler.dump_traceback(file=_STDERR, all_threads=True)
        _STDERR.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    timer = threading.Timer(HANG_SECONDS, stuck)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_blobs(rng, n_per, means, scale=1.0, dtype=np.float64):
    """Gaussian blobs around the given means; returns (x, labels)."""
    means = np.asarray(means, dtype=float)
    x = np.concatenate([m + scale * rng.standard_normal((n_per, means.shape[1])) for m in means])
    y = np.repeat(np.arange(len(means)), n_per)
    return x.astype(dtype), y

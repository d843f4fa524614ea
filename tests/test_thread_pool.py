"""Full-covariance fits must not deadlock XLA's CPU thread pool.

jaxlib 0.10's CPU LAPACK kernels (Cholesky, triangular solve) split a large enough batch over the intra-op thread
pool they already run on and wait for the pieces. Two such calls side by side in one program can take every thread of
a two-core machine and wait for ever (every thread on a futex at 0% CPU). The families therefore factorise all
covariances of an M-step in one chain of batched calls (`families.gaussian.regularized_cholesky`). The batch and the
dimension here (10 components of 48 dimensions, and the ridge candidates) are above the kernels' threshold for
splitting; at 16 dimensions nothing is split and nothing could hang. Each fit runs in a subprocess with a time limit,
so a deadlock fails the test instead of stopping the suite.
"""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    from jaxprob import bayesian_mixture, hmm, mixture
    from jaxprob.families import student_t

    x = np.random.default_rng(0).normal(size=(600, 48)).astype(np.float32)
    key = jax.random.key(0)
    fits = {
        "full": lambda: mixture.fit(x, 10, covariance_type="full", reg_covar=1e-3, key=key, n_init=2, max_iter=3),
        "tied": lambda: mixture.fit(x, 10, covariance_type="tied", reg_covar=1e-3, key=key, max_iter=3),
        "student_t": lambda: mixture.fit(x, 10, family=student_t(), key=key, max_iter=3),
        "bayesian": lambda: bayesian_mixture.fit(x, 10, key=key, max_iter=3, reg_covar=1e-3),
        "hmm": lambda: hmm.fit(x, 10, key=key, max_iter=3),
    }
    model, info = jax.block_until_ready(fits[sys.argv[1]]())
    print("finished", int(info.n_iter))
    """
)


@pytest.mark.parametrize("case", ["full", "tied", "student_t", "bayesian", "hmm"])
def test_full_covariance_fit_at_48_dimensions_finishes(case):
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {case} fit did not finish in 240 s (a thread-pool deadlock)")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "finished"
    assert int(out.stdout.split()[1]) >= 1

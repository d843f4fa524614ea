"""Past one machine: two processes on localhost, JAX's own multi-process runtime (`jax.distributed`) and CPU
collectives (gloo), each process holding half of the data.

The sharded EM and k-means drivers of `jaxprob.scale` run on a mesh spanning both processes and must give the
parameters that one process gives on all of the data, to 1e-5. The children set the collectives option themselves
(the library sets no `jax.config` option); the parent only starts them, on a free port, with a timeout.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import mixture, scale

ROOT = Path(__file__).resolve().parents[1]
N, D, K = 400, 3, 3
TIMEOUT_S = 240

CHILD = r"""
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
address, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jax.distributed.initialize(coordinator_address=address, num_processes=2, process_id=pid,
                           initialization_timeout=120)
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxprob import mixture, scale

sys.path.insert(0, sys.argv[4])
from test_multiprocess import data, starts

x, init = data(), starts()
mesh = scale.sample_mesh()
assert mesh.size == 2 and jax.process_count() == 2
half = x.shape[0] // 2
local = x[pid * half:(pid + 1) * half]  # this process holds only its half
xg = jax.make_array_from_process_local_data(NamedSharding(mesh, P(mesh.axis_names[0], None)), local)
gmm, info = scale.fit_sharded(xg, init["k"], mesh=mesh, init_params=mixture.make_gmm(*init["gmm"]), max_iter=8,
                              tol=0.0)
km, kinfo = scale.kmeans_fit_sharded(xg, init["k"], mesh=mesh, init_centroids=init["centroids"], max_iter=10,
                                     tol=0.0)
res = {"weights": gmm.weights, "means": gmm.means, "covariances": gmm.covariances, "ll": info.log_likelihood,
       "centroids": km.centroids, "inertia": km.inertia, "n_iter": kinfo.n_iter}
json.dump({k: np.asarray(v).tolist() for k, v in res.items()}, open(out, "w"))
jax.distributed.shutdown()
"""


def data():
    rng = np.random.default_rng(11)
    centers = np.array([[-4.0, 0.0, 1.0], [4.0, 1.0, 0.0], [0.0, 5.0, -2.0]])
    return (centers[rng.integers(0, K, N)] + rng.normal(size=(N, D))).astype(np.float32)


def starts():
    x = data()
    means = x[[0, 150, 300]]
    covs = np.stack([np.eye(D, dtype=np.float32)] * K)
    return {"k": K, "gmm": (np.full(K, 1 / K, np.float32), means, covs), "centroids": x[[1, 2, 3]]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process():
    x, init = jnp.asarray(data()), starts()
    gmm, info = scale.fit_sharded(x, K, init_params=mixture.make_gmm(*init["gmm"]), max_iter=8, tol=0.0)
    km, kinfo = scale.kmeans_fit_sharded(x, K, init_centroids=init["centroids"], max_iter=10, tol=0.0)
    # an independent path for the EM reference: the single-device mixture.fit from the same start
    gmm_ref, _ = mixture.fit(x, K, init_params=mixture.make_gmm(*init["gmm"]), max_iter=8, tol=0.0)
    return {"weights": gmm.weights, "means": gmm.means, "covariances": gmm.covariances, "ll": info.log_likelihood,
            "centroids": km.centroids, "inertia": km.inertia, "n_iter": kinfo.n_iter}, gmm_ref


def _run_children(tmp_path):
    """Start the two processes on a free port; returns their outputs, or None when the port was taken meanwhile."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    outs = [tmp_path / f"out{pid}.json" for pid in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, address, str(pid), str(outs[pid]), str(ROOT / "tests")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for pid in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:  # a child left waiting for its peer is stopped, never left behind
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode for p in procs) and any("in use" in log.lower() for log in logs):
        return None
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    return [json.loads(o.read_text()) for o in outs]


@pytest.mark.skipif(sys.platform != "linux", reason="gloo collectives on localhost are tested on Linux")
def test_two_processes_give_the_parameters_of_one(tmp_path):
    got = _run_children(tmp_path) or _run_children(tmp_path)
    assert got is not None, "no free port for the coordinator"
    ref, gmm_ref = _one_process()
    for g in got:
        for name, value in ref.items():
            np.testing.assert_allclose(np.asarray(g[name]), np.asarray(value), rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(np.asarray(ref["means"]), np.asarray(gmm_ref.means), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ref["covariances"]), np.asarray(gmm_ref.covariances), rtol=1e-5, atol=1e-5)
    # the fits moved away from their starts: the comparison is not of two unchanged inputs
    assert np.abs(np.asarray(ref["means"]) - starts()["gmm"][1]).max() > 0.1
    assert np.abs(np.asarray(ref["centroids"]) - starts()["centroids"]).max() > 0.1

"""The gallery: every study runs (at reduced sizes), its metrics meet stated tolerances, and two runs with the same
seed write bit-identical metrics JSON.

The reduced sizes keep the whole module to about a minute on 2 CPU cores; the default sizes are the ones of
``python -m experiments all`` (the README's demonstration).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.__main__ import available, main, run_study

STUDIES = available()

# reduced parameters per study (merged into the study's DEFAULTS by the runner)
FAST = {
    "ar_faithful": {"max_order": 3, "horizon": 5, "n_acf": 5},
    "autoencoder_digits": {"data": "digits", "n_train": 600, "n_test": 200, "n_epochs": 2, "linear_steps": 60,
                           "n_mixture": 600},
    "classification": {"n_per_class": 60, "n_epochs": 25},
    "kde_faithful": {"n_scales": 8, "grid": 40},
    "kmeans_initialization": {"n_restarts": 40},
    "kmeans_quantization": {"ks": [2, 8, 32], "n_fit": 3000, "max_iter": 20},
    "markov_text": {"orders": [0, 1, 2], "smoothings": [0.01], "temperatures": [1.0], "n_samples": 1},
    "mixture_anomaly_shuttle": {"n_init": 1},
    "mixture_digits_bayes": {"components": [2]},
    "mixture_faithful": {"n_init": 2},
    "mixture_model_selection": {"max_components": 3, "n_init": 1},
    "regression_mixture": {},
    "regression_noise": {},
    "vae_mnist": {"data": "digits", "n_train": 600, "n_val": 100, "n_test": 200, "hidden": [32], "latent_size": 2,
                  "n_epochs": 4, "batch_size": 64, "learning_rate": 3e-3, "elbo_samples": 2, "iwae_ks": [1, 10],
                  "n_prior_samples": 200, "latent_2d_epochs": 1},  # 2-d codes: the 2-d models reuse the programs
}


def _run(name, out):
    return run_study(name, STUDIES[name], out, 0, FAST[name])["metrics"]  # unknown parameters raise


def test_every_study_has_fast_settings_and_checks():
    assert set(STUDIES) == set(FAST) == set(CHECKS), "a study was added or removed: give it fast settings and checks"


# ---- stated tolerances, one function per study -------------------------------------------------------------
def check_mixture_faithful(m):
    means = np.array(m["means"])  # sorted by eruption duration; references: the classic two-cluster solution
    np.testing.assert_allclose(means, [[2.04, 54.5], [4.29, 80.0]], atol=0.1)
    assert m["converged"] and m["ll_monotone"]


def check_mixture_model_selection(m):
    for crit in ("bic", "aic"):
        for values in m[crit].values():
            assert np.all(np.isfinite(values))
        best = m[f"best_{crit}"]
        assert best["value"] == pytest.approx(min(min(v) for v in m[crit].values()))
    assert m["best_bic"]["n_components"] >= 2  # Old Faithful is not one Gaussian
    assert m["best_heldout"]["n_components"] >= 2
    for ct, values in m["heldout_log_likelihood"].items():
        assert values[1] > values[0], f"{ct}: two components must beat one on held-out data"


def check_mixture_anomaly_shuttle(m):
    assert m["roc_auc"] > 0.99 and m["recall"] > 0.9 and m["precision"] > 0.8


def check_mixture_digits_bayes(m):
    assert min(m["accuracy"].values()) > 0.95


def check_kmeans_quantization(m):
    per_k = m["per_k"]
    psnr = [r["psnr_db"] for r in per_k]
    assert all(b > a for a, b in zip(psnr, psnr[1:], strict=False)), f"PSNR must rise with k: {psnr}"
    n = m["n_pixels"]
    for r in per_k:
        assert r["bits"] == pytest.approx(n * np.log2(r["k"]) + 24 * r["k"])
        assert r["compression_ratio"] == pytest.approx(24 * n / r["bits"])


def check_kmeans_initialization(m):
    assert m["kmeans++"]["fraction_within_1pct_of_best"] > m["random"]["fraction_within_1pct_of_best"]
    assert m["kmeans++"]["median"] <= m["random"]["median"]
    assert m["bad_run_inertia"] > m["good_run_inertia"]


def check_kde_faithful(m):
    for dim in ("one_d", "two_d"):
        held = m[dim]["held-out"]["valid_mean_log_lik"]
        for rule in ("scott", "silverman"):
            assert held >= m[dim][rule]["valid_mean_log_lik"] - 0.02


def check_ar_faithful(m):
    orders = m["orders"]
    assert m["lag1_autocorrelation"] < -0.4  # long and short waits alternate
    assert orders["1"]["bic"] < orders["0"]["bic"]
    assert orders["1"]["heldout_mean_log_lik"] > orders["0"]["heldout_mean_log_lik"]
    assert -0.7 < orders["1"]["coef"][0] < -0.4 and orders["1"]["stationary"]
    assert m["acf"]["max_abs_difference"] < 0.2


def check_markov_text(m):
    ppl = m["valid_perplexity"]
    assert ppl["order=1,smoothing=0.01"] < ppl["order=0,smoothing=0.01"]  # bigram beats unigram
    assert m["stationary_residual"] < 1e-6


def check_regression_noise(m):
    for fit, sigma in zip(m["fits"], m["true"]["sigmas"], strict=True):
        assert fit["closed_form"]["sigma_hat"] == pytest.approx(sigma, rel=0.15)
        assert fit["closed_form"]["slope"] == pytest.approx(m["true"]["slope"], abs=0.25)


def check_regression_mixture(m):
    slopes = sorted(f["slope"] for f in m["fitted"])
    np.testing.assert_allclose(slopes, sorted(t["slope"] for t in m["true"]), atol=0.3)
    assert m["mean_log_likelihood"] > m["single_line_mean_log_likelihood"]
    assert m["query"]["n_modes"] >= 2


def check_classification(m):
    assert m["breast_cancer"]["test_auc"] > 0.97
    for task in m["toy"].values():
        assert task["MLP"] >= task["softmax regression"]


def check_autoencoder_digits(m):
    first, last = m["autoencoder"]["train_loss_first_last"]
    assert last < first
    lik = m["generation"]["test_code_log_likelihood_per_dim"]
    assert lik["mixture"] > lik["single_gaussian"]


def check_vae_mnist(m):
    vae = m["vae"]
    first, last = vae["train_neg_elbo_first_last"]
    assert last < first
    iwae = vae["test_iwae"]
    # the importance-weighted bound rises with K (paired over the same test images)
    assert iwae["10"]["gain_over_smallest_k"] > 3 * iwae["10"]["gain_standard_error"]
    assert vae["test_elbo"]["mean"] < iwae["10"]["mean"] < 0
    assert abs(iwae["1"]["mean"] - vae["test_elbo"]["mean"]) < 4 * vae["test_elbo"]["standard_error"]
    for name in ("autoencoder", "vae"):
        assert 0 < m[name]["test_reconstruction"]["mse_per_pixel"] < 0.25
        assert m["latent_holes"][name]["median_nn_distance_ratio_prior_vs_test"] > 0


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}


def _keys(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _keys(v, f"{prefix}{k}.")
    else:
        yield prefix


@pytest.mark.parametrize("name", sorted(FAST))
def test_study_metrics_within_tolerances(name, tmp_path):
    metrics = _run(name, tmp_path)
    CHECKS[name](metrics)
    # wall-clock times belong in timing.json (metrics.json must be bit-identical for a seed)
    assert not [k for k in _keys(metrics) if "second" in k or "time" in k.split(".")[-2]], "timing in metrics"
    assert list((tmp_path / name).glob("*.png")), f"{name} wrote no figure"


@pytest.mark.parametrize("name", ["mixture_faithful", "kmeans_initialization", "markov_text"])
def test_same_seed_gives_bit_identical_metrics(name, tmp_path):
    out = tmp_path / "out"
    texts = []
    for _ in range(2):
        _run(name, out)
        texts.append((out / name / "metrics.json").read_bytes())
    assert texts[0] == texts[1]
    record = json.loads(texts[0])
    assert record["seed"] == 0 and record["versions"]["jax"] and record["out"] == str(out)


def test_command_line_writes_index_and_records(tmp_path, capsys):
    assert main(["regression_noise", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert "[1/1] regression_noise" in capsys.readouterr().out
    record = json.loads((tmp_path / "regression_noise" / "metrics.json").read_text())
    assert record["seed"] == 3 and set(record["params"]) == set(STUDIES["regression_noise"].DEFAULTS)
    assert "regression_noise" in (tmp_path / "index.md").read_text()
    assert "<img" in (tmp_path / "index.html").read_text()
    with pytest.raises(SystemExit):
        main(["no_such_study", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["regression_noise", "--out", str(tmp_path), "--param", "no_such_param=1"])


def test_index_links_exist(tmp_path):
    main(["mixture_faithful", "--out", str(tmp_path)])
    for target in Path(tmp_path).joinpath("index.md").read_text().split("](")[1:]:
        assert (tmp_path / target.split(")")[0]).exists()

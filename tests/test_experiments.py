"""The gallery: every study runs (at reduced sizes), its metrics meet stated tolerances, its figures have no
overlapping texts and no legend over the data, and two runs with the same seed write bit-identical metrics JSON,
whatever the output folder. The command line prints help without a study name, merges the index, reports progress.

The reduced sizes keep the whole module to about a minute on 2 CPU cores; the default sizes are the ones of
``python -m experiments all`` (the README's demonstration).
"""

import io
import json
import time

import matplotlib
import numpy as np
import pytest

from experiments import _common
from experiments.__main__ import _parser, available, main, run_study

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STUDIES = available()

# reduced parameters per study (merged into the study's DEFAULTS by the runner)
FAST = {
    "ar_faithful": {"max_order": 3, "horizon": 5, "n_acf": 5},
    "bayesian_mixture": {"concentrations": [1e-3, 1.0, 100.0], "n_init": 1, "bic_n_init": 1, "max_iter": 500,
                         "tol": 1e-6},
    "autoencoder_digits": {"data": "digits", "n_train": 600, "n_test": 200, "n_epochs": 2, "linear_steps": 60,
                           "n_mixture": 600},
    "classification": {"n_per_class": 60, "n_epochs": 25},
    "hmm_alice_letters": {"max_letters": 20000, "n_init": 2},
    "hmm_faithful": {"n_init": 1, "max_states": 2},
    "kde_faithful": {"n_scales": 8, "grid": 40},
    "kmeans_initialization": {"n_restarts": 40},
    "kmeans_quantization": {"ks": [2, 8, 32], "n_fit": 3000, "max_iter": 20},
    "markov_text": {"orders": [0, 1, 2], "smoothings": [0.01], "temperatures": [1.0], "n_samples": 1},
    "mixture_anomaly_shuttle": {"n_init": 1},
    "mixture_digits_bayes": {"components": [2]},
    "mixture_faithful": {"n_init": 2},
    "mixture_families": {"n_init": 2, "outlier_counts": [0, 20], "max_iter": 100},
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


def check_mixture_families(m):
    digits = m["digits"]
    assert digits["purity"] > 0.6 and digits["digits_represented"] >= 8
    err = m["faithful"]["mean_error"]  # standardised error of the means with the most outliers
    assert err["student_t"][-1] < 0.15 and err["gaussian"][-1] > 5 * err["student_t"][-1]


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


def check_bayesian_mixture(m):
    faithful, digits = m["faithful"], m["digits"]
    assert faithful["bic_n_components"] == 2
    assert set(faithful["dirichlet_process"]["n_effective"]) == {2}  # the two eruption regimes, whatever the prior
    dd = faithful["dirichlet_distribution"]
    assert dd["n_effective"][0] == 2 and dd["n_effective"][-1] == 10  # a large Dirichlet prior spreads the weights
    assert np.all(np.array(dd["sorted_weights"][0][2:]) < 1e-4)  # the unneeded weights collapse
    vb = digits["dirichlet_process"]["default_prior_n_effective"]
    assert 5 <= vb < 10 and abs(vb - digits["bic_n_components"]) <= 2


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


def check_hmm_alice_letters(m):
    # the classic split, found without labels: vowels in one state, consonants in the other, and they alternate
    assert m["share_of_vowels_in_vowel_state"] >= 0.8 and m["share_of_consonants_in_consonant_state"] >= 0.8
    v = m["vowel_state"]
    assert m["transition"][v][v] < 0.5 and m["transition"][1 - v][1 - v] < 0.5
    assert m["ll_monotone"]


def check_hmm_faithful(m):
    # the mixture's two clusters, and the alternation a mixture cannot see: short eruptions are followed by long ones
    np.testing.assert_allclose(m["means"], [[2.04, 54.5], [4.29, 80.0]], atol=0.15)
    assert m["transition"][0][1] > 0.85 and m["share_short_followed_by_long"] > 0.85
    assert m["log_likelihood"] > m["mixture_log_likelihood"]
    assert m["converged"] and m["ll_monotone"] and m["best_n_states"] >= 2


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


@pytest.fixture
def layout_checked():
    """Every figure a study saves goes through `assert_clean_layout` first."""
    _common.FIGURE_CHECKS.append(_common.assert_clean_layout)
    yield
    _common.FIGURE_CHECKS.remove(_common.assert_clean_layout)


@pytest.mark.parametrize("name", sorted(FAST))
def test_study_metrics_within_tolerances(name, tmp_path, layout_checked):
    metrics = _run(name, tmp_path)
    CHECKS[name](metrics)
    # wall-clock times belong in timing.json (metrics.json must be bit-identical for a seed)
    assert not [k for k in _keys(metrics) if "second" in k or "time" in k.split(".")[-2]], "timing in metrics"
    assert list((tmp_path / name).glob("*.png")), f"{name} wrote no figure"


@pytest.mark.parametrize("name", ["mixture_faithful", "kmeans_initialization", "markov_text"])
def test_same_seed_gives_bit_identical_metrics(name, tmp_path):
    texts = []
    for folder in ("out", "elsewhere/out2"):  # two output folders: metrics.json holds no path
        _run(name, tmp_path / folder)
        texts.append((tmp_path / folder / name / "metrics.json").read_bytes())
    assert texts[0] == texts[1]
    record = json.loads(texts[0])
    assert record["seed"] == 0 and record["versions"]["jax"]
    assert str(tmp_path) not in texts[0].decode() and "out2" not in texts[1].decode()


def test_command_line_merges_the_index_and_checks_its_arguments(tmp_path, capsys):
    assert main(["regression_noise", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert "[1/1] regression_noise" in capsys.readouterr().out
    record = json.loads((tmp_path / "regression_noise" / "metrics.json").read_text())
    assert record["seed"] == 3 and set(record["params"]) == set(STUDIES["regression_noise"].DEFAULTS)
    # a second run of another study adds it to the index instead of rewriting the index with that study alone
    assert main(["mixture_faithful", "--out", str(tmp_path)]) == 0
    index_md, index_html = (tmp_path / "index.md").read_text(), (tmp_path / "index.html").read_text()
    for study in ("regression_noise", "mixture_faithful"):
        assert f"## {study}" in index_md and f"id='{study}'" in index_html
    assert "<img" in index_html
    for target in index_md.split("](")[1:]:
        assert (tmp_path / target.split(")")[0]).exists()
    with pytest.raises(SystemExit):
        main(["no_such_study", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["regression_noise", "--out", str(tmp_path), "--param", "no_such_param=1"])
    with pytest.raises(SystemExit):
        main(["all", "regression_noise", "--out", str(tmp_path)])


def test_bare_command_prints_help_and_the_studies_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    assert main([]) == 0
    text = capsys.readouterr().out
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "out").exists()
    assert "usage: python -m experiments" in text and "'all'" in text
    for name in STUDIES:
        assert name in text
    assert "--param 'ks=[2,4,8]'" in text  # quoted: works in zsh too


def test_every_flag_has_help_text():
    for action in _parser(STUDIES)._actions:
        assert action.help and action.help.strip(), f"{action.option_strings or action.dest} has no help"


def test_progress_line_names_the_study_step_and_elapsed_time():
    stream = io.StringIO()
    with _common.Progress("demo", stream=stream, log_interval=0.05):
        _common.report("epoch 3/20")
        time.sleep(0.3)
    lines = stream.getvalue().splitlines()
    assert lines and lines[-1].strip().startswith("demo: epoch 3/20, ") and lines[-1].endswith(" s")
    _common.report("after the study")  # no runner: a no-op


# ---- the layout check itself: it must fail on a bad figure and pass on a clean one ------------------------------
def test_layout_check_finds_overlapping_texts_and_a_legend_over_data():
    fig, axes = plt.subplots(2, 1, figsize=(4, 3), gridspec_kw={"hspace": 0.05})
    axes[0].set_xlabel("a long x label of the top axes")
    axes[1].set_title("a long title of the bottom axes")
    axes[1].plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50), label="line")
    axes[1].legend(loc="center")
    problems = _common.layout_problems(fig)
    plt.close(fig)
    assert any(" overlaps axes 1 " in p for p in problems), problems
    assert any("legend covers" in p for p in problems), problems


def test_layout_check_passes_a_clean_figure():
    fig, axes = plt.subplots(2, 1, figsize=(5, 6), layout="constrained")
    axes[0].set(xlabel="x", title="top")
    axes[1].set(xlabel="x", title="bottom")
    axes[1].plot([0, 1], [0, 1], label="rising")
    axes[1].legend(loc="lower right")
    assert _common.layout_problems(fig) == []
    plt.close(fig)

"""The documentation site: a strict build without warnings, navigation in reading order, API pages that list exactly
each module's ``__all__`` under one title, no reStructuredText left in the converted pages, nothing loaded from
outside the site, maths rendered offline (headless Chromium, when installed), a gallery that shows every study
figure, and the numbers the pages quote from a study checked against that study's ``metrics.json``."""

import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import jaxprob

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GALLERY = DOCS / "figures" / "gallery"

# Modules whose docstrings docs/scripts/rst_to_md.py has converted to Markdown: their API pages must hold no reST
# role, and their sources must stay converted. Add a module here once the script has run on it.
CONVERTED = ["jaxprob"] + [f"jaxprob.{name}" for name in jaxprob.__all__
                           if isinstance(getattr(jaxprob, name), type(jaxprob))]

REST = re.compile(r":(?:math|func|class|mod|data|meth|attr|obj|exc|ref):(?:`|<code>)|\.\. (?:math|note|code)::")


def _modules():
    return [name for name in jaxprob.__all__ if isinstance(getattr(jaxprob, name), type(jaxprob))]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once by ``mkdocs build --strict``."""
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    assert "WARNING" not in run.stderr, run.stderr
    return out


def _page(site: Path, uri: str) -> str:
    return (site / uri.removesuffix(".md").removesuffix("index") / "index.html").read_text()


def _nav_uris(nav):
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from _nav_uris(value)
        else:
            yield value


def test_docs_build_strict_without_warnings(site):
    assert (site / "index.html").exists()
    assert not (site / "scripts").exists(), "docs/scripts/ must stay out of the site"


def test_navigation_is_explicit_and_in_reading_order():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = config["nav"]
    titles = [next(iter(item)) for item in nav]
    assert titles[:2] == ["Home", "Getting started"], titles
    uris = list(_nav_uris(nav))
    topics = ["densities.md", "mixtures.md", "kmeans.md", "kde.md", "markov.md", "hmm.md", "regression.md",
              "classification.md", "autoencoders.md", "scale.md", "architecture.md", "conventions.md",
              "benchmarks.md", "gallery.md"]
    assert [u for u in uris if u in topics] == topics
    assert uris.index("gallery.md") < min(uris.index(u) for u in uris if u.startswith("api/"))
    # every page of docs/ is in the navigation (api pages may be appended by the hook, see mkdocs_hooks.py)
    for page in DOCS.glob("*.md"):
        assert page.name in uris, f"{page.name} is not in the nav of mkdocs.yml"
    assert config["theme"]["name"] == "material" and "search" in config["plugins"]


def test_api_pages_show_one_title_and_exactly_the_public_names(site):
    for name in _modules():
        module = importlib.import_module(f"jaxprob.{name}")
        html = _page(site, f"api/{name}.md")
        assert len(re.findall(r"<h1[ >]", html)) == 1, f"api/{name}: the module name is a heading more than once"
        shown = set(re.findall(rf'id="jaxprob\.{name}\.([A-Za-z_][A-Za-z0-9_]*)"', html))
        extra = shown - set(module.__all__)
        assert not extra, f"api/{name} shows names outside __all__: {sorted(extra)}"
        if f"jaxprob.{name}" in CONVERTED:
            # a package's constructor named like its submodule (families.gaussian) is documented on the
            # submodule's own page, api/<package>.<submodule>.md
            submodules = {m.name for m in pkgutil.iter_modules(getattr(module, "__path__", []))}
            for sub in submodules & set(module.__all__):
                assert (DOCS / "api" / f"{name}.{sub}.md").exists(), f"api/{name}.{sub}.md is missing"
            expected = set(module.__all__) - submodules
            assert shown == expected, f"api/{name} misses {sorted(expected - shown)}"


def test_no_rest_left_in_converted_pages(site):
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md")]
    pages += ["api/jaxprob.md"] + [f"api/{m.split('.')[1]}.md" for m in CONVERTED if "." in m]
    for uri in pages:
        found = REST.findall(_page(site, uri))
        assert not found, f"{uri} holds reStructuredText: {found[:5]}"


def test_converted_modules_stay_markdown():
    spec = importlib.util.spec_from_file_location("rst_to_md", DOCS / "scripts" / "rst_to_md.py")
    rst_to_md = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rst_to_md)
    files = []
    for module in CONVERTED:
        base = ROOT / module.replace(".", "/")
        files += [str(p) for p in sorted(base.glob("*.py"))] if base.is_dir() else [str(base.with_suffix(".py"))]
    assert rst_to_md.main(["--check", *files]) == 0, "run docs/scripts/rst_to_md.py on them"


def test_rst_converter_output():
    spec = importlib.util.spec_from_file_location("rst_to_md", DOCS / "scripts" / "rst_to_md.py")
    rst_to_md = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rst_to_md)
    import griffe

    package = griffe.load("jaxprob", search_paths=[str(ROOT)])
    conv = rst_to_md.Converter("jaxprob.mixture", package)
    doc = ("Fit by :func:`fit` (see :class:`~jaxprob.mixture.Mixture`, :mod:`jaxprob.kmeans`)\n"
           "with :math:`\\alpha_k` and ``code``.\n\n.. math::\n\n    a = b\n\nEnd, :func:`_private`.")
    out = conv.convert(doc)
    assert out == ("Fit by [`fit`][jaxprob.mixture.fit] (see [`Mixture`][jaxprob.em.Mixture], "
                   "[`jaxprob.kmeans`][jaxprob.kmeans])\nwith $\\alpha_k$ and `code`.\n\n$$\na = b\n$$\n\n"
                   "End, `_private`.")
    assert conv.report and "_private" in conv.report[0]
    assert conv.convert(out) == out  # idempotent


def test_site_loads_nothing_from_outside(site):
    outside = re.compile(r"""<(?:script|img|iframe)[^>]+src=["']https?://|<link[^>]+href=["']https?://[^"']+"""
                         r"""["'][^>]*rel=["']?stylesheet|<link[^>]+rel=["']?stylesheet["']?[^>]+href=["']https?://""")
    for page in site.rglob("*.html"):
        found = outside.findall(page.read_text())
        assert not found, f"{page.relative_to(site)} loads {found[:3]}"
    for css in site.rglob("*.css"):
        assert "fonts.googleapis" not in css.read_text()
    assert (site / "javascripts" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
    html = _page(site, "mixtures.md")
    assert "javascripts/mathjax/tex-svg-full.js" in html and 'class="arithmatex"' in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless check needs Debian's chromium")
def test_maths_render_offline_in_headless_chromium(site):
    """MathJax typesets every formula of a page with the network cut (``unshare -n`` where it is allowed)."""
    prefix = ["unshare", "-n"] if shutil.which("unshare") and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0 else []
    for uri in ("mixtures.md", "api/autoencoder.md"):
        page = site / uri.removesuffix(".md") / "index.html"
        run = subprocess.run([*prefix, "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                              "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=180)
        dom = run.stdout
        assert "<body" in dom, run.stderr[-2000:]
        n_maths = len(re.findall(r'class="arithmatex"', page.read_text()))
        assert n_maths > 0
        assert dom.count("<mjx-container") >= n_maths, f"{uri}: MathJax typeset too few formulas"
        raw = re.findall(r'class="arithmatex">\s*\\[(\[]', dom)
        assert not raw, f"{uri}: {len(raw)} formulas left as TeX"


# ---- the gallery ------------------------------------------------------------------------------------------------
def _studies():
    return sorted(m.name for m in pkgutil.iter_modules([str(ROOT / "experiments")]) if not m.name.startswith("_"))


def test_gallery_shows_every_study_figure_with_its_command():
    text = (DOCS / "gallery.md").read_text()
    for study in _studies():
        assert f"python -m experiments {study}" in text, f"the gallery lacks the command of {study}"
        figures = sorted((GALLERY / study).glob("*.png"))
        assert figures, f"docs/figures/gallery/{study}/ has no figure (python -m experiments._docs_figures OUT)"
        for fig in figures:
            assert f"figures/gallery/{study}/{fig.name}" in text, f"the gallery lacks {study}/{fig.name}"


def test_gallery_figures_come_with_their_metrics():
    for study in _studies():
        record = json.loads((GALLERY / study / "metrics.json").read_text())
        assert record["experiment"] == study
        assert set(record["figures"]) == {p.name for p in (GALLERY / study).glob("*.png")}


# ---- numbers quoted from the studies ----------------------------------------------------------------------------
def _metrics(study):
    return json.loads((GALLERY / study / "metrics.json").read_text())["metrics"]


def _words(n: int) -> str:
    return {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}.get(n, str(n))


def quoted_mixture_faithful(m):
    (m1, w1), (m2, w2) = sorted(zip(m["means"], m["weights"], strict=True))
    return {"gallery.md": [f"({m1[0]:.2f} min, {m1[1]:.1f} min) and ({m2[0]:.2f} min, {m2[1]:.1f} min)",
                           f"weights {w1:.2f} and {w2:.2f}", f"in {m['n_iter']} iterations"]}


def quoted_mixture_model_selection(m):
    bic, aic, held = m["best_bic"], m["best_aic"], m["best_heldout"]
    return {"mixtures.md": [f"BIC prefers {_words(bic['n_components'])} {bic['covariance_type']} components",
                            f"AIC {_words(aic['n_components'])} {aic['covariance_type']} ones",
                            f"held-out log-likelihood is highest at {_words(held['n_components'])} "
                            f"{held['covariance_type']} components"],
            "gallery.md": [f"lowest at {bic['n_components']} {bic['covariance_type']} components",
                           f"picks {aic['n_components']} {aic['covariance_type']} components",
                           f"peaks at {held['n_components']} {held['covariance_type']} components"]}


def quoted_mixture_anomaly_shuttle(m):
    u = m["unsupervised"]
    return {"gallery.md": [f"AUC is {m['roc_auc']:.4f}", f"precision is {m['precision']:.3f} and recall "
                           f"{m['recall']:.3f}", f"AUC of {u['roc_auc']:.3f} only"],
            "mixtures.md": [f"test ROC AUC of {m['roc_auc']:.4f}", f"precision {m['precision']:.3f} and recall "
                            f"{m['recall']:.3f}", f"the test AUC was {u['roc_auc']:.3f}"]}


def quoted_mixture_digits_bayes(m):
    best = m["best_components"]
    acc = m["accuracy"][str(best)]
    return {"gallery.md": [f"keep {m['explained_variance_kept']:.3f} of the variance",
                           f"{_words(best).capitalize()} components per class give the best test accuracy, "
                           f"{acc:.3f}"],
            "mixtures.md": [f"{acc:.3f} accuracy on the 8×8 digits with 20 principal components"]}


def quoted_kmeans_quantization(m):
    by_k = {r["k"]: r for r in m["per_k"]}
    return {"gallery.md": [f"all {m['n_pixels']:,} assigned", f"(PSNR {by_k[2]['psnr_db']:.1f} dB)",
                           f"({by_k[16]['psnr_db']:.1f} dB)",
                           f"{by_k[128]['psnr_db']:.1f} dB at a compression ratio of "
                           f"{by_k[128]['compression_ratio']:.1f}"]}


def quoted_kmeans_initialization(m):
    return {"gallery.md": [f"inertia {m['bad_run_inertia']:.1f} against {m['best_inertia']:.1f}",
                           f"{m['kmeans++']['fraction_within_1pct_of_best']:.0%} of its restarts",
                           f"against {m['random']['fraction_within_1pct_of_best']:.0%} for random"]}


def quoted_kde_faithful(m):
    one, two = m["one_d"], m["two_d"]
    return {"gallery.md": [f"({one['held-out']['bandwidth_std']:.2f} min against {one['scott']['bandwidth_std']:.2f} "
                           "min for Scott's rule)", f"log-likelihood, {one['held-out']['valid_mean_log_lik']:.3f} per",
                           f"(scale {two['held-out']['best_scale']:.2f} of Scott's)",
                           f"scores {two['held-out']['valid_mean_log_lik']:.3f} against "
                           f"{two['scott']['valid_mean_log_lik']:.3f}"]}


def quoted_markov_text(m):
    ppl = m["valid_perplexity"]
    return {"gallery.md": [f"{m['n_train']:,} training sentences", f"a vocabulary of {m['vocabulary']:,} words",
                           f"{ppl['order=1,smoothing=0.01']:.1f} with smoothing 0.01, against "
                           f"{ppl['order=0,smoothing=0.01']:.1f}"]}


def quoted_regression_noise(m):
    (a, b), het = m["fits"], m["heteroscedastic"]["fit"]
    return {"gallery.md": [f"({a['closed_form']['slope']:.2f} and {b['closed_form']['slope']:.2f})",
                           f"{a['closed_form']['sigma_hat']:.2f} and {b['closed_form']['sigma_hat']:.2f}",
                           f"$\\log\\sigma(x) = {het['a0']:.2f} + {het['a1']:.2f}x$"]}


def quoted_regression_mixture(m):
    slopes = [f"{f['slope']:.2f}" for f in m["fitted"]]
    q = m["query"]
    return {"gallery.md": [f"{slopes[0]}, {slopes[1]} and {slopes[2]} k€", f"its mean, {q['mean']:.0f} k€",
                           f"its mode is {q['mode']:.0f} k€"]}


def quoted_classification(m):
    toy, bc = m["toy"], m["breast_cancer"]
    cm = bc["thresholds"]["0.5"]["confusion"]
    return {"gallery.md": [f"reaches {toy['moons_2class']['softmax regression']:.2f} training accuracy",
                           f"three-class ring {toy['ring_3class']['softmax regression']:.2f}",
                           f"test AUC {bc['test_auc']:.3f}",
                           f"{_words(cm[0][1])} benign cases are flagged and {_words(cm[1][0])} "
                           "malignant case is missed"]}


def quoted_autoencoder_digits(m):
    ae, lin, gen, auc = m["autoencoder"], m["linear_vs_pca"], m["generation"], m["anomaly_auc"]
    first, last = ae["train_loss_first_last"]
    same = lin["test_mse_nonlinear_ae_vs_pca_same_size"]
    angles = lin["principal_angles_deg"]
    lik = gen["test_code_log_likelihood_per_dim"]
    mix = f"-log p(z), {gen['n_components']}-component mixture"
    return {"gallery.md": [f"ratio of {lin['mse_test']['ratio']:.4f}", f"at most {lin['max_angle_deg']:.2f}°",
                           f"(AUC {auc[mix]:.3f})", f"reconstruction error ({auc['reconstruction error']:.3f})"],
            "autoencoders.md": [
                f"| {first:.3f} → {last:.3f} |", f"| {same['autoencoder']:.4f} / {same['pca']:.4f} |",
                f"| {lin['mse_test']['ratio']:.4f} |", f"| {min(angles):.2f}° to {max(angles):.2f}° |",
                f"| {lik['mixture']:.3f} / {lik['single_gaussian']:.3f} |", f"| {auc['reconstruction error']:.3f} |",
                f"| {auc[mix]:.3f} / {auc['-log p(z), single Gaussian']:.3f} |"]}


def quoted_vae_mnist(m):
    vae, holes, rec = m["vae"], m["latent_holes"], m["autoencoder"]["test_reconstruction"]
    elbo, iwae = vae["test_elbo"], vae["test_iwae"]
    ratio = "median_nn_distance_ratio_prior_vs_test"
    return {"gallery.md": [f"held-out ELBO is {elbo['mean']:.1f} nats per image",
                           f"rises to {iwae['100']['mean']:.1f} at K = 100",
                           f"{iwae['100']['gain_over_smallest_k']:.2f} nats above K = 1",
                           f"land {holes['autoencoder'][ratio]:.2f} times as far", f"{holes['vae'][ratio]:.2f} times)",
                           f"(cross-entropy {vae['test_reconstruction']['bce_per_pixel']:.3f} against "
                           f"{rec['bce_per_pixel']:.3f} per pixel)"],
            "autoencoders.md": [
                f"| {elbo['mean']:.1f} ± {elbo['standard_error']:.1f} nats per image |",
                "| " + " / ".join(f"{iwae[k]['mean']:.1f}" for k in ("1", "10", "100")) + " |",
                "| " + " / ".join(f"{iwae[k]['gain_over_smallest_k']:.2f} ± {iwae[k]['gain_standard_error']:.2f}"
                                  for k in ("10", "100")) + " |",
                f"| {vae['test_kl_mean']:.1f} nats, {vae['active_units']} of 16 |",
                f"| {rec['bce_per_pixel']:.3f} / {vae['test_reconstruction']['bce_per_pixel']:.3f} |",
                f"| {rec['mse_per_pixel']:.4f} / {vae['test_reconstruction']['mse_per_pixel']:.4f} |",
                f"| {holes['autoencoder'][ratio]:.2f} / {holes['vae'][ratio]:.2f} |"]}


CLAIMS = {name[len("quoted_"):]: fn for name, fn in dict(globals()).items() if name.startswith("quoted_")}


@pytest.mark.parametrize("study", sorted(CLAIMS))
def test_numbers_quoted_in_the_docs_match_the_study_metrics(study):
    """Each phrase is built from the study's metrics.json and must appear, as is, in the page that quotes it."""
    for page, phrases in CLAIMS[study](_metrics(study)).items():
        text = " ".join((DOCS / page).read_text().split())
        for phrase in phrases:
            assert phrase in text, f"docs/{page} must say {phrase!r} (from {study}/metrics.json)"

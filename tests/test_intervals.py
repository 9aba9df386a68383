import json

import numpy as np
import pytest
from scipy import special, stats
from sklearn import metrics as skm

from jaxcxr import intervals, metrics


def softmax(z):
  z = z - z.max(1, keepdims=True)
  return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def three_class(n=600, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n)
  probs = softmax(rng.normal(size=(n, 3)) + 1.2 * np.eye(3)[labels])
  return labels, probs


def test_weighted_auroc_and_ap_equal_sklearn_with_sample_weight():
  rng = np.random.default_rng(1)
  y = rng.integers(0, 2, 300)
  scores = np.round(rng.normal(size=300) + y, 1)  # Rounded: many ties.
  w = rng.integers(0, 4, (5, 300)).astype(float)
  auc = intervals.weighted_auroc(y, scores, w)
  ap = intervals.weighted_average_precision(y, scores, w)
  for b in range(5):
    assert auc[b] == pytest.approx(skm.roc_auc_score(y, scores, sample_weight=w[b]), abs=1e-12)
    assert ap[b] == pytest.approx(
      skm.average_precision_score(y, scores, sample_weight=w[b]), abs=1e-12
    )


def test_weighted_auroc_is_nan_without_negatives():
  w = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
  auc = intervals.weighted_auroc(np.array([1, 1, 0]), np.array([0.9, 0.2, 0.5]), w)
  assert np.isnan(auc[0]) and auc[1] == pytest.approx(0.5)


def test_unit_weights_reproduce_classification_metrics():
  labels, probs = three_class()
  names = ["normal", "pneumonia", "covid19"]
  ref = metrics.classification_metrics(labels, probs, names)
  got = {
    k: v[0]
    for k, v in intervals.classification_stat(labels, probs, names)(np.ones((1, 600))).items()
  }
  assert got["accuracy"] == pytest.approx(ref["accuracy"])
  assert got["top2_accuracy"] == pytest.approx(ref["top2_accuracy"])
  assert got["auroc_macro"] == pytest.approx(ref["auroc_macro"])
  cm = np.array(ref["confusion_matrix"])
  for c, name in enumerate(names):
    for k in ("precision", "recall", "f1", "auroc"):
      assert got[f"per_class.{name}.{k}"] == pytest.approx(ref["per_class"][name][k])
    tn = cm.sum() - cm[c].sum() - cm[:, c].sum() + cm[c, c]
    assert got[f"per_class.{name}.specificity"] == pytest.approx(tn / (cm.sum() - cm[c].sum()))
    assert got[f"per_class.{name}.average_precision"] == pytest.approx(
      skm.average_precision_score(labels == c, probs[:, c])
    )


def test_unit_weights_reproduce_multilabel_metrics():
  rng = np.random.default_rng(2)
  y = (rng.random((400, 4)) < [0.1, 0.3, 0.5, 0.2]).astype(int)
  probs = special.expit(rng.normal(size=(400, 4)) + 1.5 * y - 0.7)
  names = list("abcd")
  ref = metrics.multilabel_metrics(y, probs, names)
  got = {
    k: v[0] for k, v in intervals.classification_stat(y, probs, names)(np.ones((1, 400))).items()
  }
  assert "top2_accuracy" not in got
  for k in ("accuracy", "auroc_macro", "map"):
    assert got[k] == pytest.approx(ref[k])
  for name in names:
    for k in ("precision", "recall", "f1", "auroc", "average_precision"):
      assert got[f"per_class.{name}.{k}"] == pytest.approx(ref["per_class"][name][k])


def test_report_keeps_every_existing_key_and_adds_intervals():
  labels, probs = three_class()
  names = ["normal", "pneumonia", "covid19"]
  pids = np.array([f"p{i // 3}" for i in range(600)], dtype=object)
  pids[:10] = ""  # 10 images without a patient id: their own clusters.
  ref = metrics.classification_metrics(labels, probs, names)
  out = intervals.metrics_with_intervals(labels, probs, pids, names, n_resamples=300)
  for k, v in ref.items():
    if k != "per_class":
      assert out[k] == v
  for name in names:
    for k, v in ref["per_class"][name].items():
      assert out["per_class"][name][k] == v
    for k in ("auroc", "average_precision", "sensitivity", "specificity", "precision", "f1"):
      lo, hi = out["per_class"][name][k + "_ci95"]
      assert lo <= out["per_class"][name][k] <= hi
    assert len(out["per_class"][name]["auroc_delong_ci95"]) == 2
  for k in ("accuracy", "auroc_macro", "top2_accuracy", "map"):
    lo, hi = out[k + "_ci95"]
    assert lo < out[k] < hi
  b = out["bootstrap"]
  assert b["n_images_without_patient_id"] == 10
  # Images 0-9 lose their shared ids (p0..p3); 10 and 11 are all that remain of p3.
  assert b["n_clusters"] == 10 + (200 - 4) + 1
  assert b["n_resamples"] == 300 and b["unit"] == "patient"


def test_seeded_and_reproducible():
  labels, probs = three_class(200)
  a = intervals.metrics_with_intervals(labels, probs, None, list("abc"), n_resamples=200, seed=3)
  b = intervals.metrics_with_intervals(labels, probs, None, list("abc"), n_resamples=200, seed=3)
  c = intervals.metrics_with_intervals(labels, probs, None, list("abc"), n_resamples=200, seed=4)
  assert a["accuracy_ci95"] == b["accuracy_ci95"] != c["accuracy_ci95"]
  assert a["bootstrap"]["n_images_without_patient_id"] == 200


def test_resamples_without_a_rare_class_are_counted_not_hidden():
  # Class 2 lives in a single patient out of 60: it is absent from ~37% of patient resamples.
  rng = np.random.default_rng(5)
  labels = np.r_[rng.integers(0, 2, 295), [2] * 5]
  probs = softmax(rng.normal(size=(300, 3)) + 2 * np.eye(3)[labels])
  pids = np.r_[np.arange(295) // 5, [59] * 5].astype(str)
  out = intervals.metrics_with_intervals(labels, probs, pids, list("abc"), n_resamples=1000)
  undefined = out["bootstrap"]["undefined_resamples"]
  share = undefined["per_class.c.sensitivity"] / 1000
  assert share == pytest.approx((59 / 60) ** 60, abs=0.05)
  assert undefined["auroc_macro"] >= undefined["per_class.c.sensitivity"]
  assert "accuracy" not in undefined
  # Leaving out that patient leaves class c empty: no jackknife, so BCa falls back to percentile.
  assert "per_class.c.sensitivity" in out["bootstrap"]["percentile_fallback"]


def coverage(draw, truth, reps, n_resamples, clustered, method="percentile"):
  hits = 0
  for r in range(reps):
    labels, probs, pids = draw(np.random.default_rng(1000 + r))
    stat = intervals.classification_stat(labels, probs, ["neg", "pos"])
    cl = intervals.Clusters.from_ids(pids if clustered else None, len(labels))
    res = intervals.bootstrap(stat, cl, n_resamples, seed=r, method=method)
    for k, t in truth.items():
      lo, hi = res[k]["ci"]
      hits += lo <= t <= hi
  return hits / (reps * len(truth))


def test_bootstrap_covers_known_auroc_and_accuracy_about_95_percent():
  # Positives ~ N(d, 1), negatives ~ N(0, 1): true AUROC = Phi(d / sqrt 2); with the cut at d / 2
  # (probabilities: expit(score - d / 2)) the true accuracy is Phi(d / 2) in both classes.
  d = 1.0

  def draw(rng):
    y = np.r_[np.zeros(150, int), np.ones(150, int)]
    s = rng.normal(size=300) + d * y
    p = special.expit(s - d / 2)
    return y, np.c_[1 - p, p], None

  truth = {"per_class.pos.auroc": stats.norm.cdf(d / np.sqrt(2)), "accuracy": stats.norm.cdf(d / 2)}
  # 200 repetitions x 500 resamples; a 95% coverage has binomial SE 0.015 here: tolerance 3 SE.
  for method in ("percentile", "bca"):
    cov = coverage(draw, truth, reps=200, n_resamples=500, clustered=False, method=method)
    assert 0.905 <= cov <= 0.995, (method, cov)


def test_patient_bootstrap_covers_clustered_accuracy_and_image_bootstrap_does_not():
  # 60 patients x 8 images; a patient's images share one probability of being right (Beta(2, 1),
  # mean 2/3): strongly correlated images, so image resampling is far too narrow.
  def draw(rng):
    p_right = rng.beta(2, 1, 60).repeat(8)
    right = rng.random(480) < p_right
    y = rng.integers(0, 2, 480)
    pred = np.where(right, y, 1 - y)
    probs = np.eye(2)[pred] * 0.8 + 0.1
    return y, probs, np.arange(480) // 8

  truth = {"accuracy": 2 / 3}
  patient = coverage(draw, truth, reps=200, n_resamples=500, clustered=True)
  image = coverage(draw, truth, reps=200, n_resamples=500, clustered=False)
  assert 0.905 <= patient <= 0.995, patient
  assert image < 0.8, image


def test_a_planted_patient_with_many_images_widens_and_moves_the_interval():
  # 300 one-image patients (80% right) and one patient with 150 images, all wrong.
  rng = np.random.default_rng(7)
  y = rng.integers(0, 2, 450)
  right = np.r_[rng.random(300) < 0.8, np.zeros(150, bool)]
  probs = np.eye(2)[np.where(right, y, 1 - y)] * 0.8 + 0.1
  pids = np.r_[np.arange(300), [999] * 150].astype(str)
  stat = intervals.classification_stat(y, probs, ["a", "b"])
  by_patient = intervals.bootstrap(stat, intervals.Clusters.from_ids(pids, 450), 2000)
  by_image = intervals.bootstrap(stat, intervals.Clusters.from_ids(None, 450), 2000)
  (plo, phi), (ilo, ihi) = by_patient["accuracy"]["ci"], by_image["accuracy"]["ci"]
  # Resampling images treats the 150 wrong images as independent: +-0.05 around 0.54. Drawing that
  # patient 0, 1, 2... times swings accuracy from 0.8 down to ~0.4: a far wider interval, which
  # reaches the accuracy of the other patients.
  assert (phi - plo) > 3 * (ihi - ilo)
  assert plo < ilo and phi > ihi
  assert phi > 0.75


def test_delong_matches_a_hand_computed_case():
  # Positives 0.9, 0.6; negatives 0.7, 0.1. Per positive, share of negatives below: 1, 1/2;
  # per negative, share of positives above: 1/2, 1. AUROC 3/4; variance 0.125/2 + 0.125/2.
  auc, var = intervals.delong_auroc(np.array([1, 1, 0, 0]), np.array([0.9, 0.6, 0.7, 0.1]))
  assert auc == pytest.approx(0.75)
  assert var == pytest.approx(0.125)
  # Ties count half: positive 0.5 vs negatives 0.5, 0.1 -> 3/4; positive 0.8 -> 1.
  auc, _ = intervals.delong_auroc(np.array([1, 1, 0, 0]), np.array([0.8, 0.5, 0.5, 0.1]))
  assert auc == pytest.approx(0.875)


def test_delong_agrees_with_the_image_bootstrap_on_a_large_set():
  rng = np.random.default_rng(8)
  y = rng.integers(0, 2, 5000)
  s = rng.normal(size=5000) + 1.2 * y
  auc, var = intervals.delong_auroc(y, s)
  assert auc == pytest.approx(skm.roc_auc_score(y, s))
  w = np.concatenate(
    list(intervals.resample_weights(intervals.Clusters.from_ids(None, 5000), 2000, 0))
  )
  boot = intervals.weighted_auroc(y, s, w)
  assert boot.std() == pytest.approx(np.sqrt(var), rel=0.08)
  lo, hi = intervals.delong_interval(y, s)
  plo, phi = intervals.percentile_interval(boot, 0.95)
  assert lo == pytest.approx(plo, abs=0.004) and hi == pytest.approx(phi, abs=0.004)


def test_bca_and_percentile_agree_with_scipy_on_iid_data():
  rng = np.random.default_rng(9)
  x = rng.exponential(size=200)  # Skewed: BCa and percentile differ.
  w = np.concatenate(
    list(intervals.resample_weights(intervals.Clusters.from_ids(None, 200), 4000, 1))
  )
  boot = (w @ x) / w.sum(1)
  jack = (x.sum() - x) / 199
  ours = intervals.bca_interval(boot, x.mean(), jack, 0.95)
  ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="BCa", rng=2).confidence_interval
  assert ours == pytest.approx((ref.low, ref.high), abs=0.02)
  ours = intervals.percentile_interval(boot, 0.95)
  ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", rng=2)
  assert ours == pytest.approx(tuple(ref.confidence_interval), abs=0.02)


def test_bad_inputs_are_clear_errors():
  with pytest.raises(ValueError, match="one per image"):
    intervals.Clusters.from_ids(["a", "b"], 3)
  with pytest.raises(ValueError, match="method"):
    intervals.bootstrap(
      lambda w: {"x": w.sum(1)}, intervals.Clusters.from_ids(None, 3), method="bc"
    )
  with pytest.raises(ValueError, match="2 positives"):
    intervals.delong_auroc(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3]))


def test_absent_class_gives_undefined_intervals_and_json():
  rng = np.random.default_rng(10)
  labels = rng.integers(0, 2, 200)  # Class "c" never occurs.
  probs = softmax(rng.normal(size=(200, 3)) + 2 * np.eye(3)[labels])
  out = intervals.metrics_with_intervals(labels, probs, None, list("abc"), n_resamples=200)
  json.dumps(out)
  assert out["auroc_macro"] is None and out["auroc_macro_ci95"] is None
  assert out["per_class"]["c"]["auroc_ci95"] is None
  assert out["per_class"]["c"]["auroc_delong_ci95"] is None
  assert out["per_class"]["c"]["sensitivity"] is None  # 0/0, where sklearn's recall reports 0.
  assert out["bootstrap"]["undefined_resamples"]["per_class.c.sensitivity"] == 200
  lo, hi = out["per_class"]["c"]["specificity_ci95"]
  assert lo <= out["per_class"]["c"]["specificity"] <= hi


def test_multilabel_report_keeps_keys_and_adds_intervals():
  rng = np.random.default_rng(11)
  y = (rng.random((300, 3)) < [0.2, 0.4, 0.3]).astype(int)
  probs = special.expit(rng.normal(size=(300, 3)) + 2 * y - 1)
  ref = metrics.multilabel_metrics(y, probs, list("abc"))
  out = intervals.metrics_with_intervals(
    y, probs, np.arange(300) // 3, list("abc"), n_resamples=200
  )
  json.dumps(out)
  assert (
    out["map"] == ref["map"]
    and out["per_class"]["b"]["average_precision"] == ref["per_class"]["b"]["average_precision"]
  )
  for k in ("accuracy", "auroc_macro", "map"):
    lo, hi = out[k + "_ci95"]
    assert lo <= out[k] <= hi
  assert "top2_accuracy_ci95" not in out and out["bootstrap"]["n_clusters"] == 100


def test_perfect_separation_gives_a_degenerate_interval_not_a_crash():
  y = np.r_[np.zeros(50, int), np.ones(50, int)]
  probs = np.c_[1 - y * 0.9 - 0.05, y * 0.9 + 0.05]
  out = intervals.metrics_with_intervals(y, probs, None, ["a", "b"], n_resamples=200)
  assert out["auroc_macro_ci95"] == [1.0, 1.0] and out["accuracy_ci95"] == [1.0, 1.0]


def test_binary_macro_auroc_is_the_positive_column_as_in_metrics():
  rng = np.random.default_rng(12)
  labels = rng.integers(0, 2, 300)
  probs = rng.random((300, 2)) + 0.3 * np.eye(2)[labels]  # Rows do not sum to one.
  ref = metrics.classification_metrics(labels, probs, ["n", "p"])
  got = intervals.classification_stat(labels, probs, ["n", "p"])(np.ones((1, 300)))
  assert got["auroc_macro"][0] == pytest.approx(ref["auroc_macro"])
  assert got["per_class.n.auroc"][0] != pytest.approx(got["per_class.p.auroc"][0])

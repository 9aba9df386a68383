"""A run's post-hoc calibration and operating points: fitted on validation, saved, applied.

At the end of training (`jaxcxr.train.final_reports`) the validation split's per-example outputs
fit a temperature (Guo et al. 2017, `jaxcxr.calibration.fit_temperature`) and choose one decision
threshold per class (Youden 1950, or a target sensitivity; `jaxcxr.operating_points`). Both are
saved with the run and then applied, frozen, to every other split (and by `jaxcxr.evaluate
--data` to other datasets). Nothing is fitted on a test split, and a run without a validation
split fits nothing and says so in its reports.

Layout (`WORKDIR/calibration/`; `<suffix>` is `@<step>` for the re-evaluation of an older step):

    temperature<suffix>.json        calibration.Temperature.to_json(): T, fitted_on, NLLs
    operating_points<suffix>.json   operating_points.OperatingPoints.to_json() plus `scores`: the
                                    thresholds apply to temperature-scaled probabilities when a
                                    temperature was fitted (softmax(z / T) changes each class's
                                    one-vs-rest ranking across images, so thresholds and
                                    temperature must be used together), else to raw ones.

Each report of another split gets two blocks beside its raw `calibration` block:
`calibration_scaled` (ECE, Brier, NLL of the temperature-scaled probabilities) and
`operating_points` (per class: the validation-chosen threshold and the sensitivity, specificity,
precision and F1 at it, with patient-bootstrap intervals).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import ml_collections
import numpy as np

from jaxcxr import calibration, operating_points

DIRNAME = "calibration"
SCORES_SCALED = "temperature-scaled probabilities (temperature.json)"
SCORES_RAW = "raw model probabilities (no temperature fitted)"


@dataclasses.dataclass(frozen=True)
class PostHoc:
  """What a run fitted on validation (either part may be None)."""

  temperature: calibration.Temperature | None
  points: operating_points.OperatingPoints | None

  def scores(self, probs: np.ndarray) -> np.ndarray:
    """The scores the thresholds apply to: temperature-scaled probabilities when fitted."""
    return probs if self.temperature is None else self.temperature.apply(probs=probs)


def parse_operating_point(spec: str) -> dict[str, Any]:
  """`config.report.operating_point` → keyword arguments of `choose_thresholds`.

  Comma-separated items: `youden` (the default rule), `sensitivity>=T` (every class at the
  highest threshold whose validation sensitivity reaches T) and `<class>>=T` (that class by a
  target sensitivity, the others by the rule), e.g. `youden,covid19>=0.95`.
  """
  out: dict[str, Any] = {"rule": "youden", "per_class_target": {}}
  for item in (s.strip() for s in spec.split(",")):
    if not item or item == "youden":
      continue
    m = re.fullmatch(r"(.+?)\s*>=\s*([0-9.]+)", item)
    if not m:
      raise ValueError(
        f"config.report.operating_point={spec!r}: item {item!r} is not 'youden', "
        "'sensitivity>=T' or '<class>>=T' (e.g. 'youden,covid19>=0.95')."
      )
    name, target = m.group(1), float(m.group(2))
    if not 0 < target <= 1:
      raise ValueError(
        f"config.report.operating_point={spec!r}: target {target} of {name!r} is not in (0, 1]."
      )
    if name == "sensitivity":
      out.update(rule="sensitivity", target_sensitivity=target)
    else:
      out["per_class_target"][name] = target
  return out


def check(report_cfg: ml_collections.ConfigDict, class_names: list[str]) -> None:
  """Refuses, before training, an operating point naming a class the run does not have."""
  unknown = sorted(set(parse_operating_point(report_cfg.operating_point)["per_class_target"]))
  unknown = [n for n in unknown if n not in class_names]
  if unknown:
    raise ValueError(
      f"config.report.operating_point={report_cfg.operating_point!r} names {unknown}, not among "
      f"the run's classes {list(class_names)}."
    )


def paths(workdir: str, suffix: str = "") -> tuple[str, str]:
  d = os.path.join(workdir, DIRNAME)
  return (
    os.path.join(d, f"temperature{suffix}.json"),
    os.path.join(d, f"operating_points{suffix}.json"),
  )


def fit(
  labels: np.ndarray,
  probs: np.ndarray,
  class_names: list[str],
  split: str,
  report_cfg: ml_collections.ConfigDict,
) -> PostHoc:
  """Temperature (if `report_cfg.temperature_scaling`) and thresholds (if
  `report_cfg.operating_point`) on the validation split `split` (test splits are refused)."""
  temp = None
  if report_cfg.get("temperature_scaling", True):
    temp = calibration.fit_temperature(labels, split=split, probs=probs)
  points = None
  spec = report_cfg.get("operating_point", "youden")
  if spec:
    scores = probs if temp is None else temp.apply(probs=probs)
    points = operating_points.choose_thresholds(
      labels, scores, class_names, split=split, **parse_operating_point(spec)
    )
  return PostHoc(temp, points)


def save(post: PostHoc, workdir: str, suffix: str = "") -> None:
  t_path, p_path = paths(workdir, suffix)
  os.makedirs(os.path.dirname(t_path), exist_ok=True)
  for path, obj in ((t_path, post.temperature), (p_path, post.points)):
    if obj is None:
      if os.path.exists(path):
        os.remove(path)  # A stale file from an earlier config would otherwise be applied.
      continue
    d = obj.to_json()
    if obj is post.points:
      d["scores"] = SCORES_RAW if post.temperature is None else SCORES_SCALED
    with open(path, "w") as f:
      json.dump(d, f, indent=2)


def load(workdir: str, suffix: str = "") -> PostHoc | None:
  """The saved temperature and thresholds of a run; None if it saved neither."""
  t_path, p_path = paths(workdir, suffix)
  temp = points = None
  if os.path.exists(t_path):
    with open(t_path) as f:
      temp = calibration.Temperature.from_json(json.load(f))
  if os.path.exists(p_path):
    with open(p_path) as f:
      d = json.load(f)
    points = operating_points.OperatingPoints.from_json(d)
    expected = SCORES_RAW if temp is None else SCORES_SCALED
    if d.get("scores") != expected:
      raise ValueError(
        f"{p_path} was chosen on {d.get('scores')!r} but the run's saved temperature implies "
        f"{expected!r}: the two files do not belong together."
      )
  return None if temp is None and points is None else PostHoc(temp, points)


def apply(
  post: PostHoc | None,
  labels: np.ndarray,
  probs: np.ndarray,
  patient_ids: Any,
  class_names: list[str],
  report_cfg: ml_collections.ConfigDict,
  why_none: str = "",
) -> dict[str, Any]:
  """The `calibration_scaled` and `operating_points` blocks of a report of another split.

  With `post` None, one `post_hoc` block saying why (`why_none`) nothing was applied.
  """
  if post is None:
    return {"post_hoc": {"applied": False, "reason": why_none}}
  out: dict[str, Any] = {}
  bins = int(report_cfg.get("calibration_bins", calibration.DEFAULT_BINS)) or (
    calibration.DEFAULT_BINS
  )
  if post.temperature is not None:
    t = post.temperature
    scaled = t.apply(probs=probs)
    out["calibration_scaled"] = {
      "temperature": t.temperature,
      "fitted_on": t.fitted_on,
      **calibration.calibration_report(labels, scaled, n_bins=bins),
    }
  if post.points is not None:
    n_boot = int(report_cfg.get("bootstrap", 2000))  # 0: estimates without intervals.
    out["operating_points"] = {
      "scores": SCORES_RAW if post.temperature is None else SCORES_SCALED,
      **operating_points.evaluate_operating_points(
        post.points,
        labels,
        post.scores(probs),
        patient_ids,
        class_names,
        n_resamples=n_boot,
        seed=int(report_cfg.get("bootstrap_seed", 0)),
        method=report_cfg.get("bootstrap_method", "bca"),
      ),
    }
  return out


def for_splits(
  ctx: Any, state: Any, evs: dict[str, Any], workdir: str, suffix: str = "", write: bool = True
) -> dict[str, dict[str, Any]]:
  """Fits on `config.val_split` and returns the blocks to add to each evaluated split's report.

  Args:
    ctx: the run's `evaluators.EvalContext`.
    state: the evaluated train state (only used when the validation split was not in `evs`).
    evs: `{split: classification evaluator}` that have run (their `last` outputs are read).
    workdir, suffix: where the fitted files go (`WORKDIR/calibration/*<suffix>.json`).
    write: whether this process writes them (process 0).
  """
  config = ctx.config
  rcfg = config.report
  if not rcfg.get("temperature_scaling", True) and not rcfg.get("operating_point", "youden"):
    return {}
  fit_split = config.val_split
  reason = ""
  if not fit_split:
    reason = "config.val_split is empty"
  elif "test" in fit_split.lower():
    reason = f"config.val_split={fit_split!r} names a test split"
  elif fit_split not in ctx.data.splits:
    reason = f"config.val_split={fit_split!r} is not a split of this run {sorted(ctx.data.splits)}"
  if reason:
    if write:
      save(PostHoc(None, None), workdir, suffix)  # No stale files of an earlier run.
    why = (
      f"{reason}: no temperature and no thresholds were fitted (they are fitted on validation "
      "only, never on test); the figures above are of the raw probabilities."
    )
    return {s: apply(None, None, None, None, [], rcfg, why_none=why) for s in evs}
  ev = evs.get(fit_split)
  if ev is None:  # Validation is not among the reported splits: one extra pass, not reported.
    from jaxcxr import evaluators  # pylint: disable=g-import-not-at-top

    ev = evaluators.create(fit_split, ml_collections.ConfigDict({"split": fit_split}), ctx)
    ev.run(state)
  post = fit(ev.last["label"], ev.last["probs"], list(ctx.class_names), fit_split, rcfg)
  if write:
    save(post, workdir, suffix)
  out = {}
  for split, e in evs.items():
    if split == fit_split:
      out[split] = {
        "post_hoc": {
          "applied": False,
          "reason": f"fitted on this split: {DIRNAME}/temperature{suffix}.json and "
          f"{DIRNAME}/operating_points{suffix}.json (its own figures at them would be in-sample)",
        }
      }
    else:
      last = e.last
      out[split] = apply(post, last["label"], last["probs"], last.get("patient"),
                         list(ctx.class_names), rcfg)  # fmt: skip
  return out

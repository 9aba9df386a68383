r"""The run report: `WORKDIR/report.html` with PNG figures, from what a run leaves behind.

    python -m jaxcxr.report --workdir W

Built at the end of training (`config.report.html`, on by default) and rebuilt by the command
above, from files only (no model, no data): `eval/<split>.json` and `_predictions.npz` (metrics
with their patient-bootstrap 95% intervals, calibration, operating points; `jaxcxr.train`),
`calibration/` (`jaxcxr.post_hoc`), `data_splits.json`, the TensorBoard scalars in `tb/` (read
here without TensorBoard: the event files are TFRecord-framed `Event` protos, which tensorboardX
ships), `external/index.json` (`jaxcxr.evaluate --data`) and, if present, `audit/audit.md` (the
leakage audit written there with `python -m jaxcxr.audit --config ... --out WORKDIR/audit`).

Figures (`WORKDIR/report/*.png`, matplotlib's Agg backend): per split, one-vs-rest ROC and
precision-recall curves per class (Fawcett 2006; Saito & Rehmsmeier 2015 on why PR curves matter
for rare classes), the confusion matrix, reliability diagrams before and after temperature
scaling (`calibration.reliability_diagram`); the training curves (loss, learning rate, validation
metrics) with the stage boundaries; per external evaluation its ROC curves and reliability diagram.

The one part that needs the model and the data: the heat-map gallery (`jaxcxr.gallery`; Grad-CAM
of the K most confidently correct and wrong test images per class, `--gallery K`, default the
run's `config.report.gallery`, 0: off). Where it cannot be made (the prepared data or the
checkpoint gone) the report is still built and says why.
"""

from __future__ import annotations

import glob
import html
import json
import os
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import flags, logging

from jaxcxr import calibration, cli, post_hoc

FIG_DIR = "report"


# --- reading the run ------------------------------------------------------------------------------


def read_scalars(tb_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """`{tag: (steps, values)}` of every scalar in the TensorBoard event files of `tb_dir`.

  Later files (a resumed run) override earlier values of the same step.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

  values: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      while True:
        header = f.read(12)  # uint64 length, uint32 masked CRC of the length.
        if len(header) < 12:
          break
        (n,) = struct.unpack("<Q", header[:8])
        data = f.read(n)
        f.read(4)  # CRC of the data.
        if len(data) < n:
          break  # A truncated last record (a run killed mid-write).
        event = event_pb2.Event()
        event.ParseFromString(data)
        for v in event.summary.value:
          if v.HasField("simple_value"):
            values.setdefault(v.tag, {})[int(event.step)] = float(v.simple_value)
  out = {}
  for tag, d in values.items():
    steps = np.array(sorted(d))
    out[tag] = (steps, np.array([d[s] for s in steps]))
  return out


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def _splits(workdir: str) -> list[str]:
  """The run's final reports, in the order val, test, others (older-step reports left out)."""
  names = [
    os.path.basename(p)[: -len(".json")]
    for p in glob.glob(os.path.join(workdir, "eval", "*.json"))
    if "@" not in os.path.basename(p)
  ]
  return sorted(names, key=lambda n: ({"train": 0, "val": 1, "test": 2}.get(n, 3), n))


def _predictions(path: str) -> dict[str, np.ndarray] | None:
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


# --- figures -------------------------------------------------------------------------------------


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _one_vs_rest(labels: np.ndarray, num_classes: int) -> np.ndarray:
  if labels.ndim == 2:
    return (labels > 0.5).astype(int)
  return np.eye(num_classes, dtype=int)[labels.astype(int)]


def roc_pr_figure(
  labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: str, title: str
) -> str:
  """One-vs-rest ROC (left) and precision-recall (right) curves of every class with both
  positives and negatives; classes without are named in the legend as undefined."""
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top

  plt = _plt()
  y = _one_vs_rest(labels, len(class_names))
  fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
  for c, name in enumerate(class_names):
    if not 0 < y[:, c].sum() < len(y):
      roc.plot([], [], " ", label=f"{name}: undefined ({int(y[:, c].sum())} positives)")
      continue
    fpr, tpr, _ = skm.roc_curve(y[:, c], probs[:, c])
    roc.plot(fpr, tpr, label=f"{name} (AUROC {skm.auc(fpr, tpr):.3f})")
    prec, rec, _ = skm.precision_recall_curve(y[:, c], probs[:, c])
    ap = skm.average_precision_score(y[:, c], probs[:, c])
    pr.plot(rec, prec, label=f"{name} (AP {ap:.3f}, prevalence {y[:, c].mean():.2f})")
  roc.plot([0, 1], [0, 1], "k--", lw=0.8)
  roc.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{title}: ROC", xlim=(0, 1))
  pr.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall", xlim=(0, 1))
  pr.set_ylim(0, 1.02)
  for ax in (roc, pr):
    ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def confusion_figure(
  cm: Sequence[Sequence[int]], class_names: Sequence[str], path: str, title: str
):
  """The confusion matrix (rows: true class, columns: argmax prediction) with counts."""
  plt = _plt()
  cm = np.asarray(cm)
  size = 1.2 + 0.7 * len(class_names)
  fig, ax = plt.subplots(figsize=(size + 1, size))
  im = ax.imshow(cm, cmap="Blues")
  ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
  ax.set_yticks(range(len(class_names)), class_names)
  for i in range(cm.shape[0]):
    for j in range(cm.shape[1]):
      colour = "white" if cm[i, j] > cm.max() / 2 else "black"
      ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour, fontsize=9)
  ax.set(xlabel="predicted (argmax)", ylabel="true", title=title)
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def stage_boundaries(scalars: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[tuple[int, int]]:
  """`[(step, stage)]` where `train/stage` changes (the first logged step of each later stage)."""
  if "train/stage" not in scalars:
    return []
  steps, stages = scalars["train/stage"]
  change = np.flatnonzero(np.diff(stages) != 0) + 1
  return [(int(steps[i]), int(stages[i])) for i in change]


def training_figure(
  scalars: dict[str, tuple[np.ndarray, np.ndarray]], val_split: str, path: str
) -> str | None:
  """Loss (train and validation), learning rate and validation metrics against the step, with
  dotted lines at stage boundaries; None if the run logged no training scalars."""
  if "train/loss" not in scalars:
    return None
  plt = _plt()
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  loss, lr, met = axes
  loss.plot(*scalars["train/loss"], label="train loss")
  if f"{val_split}/loss" in scalars:
    loss.plot(*scalars[f"{val_split}/loss"], "o-", label=f"{val_split} loss")
  loss.set(xlabel="step", title="loss")
  if "train/lr" in scalars:
    lr.plot(*scalars["train/lr"])
  lr.set(xlabel="step", title="learning rate")
  plotted = False
  for key in ("accuracy", "auroc_macro", "map", "top2_accuracy"):
    tag = f"{val_split}/{key}"
    if tag in scalars:
      met.plot(*scalars[tag], "o-", label=f"{val_split} {key}")
      plotted = True
  met.set(xlabel="step", title=f"{val_split} metrics during training")
  if not plotted:
    met.text(0.5, 0.5, "no evaluation during training\n(config.eval_every_steps=0)",
             ha="center", va="center", transform=met.transAxes)  # fmt: skip
  for ax in axes:
    for step, stage in stage_boundaries(scalars):
      ax.axvline(step, color="grey", ls=":", lw=1)
      ax.text(step, 1.0, f" stage {stage}", transform=ax.get_xaxis_transform(), fontsize=7,
              va="top", color="grey")  # fmt: skip
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body { font-family: sans-serif; max-width: 1250px; margin: 1em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 49%; vertical-align: top; border: 1px solid #ddd; margin: 4px 0; }
.note { color: #555; font-size: 13px; } pre { background: #f7f7f7; padding: 8px; overflow: auto; }
figure.tile { display: inline-block; margin: 3px; width: 170px; vertical-align: top; }
figure.tile img { width: 170px; max-width: none; image-rendering: pixelated; margin: 0; }
figure.tile figcaption { font-size: 11px; } figure.wrong figcaption { color: #a00; }
"""


def _fmt(v: Any, ci: Any = None) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, float):
    text = f"{v:.3f}"
  else:
    text = html.escape(str(v))
  if ci:
    text += f" <span class=note>[{ci[0]:.3f}, {ci[1]:.3f}]</span>"
  return text


def _fmt_ci(ci: Any) -> str:
  return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


HEADLINE = ("accuracy", "auroc_macro", "map", "top2_accuracy")


def _headline_rows(reports: dict[str, dict[str, Any]]) -> list[list[str]]:
  """One row per report: n, the headline metrics with intervals, ECE/Brier/NLL raw and scaled."""
  rows = []
  for name, r in reports.items():
    cal, scaled = r.get("calibration", {}), r.get("calibration_scaled", {})
    ece = lambda c: (c.get("ece") or c.get("ece_classwise") or {}).get("ece")
    rows.append(
      [html.escape(name), str(r.get("num_examples"))]
      + [_fmt(r.get(k), r.get(f"{k}_ci95")) for k in HEADLINE]
      + [_fmt(ece(cal)), _fmt(cal.get("brier")), _fmt(cal.get("nll"))]
      + [_fmt(ece(scaled)) if scaled else "—", _fmt(scaled.get("nll")) if scaled else "—"]
    )
  return rows


HEADLINE_HEADER = ["set", "images", *HEADLINE, "ECE", "Brier", "NLL", "ECE (T-scaled)",
                   "NLL (T-scaled)"]  # fmt: skip


def _per_class_table(r: dict[str, Any]) -> str:
  rows = []
  for name, m in r.get("per_class", {}).items():
    rows.append(
      [html.escape(name), str(m.get("support"))]
      + [
        _fmt(m.get(k), m.get(f"{k}_ci95"))
        for k in ("auroc", "average_precision", "sensitivity", "specificity", "precision", "f1")
      ]
      + [_fmt_ci(m.get("auroc_delong_ci95"))]
    )
  header = ["class", "support", "AUROC", "AP", "sensitivity", "specificity", "precision", "F1",
            "AUROC DeLong 95%"]  # fmt: skip
  return _table(header, rows)


def _operating_points_table(r: dict[str, Any]) -> str:
  ops = r.get("operating_points")
  if not ops:
    note = r.get("post_hoc", {}).get("reason")
    return (
      f"<p class=note>No operating points applied{': ' + html.escape(note) if note else ''}.</p>"
    )
  rows = [
    [html.escape(name), _fmt(e["threshold"]), html.escape(e["rule"]), str(e["support"])]
    + [_fmt(e[k], e.get(f"{k}_ci95")) for k in ("sensitivity", "specificity", "precision", "f1")]
    for name, e in ops["classes"].items()
  ]
  header = ["class", "threshold", "rule", "positives", "sensitivity", "specificity", "precision",
            "F1"]  # fmt: skip
  return (
    f"<p class=note>Thresholds chosen on <b>{html.escape(ops['fitted_on'])}</b>, applied to "
    f"{html.escape(ops.get('scores', 'probabilities'))}; one-vs-rest.</p>" + _table(header, rows)
  )


def _external_title(e: dict[str, str]) -> str:
  """`external: data:split (out folder)`: two evaluations of one set differ by their folder."""
  return f"external: {e['data']}:{e['split']} ({os.path.basename(e['out'].rstrip('/'))})"


def _img(rel: str | None, alt: str) -> str:
  return f'<img src="{html.escape(rel)}" alt="{html.escape(alt)}">' if rel else ""


def _figures_for(
  workdir: str, key: str, title: str, r: dict[str, Any], pred: dict[str, np.ndarray] | None,
  post: post_hoc.PostHoc | None, fitted_on: str | None,
) -> list[str]:  # fmt: skip
  """The figures of one evaluated set (relative paths), written under WORKDIR/report/."""
  rels = []
  fig = lambda name: os.path.join(FIG_DIR, f"{key}_{name}.png")
  if pred is not None:
    names = [str(n) for n in pred.get("class_names", r["class_names"])]
    rel = fig("roc_pr")
    roc_pr_figure(pred["label"], pred["probs"], names, os.path.join(workdir, rel), title)
    rels.append(rel)
    rel = fig("reliability")
    calibration.reliability_diagram(
      pred["label"], pred["probs"], os.path.join(workdir, rel), title=f"{title} (raw)"
    )
    rels.append(rel)
    if post is not None and post.temperature is not None and key != fitted_on:
      rel = fig("reliability_scaled")
      t = post.temperature
      calibration.reliability_diagram(
        pred["label"], t.apply(probs=pred["probs"]), os.path.join(workdir, rel),
        title=f"{title} (T={t.temperature:.2f} from {t.fitted_on})",
      )  # fmt: skip
      rels.append(rel)
  if r.get("confusion_matrix") is not None:
    rel = fig("confusion")
    confusion_figure(r["confusion_matrix"], r["class_names"], os.path.join(workdir, rel), title)
    rels.append(rel)
  return rels


def _gallery_section(workdir: str, k: int, config: dict[str, Any]) -> str:
  """The "Heat maps" section: per class a row of correct and a row of wrong test tiles, or why
  there are none."""
  out = ["<h2>Heat maps (test)</h2>"]
  if k == 0:
    return out[0] + ("<p class=note>Gallery off (config.report.gallery=0 or --gallery 0).</p>")
  from jaxcxr import gallery  # pylint: disable=g-import-not-at-top

  try:
    g = gallery.build(workdir, k, batch_size=config.get("input", {}).get("eval_batch_size") or 32)
  except Exception as e:  # noqa: BLE001 - the rest of the report is made from files alone.
    logging.warning("No heat-map gallery: %s", e)
    return out[0] + (
      f"<p class=note>No heat-map gallery: {html.escape(type(e).__name__)}: "
      f"{html.escape(str(e))}</p>"
    )
  names, multi = g["class_names"], g["multi_label"]
  out.append(
    f"<p class=note>Grad-CAM (Selvaraju et al. 2017) of the model's last feature map at the "
    f"state the test report evaluated ({'best, ' if g['state']['select'] == 'best' else ''}step "
    f"{g['state']['step']}), on the test images as evaluation preprocessed them. Per class up to "
    f"{k} "
    + (
      "true positives with the highest probability and the most confident errors on the class "
      "(missed or false alarm; decision p &ge; 0.5); the map explains that class."
      if multi
      else "images of that true class predicted correctly with the highest confidence, and up to "
      f"{k} predicted wrongly with the highest probability of the wrong class (argmax); the map "
      "explains the predicted class."
    )
    + (
      f" Probabilities recomputed for these images differ from eval/test_predictions.npz by at "
      f"most {g['max_prob_diff']:.2g}.</p>"
      if g["max_prob_diff"] is not None
      else "</p>"
    )
  )
  for c, name in enumerate(names):
    out.append(f"<h3>{html.escape(name)}</h3>")
    for kind in gallery.KINDS:
      tiles = [t for t in g["tiles"] if t["class"] == c and t["kind"] == kind]
      if not tiles:
        out.append(f"<p class=note>{kind}: no test image.</p>")
        continue
      cells = []
      for t in tiles:
        if multi:
          truth = "positive" if t["true"][c] > 0.5 else "negative"
          caption = f"true {name}: {truth}; p({name}) = {t['prob']:.3f}"
        else:
          caption = (
            f"true {names[t['true']]}; predicted {names[t['predicted']]} (p = {t['prob']:.3f})"
          )
        cells.append(
          f'<figure class="tile {kind}" data-kind="{kind}" data-index="{t["index"]}" '
          f'data-class="{c}">{_img(t["file"], caption)}'
          f"<figcaption>#{t['index']}: {html.escape(caption)}</figcaption></figure>"
        )
      out.append(f"<p class=note><b>{kind}</b></p><div>{''.join(cells)}</div>")
  return "".join(out)


def gallery_size(config: dict[str, Any]) -> int:
  """The run's `config.report.gallery` (a run saved before the key: the current default)."""
  from jaxcxr import config_lib  # pylint: disable=g-import-not-at-top

  k = config.get("report", {}).get("gallery", config_lib.base_config().report.gallery)
  return int(k)


def build_after_training(workdir: str, gallery: int) -> None:
  """`build` at the end of `jaxcxr.train`, printing the path. Its failure is logged, not raised:
  the reports it is made from are written, and `python -m jaxcxr.report --workdir W` rebuilds it."""
  try:
    with cli.phase("writing the run report"):
      print(f"Run report: {build(workdir, gallery=gallery)}", flush=True)
  except Exception as e:  # noqa: BLE001
    logging.exception("The run report failed (%s); rebuild: python -m jaxcxr.report --workdir %s",
                      e, workdir)  # fmt: skip


def build(workdir: str, gallery: int | None = None) -> str:
  """Writes `WORKDIR/report.html` and its figures; returns the HTML path.

  `gallery`: heat-map tiles per class and kind (`jaxcxr.gallery`); None: the run's
  `config.report.gallery`; 0: none (the report is then made from files alone)."""
  workdir = os.path.abspath(workdir)
  os.makedirs(os.path.join(workdir, FIG_DIR), exist_ok=True)
  config = _read_json(os.path.join(workdir, "config.json")) if os.path.exists(
    os.path.join(workdir, "config.json")
  ) else {}  # fmt: skip
  val_split = config.get("val_split", "val")
  parts = [f"<h1>jaxcxr run report</h1><p class=note>{html.escape(workdir)}</p>"]
  inp = config.get("input", {})
  data = " + ".join(m["data"] for m in inp.get("mixture") or ()) or str(inp.get("data", ""))
  row = [
    config.get("model_name", ""),
    data,
    config.get("model_init") or "none",
    config.get("select"),
  ]
  parts.append(
    _table(["model", "data", "pretrained init", "select"], [[html.escape(str(v)) for v in row]])
  )

  splits_path = os.path.join(workdir, "data_splits.json")
  if os.path.exists(splits_path):
    ds = _read_json(splits_path)
    parts.append("<h2>Splits</h2>")
    names = ds.get("class_names", [])
    rows = [
      [html.escape(s), str(v["images"]), str(v["patients"])]
      + [str(v["per_class"].get(n, "")) for n in names]
      for s, v in ds.get("splits", {}).items()
    ]
    parts.append(_table(["split", "images", "patients", *names], rows))
    extra = {k: v for k, v in ds.items() if k not in ("splits", "patients", "class_names")}
    if extra:
      parts.append(f"<pre>{html.escape(json.dumps(extra, indent=1)[:4000])}</pre>")

  reports = {s: _read_json(os.path.join(workdir, "eval", f"{s}.json")) for s in _splits(workdir)}
  post = post_hoc.load(workdir)
  externals = []
  index_path = os.path.join(workdir, "external", "index.json")
  if os.path.exists(index_path):
    for e in _read_json(index_path):
      path = os.path.join(e["out"], "evaluation.json")
      if os.path.exists(path):
        externals.append((e, _read_json(path)))
      else:
        logging.warning("External evaluation %s is listed but missing; left out.", path)

  parts.append("<h2>Metrics (95% patient-bootstrap intervals)</h2>")
  table_reports = dict(reports)
  for e, r in externals:
    table_reports[_external_title(e)] = r
  parts.append(_table(HEADLINE_HEADER, _headline_rows(table_reports)))
  if reports:
    any_r = next(iter(reports.values()))
    b = any_r.get("bootstrap", {})
    parts.append(
      f"<p class=note>Bootstrap: {html.escape(str(b.get('method')))}, "
      f"{b.get('n_resamples')} resamples of patients (images without a patient id are their own "
      f"cluster: {b.get('n_images_without_patient_id')}). ECE: "
      f"{html.escape(str((any_r.get('calibration', {}).get('ece') or {}).get('binning')))}. "
      "T-scaled: after the temperature fitted on validation (never on test).</p>"
    )
  if post is not None and post.temperature is not None:
    t = post.temperature
    parts.append(
      f"<p class=note>Temperature T = {t.temperature:.3f}, fitted on {html.escape(t.fitted_on)} "
      f"({t.num_examples} images; NLL {t.nll_before:.4f} → {t.nll_after:.4f}).</p>"
    )

  fitted_on = post.points.fitted_on if post and post.points else (
    post.temperature.fitted_on if post and post.temperature else None
  )  # fmt: skip
  for split, r in reports.items():
    parts.append(f"<h2>{html.escape(split)}</h2>")
    sel = r.get("selected", {})
    parts.append(f"<p class=note>state: {html.escape(json.dumps(sel))}</p>")
    parts.append(_per_class_table(r))
    parts.append(_operating_points_table(r))
    pred = _predictions(os.path.join(workdir, "eval", f"{split}_predictions.npz"))
    for rel in _figures_for(workdir, split, split, r, pred, post, fitted_on):
      parts.append(_img(rel, rel))

  k = gallery_size(config) if gallery is None else int(gallery)
  if k < 0:
    raise ValueError(f"gallery={k}: expected a non-negative number of tiles per class.")
  parts.append(_gallery_section(workdir, k, config))

  for i, (e, r) in enumerate(externals):
    title = _external_title(e).removeprefix("external: ")
    parts.append(f"<h2>External: {html.escape(title)}</h2>")
    ext = r.get("external", {})
    parts.append(
      f"<p class=note>class map {html.escape(json.dumps(ext.get('class_map')))}; left out "
      f"{html.escape(json.dumps(ext.get('left_out_classes')))}; images per run class "
      f"{html.escape(json.dumps(ext.get('images_per_run_class')))}; {html.escape(e['out'])}</p>"
    )
    for k, why in ext.get("undefined", {}).items():
      parts.append(f"<p class=note><b>{html.escape(k)}</b>: {html.escape(why)}</p>")
    parts.append(_per_class_table(r))
    parts.append(_operating_points_table(r))
    pred = _predictions(os.path.join(e["out"], "predictions.npz"))
    for rel in _figures_for(workdir, f"external{i}", title, r, pred, post, None):
      parts.append(_img(rel, rel))

  parts.append("<h2>Training</h2>")
  scalars = read_scalars(os.path.join(workdir, "tb"))
  rel = os.path.join(FIG_DIR, "training.png")
  if training_figure(scalars, val_split, os.path.join(workdir, rel)):
    parts.append(_img(rel, "training curves"))
    bounds = stage_boundaries(scalars)
    if bounds:
      text = ", ".join(f"stage {st} from step {s}" for s, st in bounds)
      parts.append(f"<p class=note>Stage boundaries: {text}.</p>")
  else:
    parts.append("<p class=note>No training scalars in tb/.</p>")

  audit = os.path.join(workdir, "audit", "audit.md")
  parts.append("<h2>Audit</h2>")
  if os.path.exists(audit):
    with open(audit) as f:
      parts.append(f"<pre>{html.escape(f.read()[:20000])}</pre>")
  else:
    parts.append(
      "<p class=note>No audit in this run (python -m jaxcxr.audit --config ... --out "
      "WORKDIR/audit writes one there).</p>"
    )
  page = "<!doctype html><html><head><meta charset=utf-8><title>jaxcxr report</title>"
  page += f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
  path = os.path.join(workdir, "report.html")
  with open(path, "w") as f:
    f.write(page)
  return path


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_integer(
    "gallery", None, "Heat-map tiles per class and kind (correct/wrong) of the test split; "
    "default: the run's config.report.gallery; 0: no gallery (no model, no data needed)."
  )  # fmt: skip


def main(argv):
  del argv
  if FLAGS.gallery is not None and FLAGS.gallery < 0:
    raise cli.UserError(f"--gallery={FLAGS.gallery} must be 0 or more.")
  cli.quiet_checkpoint_logs()
  print(build(FLAGS.workdir, gallery=FLAGS.gallery), flush=True)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)

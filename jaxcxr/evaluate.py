r"""Evaluate a trained run: restore a checkpoint of a workdir and write the metric reports.

    python -m jaxcxr.evaluate --workdir W --splits test
    python -m jaxcxr.evaluate --config configs/chest_xray.py --workdir W --step 100 --splits val
    python -m jaxcxr.evaluate --workdir W --step best --splits test

Uses the config training saved in the workdir (or `--config`, with the same overrides), restores
the latest checkpoint (or `--step`: a number, or `best`) with `jaxcxr.inference` (an abstract
model, `nnx.eval_shape`; only parameters and statistics are read, no optimizer state is allocated
and no pretrained weights are downloaded), and writes `WORKDIR/eval/<split>.json` (or
`<split>@<step>.json` for an older step, `<split>@best.json`) with the keys of
`jaxcxr.metrics.classification_metrics`, its `loss` and `selected`, and the per-example
predictions beside it.

External evaluation: the run on another dataset or split (no `--config`: the run's own
`config.json` is read; the run's training data is not needed):

    python -m jaxcxr.evaluate --workdir W --data covid19_radiography:train \
        --class_map Normal=normal,COVID=covid19,Lung_Opacity=-,Viral_Pneumonia=pneumonia \
        --manual_dir ../shared/data/covid19_radiography --out /tmp/W_on_radiography

`--data NAME[/config][:split]` (default split `test`); `--all_images` scores every image of the
dataset, all its splits concatenated (for a dataset none of whose images was trained on; split
`all` in the report). The dataset's classes map onto the run's by name; a class the run does not
know is refused unless `--class_map` maps it (`src=dst`) or leaves it out (`src=-`, counted).
The dataset is prepared into its own TFDS data dir (`--data_dir`, default `OUT/tfds`; the run's
training data dir is refused), so an evaluation build never mixes with the training build. The
results go to `OUT/evaluation.json` (the metrics with patient-bootstrap intervals, calibration,
the run's saved temperature and thresholds applied: `jaxcxr.post_hoc`; what is undefined for
classes the set lacks, and why) and `OUT/predictions.npz`; `OUT` may not be `WORKDIR/eval`. The
run's `external/index.json` lists its external evaluations for the run report.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from jaxcxr import cli, evaluators, inference, losses, lung_mask, metrics, post_hoc, sharding, train
from jaxcxr.data import classes, tfds_access, views


def evaluate(
  config: ml_collections.ConfigDict | None,
  workdir: str,
  splits: tuple[str, ...] | None = None,
  step: int | str | None = None,
) -> dict[str, Any]:
  """Restores checkpoint `step` (default: latest; `best`) of `workdir` and evaluates `splits`.

  `config`: None reads the one training saved in the workdir.

  Returns:
    `{split: metrics}`; also written by process 0 under `workdir/eval/`.
  """
  workdir = os.path.abspath(workdir)
  config = config if config is not None else inference.load_run_config(workdir)
  s = train.setup(
    config, restoring=True, workdir=workdir
  )  # No pretrained download: the checkpoint has it all.
  select, step = inference.resolve_step(workdir, step)
  # Against the abstract model of the setup: only parameters and statistics are read.
  state = inference.restore_state(
    workdir,
    select,
    step,
    inference.ModelState(params=s.state.params, rest=s.state.rest),
    sharding.replicated(s.mesh),
  )
  loss_fn = losses.make_loss(config.loss, len(s.class_names), s.class_weights)
  ctx = evaluators.EvalContext(
    config=config, mesh=s.mesh, data=s.data, class_names=s.class_names, graphdef=s.graphdef,
    eval_step=jax.jit(
      functools.partial(train.eval_step, graphdef=s.graphdef, config=config, loss_fn=loss_fn)
    ),
  )  # fmt: skip
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  selected = {"select": "last" if select == "latest" else select, "step": int(step)}
  if select == "best":
    selected["monitor"] = config.best_monitor
  suffix = {"latest": "", "best": "@best"}.get(select, f"@{step}")
  return train.final_reports(
    ctx, state, tuple(splits or config.eval_splits), workdir, selected, suffix=suffix
  )


ALL_IMAGES = "all"  # The split name of `--all_images` in reports.


def parse_class_map(items: list[str] | tuple[str, ...] | None) -> dict[str, str]:
  """`["src=dst", "src=-"]` (the `--class_map` flag) → `{src: dst}`."""
  out = {}
  for item in items or ():
    src, eq, dst = item.partition("=")
    if not eq or not src.strip() or not dst.strip():
      raise ValueError(f"--class_map item {item!r} is not 'src=dst' (or 'src=-' to leave out).")
    out[src.strip()] = dst.strip()
  return out


def parse_data(spec: str) -> tuple[str, str | None]:
  """`NAME[/config][:split]` → (name, split or None)."""
  name, _, split = spec.partition(":")
  if not name:
    raise ValueError(f"--data={spec!r}: expected NAME[/config][:split].")
  return name, split or None


def _undefined_notes(result: dict[str, Any], class_names: list[str]) -> dict[str, str]:
  """What is undefined on a set that lacks some of the run's classes (or has only one), and why."""
  n = result["num_examples"]
  support = {c: result["per_class"][c]["support"] for c in class_names}
  absent = [c for c, k in support.items() if k == 0]
  only = [c for c, k in support.items() if k == n]
  notes = {}
  if absent or only:
    notes["auroc, average_precision, auroc_macro"] = (
      f"undefined: a one-vs-rest AUROC or AP needs positives and negatives of its class; "
      f"{absent or 'none'} have no positives here"
      + (f" and {only} no negatives" if only else "")
      + " (the macro mean needs every class)"
    )
  if absent:
    notes[f"sensitivity (recall) of {absent}"] = "undefined: no positives of these classes"
    notes[f"precision and f1 of {absent}"] = (
      "0 by construction (no true positive is possible; scikit-learn's zero_division=0 when "
      "nothing is predicted as them): uninformative, read their specificity instead"
    )
    notes[f"specificity of {absent}"] = (
      "defined: every image is a negative of them (1 - the rate at which images are called them)"
    )
  if only:
    notes[f"specificity of {only}"] = "undefined: every image is a positive of this class"
  return notes


def evaluate_external(
  workdir: str,
  data: str,
  out: str,
  *,
  class_map: dict[str, str] | None = None,
  manual_dir: str | None = None,
  data_dir: str | None = None,
  all_images: bool = False,
  config: ml_collections.ConfigDict | None = None,
) -> dict[str, Any]:
  """Scores the run in `workdir` on `data` (`NAME[/config][:split]`); writes `out/`.

  Returns:
    The report written to `out/evaluation.json`.
  """
  workdir, out = os.path.abspath(workdir), os.path.abspath(out)
  own_eval = os.path.join(workdir, "eval")
  if os.path.realpath(out) == os.path.realpath(own_eval) or os.path.realpath(out).startswith(
    os.path.realpath(own_eval) + os.sep
  ):
    raise ValueError(
      f"--out={out} is the run's own eval folder: an external evaluation must not overwrite "
      "WORKDIR/eval/<split>.json; choose another --out."
    )
  config = config or inference.load_run_config(workdir)
  run_classes = inference.class_names(workdir)
  name, split = parse_data(data)
  if split and all_images:
    raise ValueError(f"--data={data!r} names split {split!r} and --all_images asks for all.")
  data_dir = os.path.abspath(data_dir or os.path.join(out, "tfds"))
  train_dir = config.input.data_dir
  if train_dir and os.path.realpath(data_dir) == os.path.realpath(train_dir):
    raise ValueError(
      f"--data_dir={data_dir} is the run's training data dir: evaluation builds go to their own "
      "data dir (default OUT/tfds) so that they never mix with the training build."
    )
  builder = tfds_access.get_builder(name, data_dir)
  tfds_access.prepare(builder, manual_dir)
  builder = tfds_access.get_builder(name, data_dir)  # Re-read the written info.
  available = sorted(builder.info.splits.keys())
  if not all_images:
    split = split or "test"
    if split not in available:
      raise ValueError(
        f"{name} has no split {split!r}; it has {available} (name one as {name}:SPLIT, or "
        "--all_images for every image)."
      )
  names = tfds_access.label_names(builder)
  cmap, dropped = classes.resolve_class_map(name, names, run_classes, dict(class_map or {}))
  comp = classes.Component(name, () if all_images else (split,), cmap, manual_dir)
  index, readers, left_out = classes.read_index([comp], [builder], run_classes)
  if not len(index):
    raise ValueError(f"No image of {name} is left to evaluate after the class map {cmap}.")
  label = ALL_IMAGES if all_images else split
  view = views.View(label, readers, [name], index)
  multi = index.targets is not None
  report = {"method": "external", **left_out}
  ext_data = views.Data({label: view}, run_classes, report, multi_label=multi)
  # A lung-masked run sees these images masked by its own UNet too (cached under `out`).
  masker = lung_mask.run_masker(workdir, config, config.input.eval_batch_size or 16)
  if masker is not None:
    cache = lung_mask.cache_dir_for(config, out)
    ext_data = lung_mask.mask_data(ext_data, config, cache, masker, data_dir=data_dir)

  mesh = sharding.make_mesh()
  # The state the run reported (`config.select`), parameters and statistics only.
  restored = inference.restore(
    workdir, "best" if config.select == "best" else "latest", config, sharding.replicated(mesh)
  )
  graphdef, state, which = restored.graphdef, restored.state, restored.select
  loss_fn = losses.make_loss(config.loss, len(run_classes), None)
  ctx = evaluators.EvalContext(
    config=config, mesh=mesh, data=ext_data, class_names=run_classes, graphdef=graphdef,
    eval_step=jax.jit(
      functools.partial(train.eval_step, graphdef=graphdef, config=config, loss_fn=loss_fn)
    ),
  )  # fmt: skip
  ev = evaluators.create(
    label, ml_collections.ConfigDict({"split": label, **config.report.to_dict()}), ctx
  )
  result = ev.run(state)
  last = ev.last
  saved = post_hoc.load(workdir)
  result.update(
    post_hoc.apply(
      saved, last["label"], last["probs"], last.get("patient"), run_classes, config.report,
      why_none=f"the run saved no temperature or thresholds ({workdir}/{post_hoc.DIRNAME}/)",
    )
  )  # fmt: skip
  per_class_images = np.bincount(index.label, minlength=len(run_classes)) if not multi else None
  result["external"] = {
    "workdir": workdir,
    "state": which,
    "data": name,
    "split": label,
    "all_images": all_images,
    "splits_read": available if all_images else [split],
    "data_dir": data_dir,
    "manual_dir": manual_dir,
    "class_map": cmap,
    "left_out_classes": dropped,
    "left_out_images": left_out,
    "images_per_run_class": (
      dict(zip(run_classes, per_class_images.tolist(), strict=True))
      if per_class_images is not None
      else dict(zip(run_classes, index.targets.sum(0).tolist(), strict=True))
    ),
    "loss_note": "the unweighted training loss (class weights of the run not applied)",
    "undefined": {} if multi else _undefined_notes(result, run_classes),
  }
  if jax.process_index() == 0:
    os.makedirs(out, exist_ok=True)
    metrics.write_json(os.path.join(out, "evaluation.json"), result)
    ev.write_predictions(os.path.join(out, "predictions.npz"))
    _register(workdir, out, name, label)
    print(train.format_eval(f"{name}:{label}", result) + f" -> {out}", flush=True)
  return result


def _register(workdir: str, out: str, name: str, split: str) -> None:
  """Adds `out` to `WORKDIR/external/index.json` (what the run report shows beside its own)."""
  path = os.path.join(workdir, "external", "index.json")
  entries = []
  if os.path.exists(path):
    with open(path) as f:
      entries = json.load(f)
  entries = [e for e in entries if e["out"] != out] + [{"out": out, "data": name, "split": split}]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  metrics.write_json(path, entries)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file(
    "config", None, "The training config (default: the one saved in the workdir).",
    lock_config=True,
  )  # fmt: skip
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_list("splits", None, "Splits to evaluate (default: config.eval_splits).")
  flags.DEFINE_string("step", None, "Checkpoint step, 'latest' (default) or 'best'.")
  flags.DEFINE_string("data", None, "External evaluation: NAME[/config][:split] (default :test).")
  flags.DEFINE_list(
    "class_map", None, "With --data: src=dst,... onto the run's classes; src=- drops."
  )
  flags.DEFINE_string("manual_dir", None, "With --data: the dataset's manual download dir.")
  flags.DEFINE_string("data_dir", None, "With --data: TFDS data dir for its build (OUT/tfds).")
  flags.DEFINE_bool("all_images", False, "With --data: every image of every split, as one set.")
  flags.DEFINE_string("out", None, "With --data: the output folder (not WORKDIR/eval).")
  cli.define_multihost_flags()


def main(argv):
  del argv
  cli.init_multihost()
  cli.quiet_checkpoint_logs()
  if FLAGS.data:
    if not FLAGS.out:
      raise cli.UserError("--data needs --out (an external evaluation writes to its own folder).")
    evaluate_external(
      FLAGS.workdir, FLAGS.data, FLAGS.out, class_map=parse_class_map(FLAGS.class_map),
      manual_dir=FLAGS.manual_dir, data_dir=FLAGS.data_dir, all_images=FLAGS.all_images,
      config=FLAGS.config,
    )  # fmt: skip
    return
  evaluate(FLAGS.config, FLAGS.workdir, tuple(FLAGS.splits or ()) or None, FLAGS.step)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, config_help=True)

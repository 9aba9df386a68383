r"""Predict with a trained run on image files: PNG, JPEG, DICOM ..., one by one or whole folders.

    python -m jaxcxr.predict --workdir RUN --out preds/ image.png scans/ 'more/*.dcm'
    python -m jaxcxr.predict --workdir RUN --step best --explain gradcam --out preds/ scans/

Restores the run from its workdir alone (`jaxcxr.inference`: its saved config and class names,
an abstract model, parameters and statistics of `--step`), reads each file through the one image
decoder (`jaxcxr.data.images.read_grey`: DICOM by its display pipeline) and preprocesses it
exactly as evaluation during training does (a lung-masked run's UNet masks each image first,
`jaxcxr.lung_mask`; `jaxcxr.data.pipeline.Preprocess`: grey, bilinear resize; then
`training.steps.predict_logits`: [0, 1], the run's normalisation and channels), in padded batches
of `--batch_size` under one compiled program.

Writes `OUT/predictions.csv` and `OUT/predictions.json`: per image the class probabilities, the
predicted (highest-probability) class, the temperature-scaled probabilities where the run saved
a fitted temperature, and the decision at the run's operating points (class c is called when its
probability reaches c's threshold, chosen on validation) where it saved them. With `--explain
gradcam|lrp`, `OUT/overlays/<name>.png` shows the heat map of the predicted class over the image
as the model saw it. A file that cannot be read stops the run with an error naming every such
file; with `--skip_bad` they are left out, counted and listed.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import flags

from jaxcxr import cli, inference, lung_mask, post_hoc
from jaxcxr.data import augment, images, pipeline
from jaxcxr.inference import Predictor  # noqa: F401  (its home is inference; the name stays here)
from jaxcxr.training import steps as steps_lib

# What a folder is searched for (recursively); files named on the command line are read whatever
# their suffix (a DICOM without a suffix is recognised by its `DICM` marker).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", *images.DICOM_SUFFIXES)
EXPLAIN_METHODS = ("gradcam", "lrp")


def collect_inputs(inputs: Sequence[str]) -> list[str]:
  """Files named, files of folders (recursively, by `IMAGE_SUFFIXES`) and glob matches, in
  order, each once.

  Raises:
    ValueError: an input that is neither a file, a folder nor a pattern matching something, or
      no image at all.
  """
  found: list[str] = []
  for item in inputs:
    if os.path.isfile(item):
      found.append(item)
    elif os.path.isdir(item):
      found += _folder_images(item)
    else:
      matches = sorted(glob.glob(item, recursive=True))
      if not matches:
        raise ValueError(f"input {item!r} is not a file, a folder or a pattern matching files.")
      for m in matches:
        found += _folder_images(m) if os.path.isdir(m) else [m]
  unique = list(dict.fromkeys(os.path.abspath(f) for f in found))
  if not unique:
    raise ValueError(f"no image files in {list(inputs)} (looked for {', '.join(IMAGE_SUFFIXES)}).")
  return unique


def _folder_images(folder: str) -> list[str]:
  out = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
  return out


def load_images(
  paths: Sequence[str],
  image_size: int,
  skip_bad: bool = False,
  masker: lung_mask.Masker | None = None,
  mode: str = "black",
  margin: float = 0.0,
  *,
  resize: str = "stretch",
  pad_value: int = 128,
) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
  """Decodes and preprocesses `paths` as evaluation does: `(kept paths, uint8 (N, S, S, 1),
  unreadable [{file, error}])`; `resize`, `pad_value`: the run's `config.input` ones. With a
  `masker` (a lung-masked run) each image is first masked by its UNet as training masked its data
  (`lung_mask.apply` with `mode` and `margin`).

  Raises:
    ValueError: some files are unreadable and not `skip_bad`; the message names each.
  """
  pre = pipeline.Preprocess(image_size, resize=resize, pad_value=pad_value)
  kept, arrays, bad, pending = [], [], [], []

  def flush():
    # Masks in batches of the UNet's; full-resolution greys are held only that long.
    if masker is not None and pending:
      found, _ = masker.predict(pending)
      pending[:] = [
        lung_mask.apply(g, m, mode, margin, masker.resize)
        for g, m in zip(pending, found, strict=True)
      ]
    # The record the eval pipeline sees, decoded: Preprocess keeps uint8 grey as is and resizes.
    arrays.extend(pre.map({"image": g, "label": 0})["image"] for g in pending)
    pending.clear()

  for path in paths:
    try:
      grey = images.read_grey(path)
    except ValueError as e:
      bad.append({"file": path, "error": str(e)})
      continue
    pending.append(grey)
    kept.append(path)
    if len(pending) >= 64:
      flush()
  flush()
  if bad and not skip_bad:
    listing = "\n  ".join(b["error"] for b in bad)
    raise ValueError(
      f"{len(bad)} of {len(paths)} input files cannot be read (--skip_bad leaves them out):"
      f"\n  {listing}"
    )
  if not kept:
    raise ValueError(f"none of the {len(paths)} input files can be read.")
  return kept, np.stack(arrays), bad


def explain_maps(
  restored: inference.Restored, batch_images: np.ndarray, target: np.ndarray, method: str,
  batch_size: int,
) -> np.ndarray:  # fmt: skip
  """Heat maps `(N, S, S)` of class `target[i]` for uint8 images, computed on the model input."""
  from jaxcxr import explain  # pylint: disable=g-import-not-at-top

  if method not in EXPLAIN_METHODS:
    raise ValueError(f"--explain={method!r} is not one of {EXPLAIN_METHODS}.")
  model = restored.model()
  fn = explain.gradcam if method == "gradcam" else explain.lrp
  maps = []
  for start in range(0, len(batch_images), batch_size):
    chunk = batch_images[start : start + batch_size]
    x = steps_lib.model_inputs(augment.to_float(chunk), restored.config)
    maps.append(np.asarray(fn(model, x, np.asarray(target[start : start + batch_size]))))
  return np.concatenate(maps)


def _overlay_names(paths: Sequence[str], method: str) -> list[str]:
  """`<stem>_<method>.png`, made unique where two inputs share a stem."""
  names, seen = [], {}
  for p in paths:
    stem = os.path.splitext(os.path.basename(p))[0]
    n = seen.get(stem, 0)
    seen[stem] = n + 1
    names.append(f"{stem}_{method}.png" if n == 0 else f"{stem}-{n}_{method}.png")
  return names


def predict(
  workdir: str,
  inputs: Sequence[str],
  out_dir: str,
  *,
  step: str | int | None = "latest",
  batch_size: int = 32,
  explain: str | None = None,
  skip_bad: bool = False,
) -> dict[str, Any]:
  """Predicts the files of `inputs` with the run in `workdir`; writes `out_dir`'s files.

  Returns:
    What `predictions.json` holds.
  """
  if batch_size < 1:
    raise ValueError(f"--batch_size={batch_size} must be at least 1.")
  if explain and explain not in EXPLAIN_METHODS:
    raise ValueError(f"--explain={explain!r} is not one of {EXPLAIN_METHODS}.")
  paths = collect_inputs(inputs)
  restored = inference.restore(workdir, step)
  config, names = restored.config, restored.class_names
  # A lung-masked run masks its inputs with the UNet it trained with (refused if it changed).
  masker = lung_mask.run_masker(workdir, config, batch_size)
  lm = config.input.lung_mask
  t0 = time.perf_counter()
  kept, pixels, bad = load_images(
    paths,
    config.input.image_size,
    skip_bad,
    masker,
    lm.mode,
    float(lm.margin),
    **pipeline.resize_args(config.input),
  )
  t_decode = time.perf_counter() - t0
  predictor = Predictor(restored, batch_size)
  t0 = time.perf_counter()
  predictor.logits(pixels[:1])  # compiles the one batch shape
  t_compile = time.perf_counter() - t0
  t0 = time.perf_counter()
  logits = predictor.logits(pixels)
  t_predict = time.perf_counter() - t0
  probs = predictor.probabilities(logits)
  predicted = probs.argmax(-1)

  # Fitted on the validation split at the end of training (absent: raw probabilities only).
  post = post_hoc.load(workdir)
  temperature = post.temperature if post is not None else None
  points = post.points if post is not None else None
  calibrated = temperature.apply(logits=logits) if temperature is not None else None
  if points is not None and list(points.class_names) != names:
    raise ValueError(
      f"{post_hoc.paths(workdir)[1]} has classes {list(points.class_names)}, the run {names}."
    )
  # The thresholds apply to the scores they were chosen on (temperature-scaled when fitted).
  scores = post.scores(probs) if post is not None else probs

  os.makedirs(out_dir, exist_ok=True)
  overlay_files: list[str | None] = [None] * len(kept)
  if explain:
    from jaxcxr.explain import save_overlay  # pylint: disable=g-import-not-at-top

    maps = explain_maps(restored, pixels, predicted, explain, batch_size)
    os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)
    for i, name in enumerate(_overlay_names(kept, explain)):
      overlay_files[i] = os.path.join(out_dir, "overlays", name)
      save_overlay(overlay_files[i], pixels[i, ..., 0], maps[i], signed=explain == "lrp")

  rows = []
  for i, path in enumerate(kept):
    row: dict[str, Any] = {
      "file": path,
      "predicted_class": names[predicted[i]],
      "probabilities": {c: float(probs[i, j]) for j, c in enumerate(names)},
    }
    if calibrated is not None:
      row["calibrated_probabilities"] = {c: float(calibrated[i, j]) for j, c in enumerate(names)}
    if points is not None:
      row["decisions"] = {
        c: (None if t is None else bool(scores[i, j] >= t))
        for j, (c, t) in enumerate(zip(names, points.thresholds, strict=True))
      }
    if overlay_files[i]:
      row["overlay"] = overlay_files[i]
    rows.append(row)
  n = len(kept)
  result = {
    "workdir": os.path.abspath(workdir),
    "state": {"select": restored.select, "step": restored.step},
    "model_name": config.model_name,
    "image_size": config.input.image_size,
    "lung_mask": (
      None if masker is None else {"mode": lm.mode, "margin": float(lm.margin), "unet": masker.key}
    ),
    "class_names": names,
    "temperature": temperature.to_json() if temperature is not None else None,
    "operating_points": points.to_json() if points is not None else None,
    "num_images": n,
    "num_skipped": len(bad),
    "skipped": bad,
    "timing": {
      "decode_and_preprocess_s": t_decode,
      "compile_s": t_compile,
      "predict_s": t_predict,
      "batch_size": batch_size,
      "predict_ms_per_image": 1000 * t_predict / n,
      "decode_ms_per_image": 1000 * t_decode / n,
      "device": jax.devices()[0].device_kind,
    },
    "predictions": rows,
  }
  with open(os.path.join(out_dir, "predictions.json"), "w") as f:
    json.dump(result, f, indent=2)
  _write_csv(os.path.join(out_dir, "predictions.csv"), rows, names)
  return result


def _write_csv(path: str, rows: list[dict[str, Any]], names: list[str]) -> None:
  """One line per image: file, predicted class, probabilities (then calibrated ones, decisions
  (1/0, empty where the class has no threshold) and the overlay, where present)."""
  has = {k: bool(rows) and k in rows[0] for k in ("calibrated_probabilities", "decisions")}
  has_overlay = any("overlay" in r for r in rows)
  header = ["file", "predicted_class", *[f"p_{c}" for c in names]]
  header += [f"calibrated_p_{c}" for c in names] if has["calibrated_probabilities"] else []
  header += [f"decision_{c}" for c in names] if has["decisions"] else []
  header += ["overlay"] if has_overlay else []
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    for r in rows:
      line = [r["file"], r["predicted_class"], *[f"{r['probabilities'][c]:.8g}" for c in names]]
      if has["calibrated_probabilities"]:
        line += [f"{r['calibrated_probabilities'][c]:.8g}" for c in names]
      if has["decisions"]:
        line += ["" if r["decisions"][c] is None else int(r["decisions"][c]) for c in names]
      if has_overlay:
        line.append(r.get("overlay", ""))
      w.writerow(line)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_string("step", "latest", "Checkpoint: 'latest', 'best' or a step number.")
  flags.DEFINE_string("out", None, "Folder for predictions.csv, predictions.json, overlays/.")
  flags.DEFINE_integer("batch_size", 32, "Images per batch.")
  flags.DEFINE_enum("explain", None, list(EXPLAIN_METHODS), "Heat-map overlays of this method.")
  flags.DEFINE_bool("skip_bad", False, "Leave unreadable files out (listed) instead of failing.")


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise cli.UserError("name at least one image file, folder or glob after the flags.")
  cli.quiet_checkpoint_logs()
  r = predict(
    FLAGS.workdir,
    inputs,
    FLAGS.out,
    step=FLAGS.step,
    batch_size=FLAGS.batch_size,
    explain=FLAGS.explain,
    skip_bad=FLAGS.skip_bad,
  )
  t = r["timing"]
  print(
    f"{r['num_images']} images -> {os.path.join(FLAGS.out, 'predictions.csv')} "
    f"({t['predict_ms_per_image']:.1f} ms/image predict, {t['decode_ms_per_image']:.1f} ms/image "
    f"decode, batch {t['batch_size']}, compile {t['compile_s']:.1f} s)",
    flush=True,
  )
  if r["num_skipped"]:
    print(f"skipped {r['num_skipped']} unreadable files:", flush=True)
    for b in r["skipped"]:
      print(f"  {b['error']}", flush=True)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main)

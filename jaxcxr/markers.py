r"""The text-marker test: do pasted text markers or blacked-out corners change the prediction?

    python -m jaxcxr.markers --workdir RUN --split test [--step best] [--seed 0]

Bassi & Attux (2021, "COVID-19 detection using chest X-rays: is lung segmentation important for
generalization?") showed with LRP that COVID-19 classifiers trained on mixed collections attend
to text markers and figure letters burnt into the images, which then track the source and thus
the class. This probes a trained run for that shortcut directly: each image of a split is
perturbed in ways that carry no clinical information and the predictions are compared with the
unperturbed ones:

  * `word`: a word a radiograph may carry (`PORTABLE`, `SUPINE`, `AP`, ...);
  * `letter`: a single letter (laterality `L`/`R`, or a panel letter `A`-`D` of a publication);
  * `arrow`: an arrow, as figures in papers point at findings;
  * `corners`: the four corners blacked out (where markers and labels usually sit), a square of
    `corner_frac` of the shorter side each.

Markers are white (as burnt-in annotations usually are), with a size drawn uniformly from
`size_range` (a fraction of the shorter side) and a uniformly random position where they fit;
the random draws are seeded per image (`seed`, the image's index), so a run is reproducible and
an image's markers do not depend on the batch. Markers are drawn on the decoded image at its
stored resolution, then the image is preprocessed exactly as evaluation does
(`jaxcxr.data.pipeline.Preprocess`) and predicted by `jaxcxr.predict.Predictor`.

Reported per class c (single-label: over the images whose label is c; multi-label: over every
image, with the decision p_c >= 0.5): the flip rate (how often the predicted class, or the
decision, changes) and the mean shift of p_c (perturbed minus original), plus all classes
together. Written to `WORKDIR/markers/<split>.json` with a few perturbed examples as PNG and
printed as a table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from jaxcxr import cli, inference, lung_mask, predict
from jaxcxr.data import images as images_lib
from jaxcxr.data import pipeline

WORDS = ("PORTABLE", "SUPINE", "AP", "PA", "ERECT", "COVID-19")
LETTERS = ("L", "R", "A", "B", "C", "D")
KINDS = ("word", "letter", "arrow", "corners")


def _box(rng: np.random.Generator, size: tuple[int, int], w: int, h: int) -> tuple[int, int]:
  """A uniformly random top-left corner where a `w` x `h` box fits inside `size` (W, H)."""
  return int(rng.integers(0, max(1, size[0] - w + 1))), int(
    rng.integers(0, max(1, size[1] - h + 1))
  )


def paste_text(
  image: np.ndarray, text: str, height: float, rng: np.random.Generator, value: int = 255
) -> np.ndarray:
  """`image` (uint8 (H, W)) with `text` in white, about `height` x the shorter side tall."""
  pil = Image.fromarray(image)
  px = max(4, round(height * min(image.shape)))
  font = ImageFont.load_default(size=px)
  left, top, right, bottom = font.getbbox(text)
  x, y = _box(rng, pil.size, right - left, bottom - top)
  ImageDraw.Draw(pil).text((x - left, y - top), text, fill=value, font=font)
  return np.asarray(pil)


def paste_arrow(
  image: np.ndarray, length: float, rng: np.random.Generator, value: int = 255
) -> np.ndarray:
  """`image` with a filled arrow of `length` x the shorter side, pointing in one of 8 directions."""
  pil = Image.fromarray(image)
  n = max(6, round(length * min(image.shape)))
  # An arrow pointing right in an n x n box: a shaft and a triangular head.
  shaft, head = n * 0.12, n * 0.3
  pts = np.array(
    [
      (0, -shaft), (n - head, -shaft), (n - head, -head), (n, 0), (n - head, head),
      (n - head, shaft), (0, shaft),
    ],
    np.float64,
  )  # fmt: skip
  angle = rng.integers(0, 8) * np.pi / 4
  rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  pts = (pts - (n / 2, 0)) @ rot.T
  pts -= pts.min(0)
  w, h = np.ceil(pts.max(0)).astype(int)
  x, y = _box(rng, pil.size, int(w), int(h))
  ImageDraw.Draw(pil).polygon([(px + x, py + y) for px, py in pts], fill=value)
  return np.asarray(pil)


def black_corners(image: np.ndarray, frac: float = 0.15) -> np.ndarray:
  """`image` with the four corner squares (side `frac` x the shorter side) set to 0."""
  out = image.copy()
  k = max(1, round(frac * min(image.shape)))
  out[:k, :k] = out[:k, -k:] = out[-k:, :k] = out[-k:, -k:] = 0
  return out


def perturb(
  image: np.ndarray,
  kind: str,
  rng: np.random.Generator,
  size_range: tuple[float, float] = (0.06, 0.2),
  corner_frac: float = 0.15,
) -> np.ndarray:
  """One perturbation of `KINDS` applied to a uint8 (H, W) image."""
  size = float(rng.uniform(*size_range))
  if kind == "word":
    return paste_text(image, WORDS[rng.integers(len(WORDS))], size * 0.5, rng)
  if kind == "letter":
    return paste_text(image, LETTERS[rng.integers(len(LETTERS))], size, rng)
  if kind == "arrow":
    return paste_arrow(image, size * 1.5, rng)
  if kind == "corners":
    return black_corners(image, corner_frac)
  raise ValueError(f"marker kind {kind!r} is not one of {KINDS}.")


def effects(
  original: np.ndarray, perturbed: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
  """Flip rate and mean probability shift per class (see the module docstring) and overall."""
  multi = labels.ndim == 2
  shift = perturbed - original
  if multi:
    flips = (perturbed >= 0.5) != (original >= 0.5)  # (N, C)
  else:
    flips = perturbed.argmax(-1) != original.argmax(-1)  # (N,)
  per_class = {}
  for c, name in enumerate(class_names):
    rows = np.ones(len(labels), bool) if multi else labels == c
    n = int(rows.sum())
    f = flips[:, c] if multi else flips
    per_class[name] = {
      "n": n,
      "flip_rate": float(f[rows].mean()) if n else None,
      "mean_shift": float(shift[rows, c].mean()) if n else None,
    }
  return {
    "per_class": per_class,
    "overall": {
      "n": int(len(labels)),
      "flip_rate": float(flips.mean()),
      "mean_abs_shift": float(np.abs(shift).mean()),
    },
  }


def _preprocessed(grey: list[np.ndarray], input_config) -> np.ndarray:
  pre = pipeline.Preprocess.of(input_config)
  return np.stack([pre.map({"image": g, "label": 0})["image"] for g in grey])


def marker_test(
  workdir: str,
  split: str = "test",
  *,
  step: str | int | None = "latest",
  seed: int = 0,
  kinds: Sequence[str] = KINDS,
  size_range: tuple[float, float] = (0.06, 0.2),
  corner_frac: float = 0.15,
  batch_size: int = 32,
  max_images: int | None = None,
  examples: int = 4,
  out: str | None = None,
) -> dict[str, Any]:
  """Runs the marker test on `split` of the run in `workdir`; writes and returns the report."""
  unknown = sorted(set(kinds) - set(KINDS))
  if unknown:
    raise ValueError(f"marker kinds {unknown} are not among {KINDS}.")
  lo, hi = size_range
  if not 0 < lo <= hi < 1:
    raise ValueError(f"size_range {size_range} must satisfy 0 < low <= high < 1.")
  restored = inference.restore(workdir, step)
  config, names = restored.config, restored.class_names
  # A lung-masked run's images are masked (its cached masks) before the markers are planted.
  source = lung_mask.load_splits(config, workdir).split(split)
  n = len(source) if max_images is None else min(len(source), max_images)
  if n == 0:
    raise ValueError(f"split {split!r} of the run in {workdir} is empty.")
  predictor = predict.Predictor(restored, batch_size)

  grey, labels = [], []
  for i in range(n):
    record = source[i]
    grey.append(images_lib.to_grey(record["image"]))
    labels.append(np.asarray(record["label"]))
  labels = np.stack(labels)
  base = predictor.probabilities(predictor.logits(_preprocessed(grey, config.input)))

  out = out or os.path.join(workdir, "markers")
  os.makedirs(os.path.join(out, "examples"), exist_ok=True)
  report: dict[str, Any] = {
    "split": split,
    "state": {"select": restored.select, "step": restored.step},
    "num_images": n,
    "class_names": names,
    "settings": {
      "seed": seed,
      "size_range": list(size_range),
      "corner_frac": corner_frac,
      "words": list(WORDS),
      "letters": list(LETTERS),
      "grouping": "multi-label: all images, decision p>=0.5"
      if labels.ndim == 2
      else "images of each true class; flip = the predicted (argmax) class changes",
    },  # fmt: skip
    "perturbations": {},
  }
  for k, kind in enumerate(kinds):
    perturbed = [
      perturb(g, kind, np.random.default_rng([seed, k, i]), size_range, corner_frac)
      for i, g in enumerate(grey)
    ]
    probs = predictor.probabilities(predictor.logits(_preprocessed(perturbed, config.input)))
    report["perturbations"][kind] = effects(base, probs, labels, names)
    for i in range(min(examples, n)):
      Image.fromarray(perturbed[i]).save(os.path.join(out, "examples", f"{kind}_{i}.png"))
  with open(os.path.join(out, f"{split}.json"), "w") as f:
    json.dump(report, f, indent=2)
  return report


def format_table(report: dict[str, Any], write: Callable[[str], Any] = print) -> None:
  """Prints the per-class flip rates and mean probability shifts as a table."""
  names = report["class_names"]
  write(
    f"text-marker test on {report['split']} ({report['num_images']} images, "
    f"{report['state']['select']}@{report['state']['step']}): flip rate / mean shift of p_class"
  )
  width = max(12, *(len(c) + 2 for c in names))
  write("perturbation".ljust(14) + "".join(c.rjust(width + 6) for c in names) + "all".rjust(16))
  for kind, r in report["perturbations"].items():
    cells = []
    for c in names:
      pc = r["per_class"][c]
      cells.append(
        "n/a".rjust(width + 6)
        if pc["flip_rate"] is None
        else f"{pc['flip_rate']:.2f} / {pc['mean_shift']:+.3f}".rjust(width + 6)
      )
    overall = r["overall"]
    write(
      kind.ljust(14)
      + "".join(cells)
      + f"{overall['flip_rate']:.2f} / {overall['mean_abs_shift']:.3f}".rjust(16)
    )


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_string("split", "test", "The run's split to perturb.")
  flags.DEFINE_string("step", "latest", "Checkpoint: 'latest', 'best' or a step number.")
  flags.DEFINE_integer("seed", 0, "Seed of the marker draws.")
  flags.DEFINE_list("kinds", list(KINDS), f"Perturbations, of {KINDS}.")
  flags.DEFINE_float("min_size", 0.06, "Smallest marker, a fraction of the shorter side.")
  flags.DEFINE_float("max_size", 0.2, "Largest marker, a fraction of the shorter side.")
  flags.DEFINE_float("corner_frac", 0.15, "Side of each blacked-out corner square.")
  flags.DEFINE_integer("batch_size", 32, "Images per batch.")
  flags.DEFINE_integer("max_images", None, "Use only the first N images of the split.")
  flags.DEFINE_string("out", None, "Output folder (default WORKDIR/markers).")


def main(argv):
  del argv
  cli.quiet_checkpoint_logs()
  report = marker_test(
    FLAGS.workdir, FLAGS.split, step=FLAGS.step, seed=FLAGS.seed, kinds=FLAGS.kinds,
    size_range=(FLAGS.min_size, FLAGS.max_size), corner_frac=FLAGS.corner_frac,
    batch_size=FLAGS.batch_size, max_images=FLAGS.max_images, out=FLAGS.out,
  )  # fmt: skip
  format_table(report)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)

"""What the recipes in `configs/` share: the `:arg` parser, the CI-sized `tiny` overrides and
recipe pieces (fastai augmentation, the COVID-19 mixture recipe, the `masked=` lung-mask words).

`jaxcxr.config_lib` keeps the schema (`base_config`, every key and its default); this module holds
the choices recipes make on top of it.
"""

from __future__ import annotations

from collections.abc import Iterable

import ml_collections

from jaxcxr import config_lib


def parse_arg(
  arg: str | None, recipe: str, *, words: Iterable[str] = (), keys: Iterable[str] = ()
) -> tuple[set[str], dict[str, str]]:
  """Parses a config file's `:arg` (`--config configs/x.py:tiny,3class,cohen=DIR`).

  Args:
    arg: the text after the colon (None or empty: no argument).
    recipe: the config file, named in errors.
    words: the bare words the recipe accepts (e.g. `tiny`).
    keys: the `KEY=VALUE` keys it accepts (e.g. manual dirs per dataset).

  Returns:
    `(words given, {key: value})`.

  Raises:
    ValueError: a word or key the recipe does not know (a typo would otherwise be ignored).
  """
  given, values = set(), {}
  for item in filter(None, (a.strip() for a in (arg or "").split(","))):
    if "=" in item:
      key, value = item.split("=", 1)
      values[key] = value
    else:
      given.add(item)
  unknown = sorted(given - set(words)) + sorted(set(values) - set(keys))
  if unknown:
    raise ValueError(
      f"{recipe}: unknown argument(s) {unknown}; it accepts {sorted(words)}"
      + (f" and KEY=VALUE with KEY in {sorted(keys)}" if keys else "")
      + "."
    )
  return given, values


# `:masked=UNET_RUN[,mask_mode=black|crop|both]` of the recipes that offer lung masking.
LUNG_MASK_KEYS = ("masked", "mask_mode")


def lung_mask(c: ml_collections.ConfigDict, kv: dict[str, str], recipe: str) -> None:
  """`masked=UNET_RUN`: every image lung-masked by that segmentation run's best state
  (`config.input.lung_mask`, `jaxcxr.lung_mask`), `mask_mode` 'black' (default, Zhang & Liu
  2021), 'crop' or 'both'."""
  if "mask_mode" in kv and not kv.get("masked"):
    raise ValueError(f"{recipe}: mask_mode={kv['mask_mode']} needs masked=UNET_RUN.")
  if kv.get("masked"):
    c.input.lung_mask.run = kv["masked"]
    c.input.lung_mask.mode = kv.get("mask_mode", "black")


def tiny(c: ml_collections.ConfigDict, model_name: str, image_size: int, batch_size: int) -> None:
  """CI-sized run: a tiny model from scratch at a small resolution, normalised to mean .5, std .25
  (no pretrained statistics apply)."""
  c.model_name, c.model_init = model_name, ""
  c.input.image_size, c.input.batch_size = image_size, batch_size
  c.input.mode, c.input.mean, c.input.std = "custom", (0.5,), (0.25,)
  # The HTML report (figures and a Grad-CAM gallery) takes longer than a CI-sized run itself;
  # `--config.report.html=True` or `python -m jaxcxr.report --workdir W` writes it.
  c.report.html = False


def tiny_stages(c: ml_collections.ConfigDict, model_name: str, lengths: tuple[int, ...]) -> None:
  """The CI-sized form of a staged recipe: synthetic_cxr/tiny at 32 px, a tiny backbone of the
  same family from scratch, stage i lasting `lengths[i]` steps, evaluation every step."""
  c.input.data = "synthetic_cxr/tiny"
  c.input.splits.method = "builder"
  c.input.num_threads = 2
  tiny(c, model_name, image_size=32, batch_size=8)
  c.model.in_chans = 1
  c.eval_every_steps, c.checkpoint_every_steps, c.log_every_steps = 1, 4, 1
  c.stages = tuple(
    config_lib.stage(**{**s.to_dict(), "num_epochs": 0.0, "total_steps": n})
    for s, n in zip(c.stages, lengths, strict=True)
  )


def kermany_splits(c: ml_collections.ConfigDict, config_name: str = "2class") -> None:
  """Kermany's pediatric set the honest way: its official test split kept, train + val re-split
  90/10 by patient (near-duplicates of different ids kept together), and the training images of
  patients the official split also puts in test left out."""
  c.input.data = f"chest_xray_pneumonia/{config_name}"
  c.input.splits.method = "fractions"
  c.input.splits.group_duplicates = True  # Copies under other patient ids stay together.
  c.input.splits.keep = ("test",)
  c.input.splits.fractions = (0.9, 0.1, 0.0)


def fastai_augment(c: ml_collections.ConfigDict) -> None:
  """fastai's `aug_transforms()` defaults, as used by the fastai-based studies, except its
  perspective warp (max_warp 0.2: `c.augment.warp`), which recipes add themselves, so recipes
  measured before the warp existed train as they did."""
  c.augment.flip = 0.5
  c.augment.rotate_deg = 10.0
  c.augment.max_zoom = 1.1
  c.augment.brightness = 0.2
  c.augment.contrast = 0.2


def covid_mixture_recipe(c: ml_collections.ConfigDict, is_tiny: bool = False) -> None:
  """What the COVID-19 mixture recipes share (configs/kermany_cohen.py, configs/cohen_covidx.py).

  Patient-disjoint 70/10/20 re-split with duplicate grouping; ResNet-50 from ImageNet weights
  with the first conv summed to one channel; RAdam, cosine, label smoothing, class-weighted loss,
  fastai augmentation without flips. `is_tiny`: ResNet-tiny from scratch at 32 px (CI-sized).
  """
  c.input.splits.method = "fractions"
  c.input.splits.group_duplicates = True  # Copies under other patient ids stay together.
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.image_size = 224
  c.input.batch_size = 32
  c.model_name = "resnet50"
  c.model_init = "resnet50.tv_in1k"
  c.model.in_chans = 1
  c.num_epochs = 10.0
  c.optimizer.name = "radam"
  c.optimizer.lr = 1e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 50
  c.loss.label_smoothing = 0.1
  c.loss.class_weights = "balanced"
  fastai_augment(c)
  c.augment.flip = 0.0  # Anatomy is not left-right symmetric.
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  if is_tiny:
    tiny(c, "resnet_tiny", image_size=32, batch_size=8)

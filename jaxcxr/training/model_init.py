"""The run's model: built from the registry, then initialised from `config.model_init`.

`model_init` is pretrained weights by name (`resnet50.tv_in1k`, timm's `arch.tag`), a local
checkpoint file, a `jaxcxr.weights.convert_checkpoint` directory, or a previous jaxcxr run
(homologous transfer, Zhang & Liu 2021: the pneumonia source task's run initialises the COVID-19
task, with a new classifier when the class count differs). Nothing loads partially without
saying so (big_vision's rule); a resumed run or an evaluation restores its own state instead.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from jaxcxr import checkpoint as ckpt_lib
from jaxcxr import models
from jaxcxr.training import stages as stages_lib


def create_model(
  config: ml_collections.ConfigDict, num_classes: int, init: bool = True
) -> nnx.Module:
  """The backbone of `config.model_name`, initialised from `config.model_init` if set and `init`
  (a resumed run or an evaluation restores its own state and skips it: resume wins)."""
  kwargs = dict(config.model)
  in_chans = kwargs.pop("in_chans")
  head = {k: kwargs.pop(k, d) for k, d in (("head", ""), ("head_hidden", ()),
                                            ("head_activation", "relu"))}  # fmt: skip
  model = models.create(
    config.model_name,
    num_classes=num_classes,
    in_chans=in_chans,
    rngs=nnx.Rngs(config.seed),
    dtype=jnp.dtype(config.dtype),
    **kwargs,
  )
  if config.model_init and init:
    init_from(model, config)
  if head["head"] not in ("", "gap_linear", "dropout_linear"):
    # After `model_init`: the pretrained classifier is replaced, not loaded into a new shape.
    replace_head(model, config, num_classes, head, in_chans)
  return model


def replace_head(
  model: nnx.Module, config: ml_collections.ConfigDict, num_classes: int, head: dict, in_chans
) -> None:
  """Puts the named head `head['head']` (`models.heads.NamedHead`) at `model.head`, so that the
  layer group 'head' (and stage 1's `trainable=('head',)`) is the new head."""
  from jaxcxr.models import heads  # pylint: disable=g-import-not-at-top

  if head["head"] not in heads.HEADS:
    raise ValueError(f"config.model.head={head['head']!r} is not one of {heads.HEADS}.")
  if isinstance(getattr(model, "head", None), heads.ClassifierHead):
    in_features = model.head.num_features
  elif hasattr(model, "classifier") and hasattr(model, "num_features"):
    in_features = model.num_features
    # EfficientNet (its pooled `classifier`) and VGG (fc6-fc8 on the 7x7-pooled map): the named
    # head reads the conv feature map as on the other families, and the classifier goes.
    model.classifier = None
  else:
    raise ValueError(
      f"config.model.head={head['head']!r}: {config.model_name} has neither a `head` nor a "
      "`classifier` to replace; use the family's own head."
    )
  size = int(config.input.image_size)
  # The feature map's spatial size, for the flattening head, without computing anything.
  shape = nnx.eval_shape(lambda m: m.forward_features(jnp.zeros((1, size, size, in_chans))), model)
  model.head = heads.NamedHead(
    head["head"], in_features, num_classes, feature_hw=tuple(shape.shape[1:3]),
    hidden=tuple(head["head_hidden"]), activation=head["head_activation"],
    drop_rate=float(config.model.drop_rate), rngs=nnx.Rngs(config.seed + 1),
    dtype=jnp.dtype(config.dtype),
  )  # fmt: skip


def init_from(model: nnx.Module, config: ml_collections.ConfigDict) -> None:
  """Loads `config.model_init` into `model`: pretrained weights or a converted checkpoint.

  `model_init` is a registered pretrained name (`resnet50.tv_in1k`, downloaded and cached), a
  jaxcxr run directory (`init_from_run`), a local checkpoint file (safetensors, torch `.pth`,
  Keras `.h5`) of `config.model_name`'s architecture, or a directory written by
  `python -m jaxcxr.weights.convert_checkpoint`.
  Everything must match except what `config.model_load.dont_load` names and, for a new number
  of classes, the classifier (big_vision's rule: no silent partial loads).
  """
  from jaxcxr.weights import pretrained  # pylint: disable=g-import-not-at-top

  source = config.model_init
  if os.path.isdir(os.path.join(source, "checkpoints")):
    init_from_run(model, source, config)
    return
  if os.path.isdir(source):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    target = ckpt_lib.abstract_like(nnx.state(model))
    nnx.update(model, ocp.StandardCheckpointer().restore(os.path.abspath(source), target))
    logging.info("Initialised %s from the converted checkpoint %s", config.model_name, source)
    return
  # A UNet (jaxcxr.models.unet) takes pretrained backbone weights into its encoder.
  encoder = getattr(model, "encoder_name", "")
  report = pretrained.load_pretrained(
    model.encoder if encoder else model,
    source,
    arch=encoder or config.model_name,
    dont_load=tuple(config.model_load.dont_load),
  )
  logging.info("%s", report)


def init_from_run(model: nnx.Module, workdir: str, config: ml_collections.ConfigDict) -> None:
  """Loads the model state of a previous jaxcxr run (homologous transfer, Zhang & Liu 2021).

  `config.model_load.step`: 'latest' (its latest checkpoint) or 'best' (its best state by its
  `best_monitor`). Every parameter and statistic must match in shape, except the classifier
  (the last layer group) when the class count differs: it keeps its fresh initialisation, and the
  log says so. `model_load.dont_load` regexes stay as initialised too.
  """
  import re  # pylint: disable=g-import-not-at-top

  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from jaxcxr.models import groups as groups_lib  # pylint: disable=g-import-not-at-top

  workdir = os.path.abspath(workdir)
  which = config.model_load.step
  if which == "latest":
    mgr = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
    step = mgr.latest_step()
    mgr.close()
    path = os.path.join(workdir, "checkpoints", str(step), "state")
  elif which == "best":
    best_dir = os.path.join(workdir, "best")
    steps = [int(d) for d in os.listdir(best_dir)] if os.path.isdir(best_dir) else []
    steps = [d for d in steps if os.path.isdir(os.path.join(best_dir, str(d)))]
    step = steps[0] if len(steps) == 1 else None
    if len(steps) > 1:  # max_to_keep=1: the one kept is the best.
      raise ValueError(f"{best_dir} holds several steps {sorted(steps)}; expected one.")
    path = os.path.join(best_dir, str(step), "default")
  else:
    raise ValueError(f"config.model_load.step={which!r} is not 'latest' or 'best'.")
  if step is None:
    raise FileNotFoundError(f"model_init={workdir!r}: no {which} checkpoint in that run.")
  saved = ocp.StandardCheckpointer().restore(path)
  flat_saved = {
    stages_lib.path_str(kp).removesuffix("/value"): v
    for kp, v in jax.tree_util.tree_flatten_with_path(
      {"params": saved["params"], "rest": saved["rest"]}
    )[0]
  }
  _, params, rest = nnx.split(model, nnx.Param, ...)
  head = set(list(groups_lib.assign(config.model_name, stages_lib.leaf_paths(params)).values())[-1])
  dont = [re.compile(r) for r in config.model_load.dont_load]
  new_leaves, reinit, skipped = {}, [], []
  for part, tree in (("params", params), ("rest", rest)):
    for path_, value in zip(stages_lib.leaf_paths(tree), jax.tree.leaves(tree), strict=True):
      key = f"{part}/{path_}"
      if any(r.search(path_) for r in dont):
        skipped.append(path_)
        continue
      if key not in flat_saved:
        raise ValueError(
          f"model_init={workdir!r} (step {step}) has no {path_!r} for {config.model_name}."
        )
      old = np.asarray(flat_saved[key])
      if old.shape != value.shape:
        if path_ in head:
          reinit.append(f"{path_} {old.shape}->{value.shape}")
          continue
        raise ValueError(
          f"model_init={workdir!r}: {path_!r} has shape {old.shape}, the model {value.shape}."
        )
      new_leaves[key] = old
  unused = (
    set(flat_saved)
    - {f"params/{p}" for p in stages_lib.leaf_paths(params)}
    - {f"rest/{p}" for p in stages_lib.leaf_paths(rest)}
  )
  if unused:
    raise ValueError(f"model_init={workdir!r} has arrays the model lacks: {sorted(unused)[:5]}")

  for prefix, tree in (("params", params), ("rest", rest)):
    leaves, treedef = jax.tree.flatten(tree)
    merged = [
      jnp.asarray(new_leaves[f"{prefix}/{p}"], v.dtype) if f"{prefix}/{p}" in new_leaves else v
      for p, v in zip(stages_lib.leaf_paths(tree), leaves, strict=True)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, merged))
  logging.info(
    "Initialised %s from the run %s (%s step %d)%s%s", config.model_name, workdir, which, step,
    f"; re-initialised the classifier for a new class count: {reinit}" if reinit else "",
    f"; kept as initialised (dont_load): {len(skipped)} arrays" if skipped else "",
  )  # fmt: skip
  if reinit:
    print(f"model_init: new class count, classifier re-initialised: {reinit}", flush=True)

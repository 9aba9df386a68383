"""Staged fine-tuning: `config.stages` → per-stage lengths, trainable masks, rates and optax.

Every study jaxcxr reproduces fine-tunes in stages: Keras' two-stage head-then-body schedule
(Alotaibi 2020), CheXNet's four stages with per-dense-block rates (Bassi & Attux 2021), homologous
transfer with the first k modules frozen (Zhang & Liu 2021), InceptionV3 frozen-then-unfrozen
(Naik et al. 2021) and fastai's `freeze()`/`unfreeze()` with `slice(lo, hi)` rates (Rachha 2020).
Each stage here is a `config_lib.stage(...)` ConfigDict and becomes a `Stage`: big_vision's
`(regex, schedule or None)` idea built from optax — `multi_transform` sends frozen parameters to
`set_to_zero` (they hold no optimizer state), per-group `scale` transforms give discriminative
rates, and the loop's plateau uses `optax.contrib.reduce_on_plateau`. No stages: one stage from the
run's own keys, built exactly as before stages existed (the same transform, bit for bit).

Each stage starts with a fresh optimizer state (as a Keras `compile()` between stages); its
schedule runs over the stage's own steps.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax

from jaxcxr import config_lib, optim
from jaxcxr.models import groups as groups_lib

BN_STATS = ("update", "frozen", "trainable")


def path_str(keypath: Sequence[Any]) -> str:
  """'layer1/0/conv1/kernel' from a jax key path of an nnx.State leaf."""
  parts = []
  for k in keypath:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.GetAttrKey) and k.name == "value":
      continue
    else:
      parts.append(str(getattr(k, "name", k)))
  return "/".join(parts)


def leaf_paths(tree: Any) -> list[str]:
  return [path_str(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def map_paths(fn, tree: Any) -> Any:
  """`fn(path) -> value` for every leaf of `tree`, in the same structure."""
  return jax.tree_util.tree_map_with_path(lambda kp, _: fn(path_str(kp)), tree)


def monitor_sign(monitor: str) -> float:
  """+1 for monitors to minimise (losses), -1 for those to maximise (accuracy, AUROC...)."""
  return 1.0 if monitor.endswith("loss") else -1.0


@dataclasses.dataclass(frozen=True)
class Stage:
  """One resolved stage: everything the loop needs, in steps and per-parameter maps."""

  index: int
  name: str
  total_steps: int
  optimizer: ml_collections.ConfigDict
  schedule: ml_collections.ConfigDict
  trainable: dict[str, bool]  # Parameter path → trains in this stage.
  lr_mult: dict[str, float]  # Parameter path → learning-rate multiplier.
  keep_stats: dict[str, bool]  # Batch-statistic path → stays as it is.
  eval_every_steps: int
  early_stopping: ml_collections.ConfigDict
  plateau: ml_collections.ConfigDict

  @property
  def all_train(self) -> bool:
    return all(self.trainable.values()) and all(m == 1.0 for m in self.lr_mult.values())

  def describe(self) -> str:
    n_train = sum(self.trainable.values())
    mults = sorted({m for p, m in self.lr_mult.items() if self.trainable[p]})
    return (
      f"stage {self.index} {self.name!r}: {self.total_steps} steps, {self.optimizer.name} "
      f"lr {self.optimizer.lr:g}, {n_train}/{len(self.trainable)} parameter arrays train"
      + (f", lr multipliers {[f'{m:.3g}' for m in mults]}" if len(mults) > 1 else "")
      + (
        f", {sum(self.keep_stats.values())} batch statistics frozen"
        if any(self.keep_stats.values())
        else ""
      )
    )

  def schedule_fn(self, steps_per_epoch: int) -> optim.Schedule:
    return optim.make_schedule(
      self.schedule, float(self.optimizer.lr), self.total_steps, steps_per_epoch
    )

  def make_tx(self, schedule: optim.Schedule) -> optax.GradientTransformation:
    """The stage's optimizer: frozen parameters to `set_to_zero`, multipliers as `scale`; with
    `optimizer.skip_nonfinite = N`, all of it inside `optax.apply_if_finite` (up to N consecutive
    steps with non-finite gradients are skipped; its counters live in the optimizer state, so
    they are checkpointed and a resumed run continues them exactly)."""
    tx = self._make_tx(schedule)
    skip = int(self.optimizer.get("skip_nonfinite", 0))
    return optax.apply_if_finite(tx, max_consecutive_errors=skip) if skip else tx

  def _make_tx(self, schedule: optim.Schedule) -> optax.GradientTransformation:
    main = optim.make_optimizer(self.optimizer, schedule)
    if self.all_train:
      return main  # The single-stage transform, unchanged.
    label = lambda p: "train" if self.trainable[p] else "frozen"
    tx = optax.multi_transform(
      {"train": main, "frozen": optax.set_to_zero()},
      lambda params: map_paths(label, params),
    )
    mults = sorted(set(self.lr_mult.values()))
    if len(mults) == 1 and mults[0] == 1.0:
      return tx
    names = {m: f"x{m!r}" for m in mults}
    return optax.chain(
      tx,
      optax.multi_transform(
        {names[m]: optax.scale(m) for m in mults},
        lambda params: map_paths(lambda p: names[self.lr_mult[p]], params),
      ),
    )

  def trainable_tree(self, params: Any) -> Any:
    return None if all(self.trainable.values()) else map_paths(self.trainable.__getitem__, params)

  def keep_stats_tree(self, rest: Any) -> Any:
    if not any(self.keep_stats.values()):
      return None
    return map_paths(self.keep_stats.__getitem__, rest)


def _merged(base: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict, what: str):
  out = ml_collections.ConfigDict(base.to_dict())
  for k, v in overrides.items():
    if k not in out:
      raise KeyError(f"stage {what} key {k!r} is not one of config.{what}'s {sorted(out)}.")
    out[k] = v
  return out


def _select(
  patterns: Sequence[str], paths: list[str], groups: dict[str, list[str]], where: str
) -> set[str]:
  """Paths named by layer-group names or matched by regexes; a pattern matching nothing errs."""
  out: set[str] = set()
  for pat in patterns:
    if pat in groups:
      out.update(groups[pat])
      continue
    hits = {p for p in paths if re.search(pat, p)}
    if not hits:
      raise ValueError(
        f"{where}: {pat!r} is neither a layer group ({list(groups)}) nor a regex matching any "
        f"parameter path (e.g. {paths[:3]})."
      )
    out.update(hits)
  return out


def _module(path: str) -> str:
  return path.rsplit("/", 1)[0]


def resolve(
  config: ml_collections.ConfigDict, steps_per_epoch: int, params: Any, rest: Any
) -> list[Stage]:
  """The run's stages, resolved against the model's parameter and statistic paths."""
  paths, stat_paths = leaf_paths(params), leaf_paths(rest)
  if not config.stages:
    return [
      Stage(
        index=0,
        name="",
        total_steps=config_lib.resolve_total_steps(config, steps_per_epoch),
        optimizer=config.optimizer,
        schedule=config.schedule,
        trainable=dict.fromkeys(paths, True),
        lr_mult=dict.fromkeys(paths, 1.0),
        keep_stats=dict.fromkeys(stat_paths, False),
        eval_every_steps=int(config.eval_every_steps),
        early_stopping=config_lib.stage().early_stopping,
        plateau=config_lib.stage().plateau,
      )
    ]
  if config.total_steps or config.num_epochs:
    raise ValueError(
      f"config.stages is set: give each stage its length (stage total_steps/num_epochs), not "
      f"config.total_steps={config.total_steps} / num_epochs={config.num_epochs}."
    )
  groups = groups_lib.assign(config.model_name, paths)
  group_names = list(groups)
  template = config_lib.stage()
  norm_modules = {_module(p) for p in stat_paths}
  out = []
  for i, sc in enumerate(config.stages):
    where = f"config.stages[{i}]" + (f" ({sc.name})" if sc.get("name") else "")
    unknown = set(sc.keys()) - set(template.keys())
    if unknown:
      raise KeyError(f"{where}: unknown keys {sorted(unknown)}; stage keys: {sorted(template)}.")
    sc = _merged(template, sc, "stage") if set(sc.keys()) != set(template.keys()) else sc
    if sc.total_steps and sc.num_epochs:
      raise ValueError(f"{where}: set total_steps or num_epochs, not both.")
    length = int(sc.total_steps) or int(round(float(sc.num_epochs) * steps_per_epoch))
    if length <= 0:
      raise ValueError(f"{where}: set a positive total_steps or num_epochs.")
    train = set(_select(sc.trainable, paths, groups, where)) if sc.trainable else set(paths)
    train -= _select(sc.frozen, paths, groups, where)
    if sc.freeze_groups:
      if sc.freeze_groups >= len(group_names):
        raise ValueError(
          f"{where}: freeze_groups={sc.freeze_groups} but {config.model_name} has only "
          f"{len(group_names)} groups {group_names}."
        )
      for g in group_names[: sc.freeze_groups]:
        train -= set(groups[g])
    if sc.train_norms:
      train |= {p for p in paths if _module(p) in norm_modules}
    if not train:
      raise ValueError(f"{where}: no parameter trains.")
    optimizer = _merged(config.optimizer, sc.optimizer, "optimizer")
    schedule = _merged(config.schedule, sc.schedule, "schedule")
    mult = dict.fromkeys(paths, 1.0)
    if sc.lr_slice:
      lo, hi = (float(x) for x in sc.lr_slice)
      n = len(group_names)
      for j, g in enumerate(group_names):  # fastai's even_mults(lo, hi, n).
        rate = lo * (hi / lo) ** (j / max(n - 1, 1))
        for p in groups[g]:
          mult[p] = rate / float(optimizer.lr)
    if sc.lr_mult:
      done: set[str] = set()
      for pat, m in sc.lr_mult:
        for p in _select((pat,), paths, groups, where) - done:
          mult[p] = float(m)
          done.add(p)
    if sc.bn_stats not in BN_STATS:
      raise ValueError(f"{where}: bn_stats={sc.bn_stats!r} is not one of {BN_STATS}.")
    train_modules = {_module(p) for p in train}
    keep = {
      s: sc.bn_stats == "frozen" or (sc.bn_stats == "trainable" and _module(s) not in train_modules)
      for s in stat_paths
    }
    every = int(sc.eval_every_steps) or int(config.eval_every_steps)
    if not every and (sc.early_stopping.patience or sc.plateau.patience):
      every = steps_per_epoch  # Keras' and fastai's callbacks look once per epoch.
    for what in (sc.early_stopping, sc.plateau):
      if what.patience and not math.isfinite(float(what.patience)):
        raise ValueError(f"{where}: patience must be finite.")
    out.append(
      Stage(
        index=i,
        name=sc.name or f"stage{i}",
        total_steps=length,
        optimizer=optimizer,
        schedule=schedule,
        trainable={p: p in train for p in paths},
        lr_mult=mult,
        keep_stats=keep,
        eval_every_steps=every,
        early_stopping=sc.early_stopping,
        plateau=sc.plateau,
      )
    )
  return out


def plateau_tx(stage: Stage) -> optax.GradientTransformationExtraArgs:
  """optax's reduce-on-plateau for the stage (called once per evaluation, with the monitor)."""
  p = stage.plateau
  return optax.contrib.reduce_on_plateau(
    factor=float(p.factor),
    patience=max(int(p.patience), 1),
    rtol=float(p.rtol),
    atol=float(p.atol),
    cooldown=int(p.cooldown),
    min_scale=float(p.min_scale),
  )

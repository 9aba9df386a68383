"""Optimizers, learning-rate schedules and weight decay, built from the config with optax.

The chest X-ray studies jaxcxr reproduces used RAdam (Liu et al. 2020, "On the Variance of the
Adaptive Learning Rate and Beyond") through fastai, Adam/Nadam through Keras and SGD with momentum
for CheXNet retraining; all come from optax here, nothing is re-derived by hand.

Config (`config.optimizer`, `config.schedule`):
  optimizer.name: radam | adam | adamw | nadam | sgd | rmsprop | adagrad | adadelta | adamax
  optimizer.lr, b1, b2, eps, momentum, nesterov, weight_decay, grad_clip_norm
  optimizer.decay: 'kernels' (biases and norm scales spared) or 'all' (PyTorch's weight_decay)
  schedule.name: constant | cosine | step | warmup_constant (all take warmup_steps) | onecycle
  schedule.boundaries_steps / boundaries_epochs and schedule.factor for `step`.
  `onecycle` is optax's `cosine_onecycle_schedule` (Smith & Topin 2019, fastai's fit_one_cycle):
  warm-up over `schedule.pct_start` of the run from lr/div_factor, then down to
  lr/(div_factor*final_div_factor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

Schedule = Callable[[Any], Any]

OPTIMIZERS = ("radam", "adam", "adamw", "nadam", "sgd", "rmsprop", "adagrad", "adadelta", "adamax")
SCHEDULES = ("constant", "cosine", "step", "warmup_constant", "onecycle")
DECAY = ("kernels", "all")


def make_schedule(
  cfg: ml_collections.ConfigDict, base_lr: float, total_steps: int, steps_per_epoch: int
) -> Schedule:
  """Learning-rate schedule from `config.schedule`.

  Args:
    cfg: `config.schedule`.
    base_lr: the peak learning rate (`config.optimizer.lr`).
    total_steps: length of the run; cosine decays to `cfg.end_factor * base_lr` at its end.
    steps_per_epoch: converts `boundaries_epochs` into steps.
  """
  name = cfg.get("name", "constant")
  warmup = int(cfg.get("warmup_steps", 0))
  if name == "onecycle":
    return optax.cosine_onecycle_schedule(
      max(total_steps, 1),
      base_lr,
      pct_start=float(cfg.get("pct_start", 0.25)),
      div_factor=float(cfg.get("div_factor", 25.0)),
      final_div_factor=float(cfg.get("final_div_factor", 1e4)),
    )
  if name == "constant":
    main = optax.constant_schedule(base_lr)
  elif name == "warmup_constant":
    main = optax.constant_schedule(base_lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(
      base_lr, max(total_steps - warmup, 1), alpha=float(cfg.get("end_factor", 0.0))
    )
  elif name == "step":
    bounds = list(cfg.get("boundaries_steps", ()) or ())
    bounds += [int(e * steps_per_epoch) for e in (cfg.get("boundaries_epochs", ()) or ())]
    factor = float(cfg.get("factor", 0.1))
    main = optax.piecewise_constant_schedule(
      base_lr, {max(b - warmup, 1): factor for b in sorted(bounds)}
    )
  else:
    raise ValueError(f"config.schedule.name={name!r} is not one of {SCHEDULES}.")
  if warmup <= 0:
    return main
  warm = optax.linear_schedule(base_lr * float(cfg.get("warmup_init_factor", 0.0)), base_lr, warmup)
  return optax.join_schedules([warm, main], boundaries=[warmup])


def decay_mask(params: Any) -> Any:
  """True for weights that get weight decay: kernels (ndim > 1), not biases nor norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _decay_mask_for(cfg: ml_collections.ConfigDict) -> Any:
  decay = cfg.get("decay", "kernels")
  if decay not in DECAY:
    raise ValueError(f"config.optimizer.decay={decay!r} is not one of {DECAY}.")
  return decay_mask if decay == "kernels" else None


def make_optimizer(
  cfg: ml_collections.ConfigDict, schedule: Schedule
) -> optax.GradientTransformation:
  """The optimizer from `config.optimizer`, with optional clipping and weight decay.

  Weight decay is decoupled (AdamW-style, Loshchilov & Hutter 2019) for `adamw`, and coupled
  L2 added to the gradient for the others, as in the PyTorch/Keras optimizers the studies used.
  Norm scales and biases are spared unless `cfg.decay == 'all'`.
  """
  name = cfg.get("name", "radam")
  mask = _decay_mask_for(cfg)
  wd = float(cfg.get("weight_decay", 0.0))
  b1, b2, eps = float(cfg.get("b1", 0.9)), float(cfg.get("b2", 0.999)), float(cfg.get("eps", 1e-8))
  if name == "radam":
    opt = optax.radam(schedule, b1=b1, b2=b2, eps=eps)
  elif name == "adam":
    opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
  elif name == "nadam":
    opt = optax.nadam(schedule, b1=b1, b2=b2, eps=eps)
  elif name == "adamw":
    opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
  elif name == "sgd":
    opt = optax.sgd(
      schedule,
      momentum=float(cfg.get("momentum", 0.9)) or None,
      nesterov=bool(cfg.get("nesterov", False)),
    )
  elif name == "rmsprop":  # Keras' RMSprop: decay `rho`, no momentum.
    opt = optax.rmsprop(schedule, decay=float(cfg.get("rho", 0.9)), eps=eps)
  elif name == "adagrad":
    opt = optax.adagrad(schedule, eps=eps)
  elif name == "adadelta":
    opt = optax.adadelta(schedule, rho=float(cfg.get("rho", 0.9)), eps=eps)
  elif name == "adamax":
    opt = optax.adamax(schedule, b1=b1, b2=b2, eps=eps)
  else:
    raise ValueError(f"config.optimizer.name={name!r} is not one of {OPTIMIZERS}.")
  chain = []
  clip = cfg.get("grad_clip_norm", None)
  if clip:
    chain.append(optax.clip_by_global_norm(float(clip)))
  if wd and name != "adamw":
    chain.append(optax.add_decayed_weights(wd, mask=mask))
  return optax.chain(*chain, opt)

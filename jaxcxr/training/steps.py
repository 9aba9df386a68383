"""The train state and the pure, jitted step functions (one optimisation step, one forward).

The Flax NNX model is split once into a static graph and its state (`nnx.split`); the step maps a
`TrainState` to the next one with the batch sharded over a `('data',)` mesh. Random keys derive
from the global step, so resumed and uninterrupted runs draw the same augmentation and dropout.
Frozen parameters (staged fine-tuning) pass through `jax.lax.stop_gradient`, so JAX computes no
gradient for them and prunes the backward pass below the lowest trainable layer.

Each step also reports `finite`: whether its loss and gradient norm are finite and so is the whole
new state (or the step was skipped by `optax.apply_if_finite`, `config.optimizer.skip_nonfinite`).
It stays on the device; `jaxcxr.training.guards.FiniteGuard` fetches the flags only where the loop
syncs anyway (logging, evaluation, a save), so the check costs no extra device-to-host round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxcxr import losses, optim
from jaxcxr.data import augment


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree; the model graph is static).

  `stage` and `stage_step` place the state in `config.stages` (the stage whose optimizer state
  `opt_state` is, and the steps done in it), so a resumed run continues exactly. `plateau` is
  optax's reduce-on-plateau state (its `scale` multiplies every update), `stop_best` and
  `stop_wait` early stopping's best monitored value (to minimise) and evaluations since it.
  """

  step: jax.Array
  params: nnx.State
  rest: nnx.State  # Non-trainable model state: batch-norm statistics.
  opt_state: optax.OptState
  stage: jax.Array
  stage_step: jax.Array
  plateau: Any
  stop_best: jax.Array
  stop_wait: jax.Array


def input_mean_std(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
  """The (mean, std) on [0, 1] pixels that `config.input.mode` asks for.

  `auto` (the default): the preprocessing of the pretrained weights named by `config.model_init`
  (their registered mode, mean and std, as timm's `resolve_data_config`), or ImageNet's 'torch'
  statistics when `model_init` names no registered weights. Any other mode is used as given.
  """
  mode = config.input.mode
  if mode == "auto":
    from jaxcxr.weights import pretrained  # pylint: disable=g-import-not-at-top

    name = config.get("model_init", "")
    if name and name in pretrained.list_pretrained():
      cfg = pretrained.get_pretrained_cfg(name)
      if cfg.mode == "torch":
        return tuple(cfg.mean), tuple(cfg.std)
      return augment.mode_mean_std(cfg.mode, (), ())
    mode = "torch"
  return augment.mode_mean_std(mode, config.input.mean, config.input.std)


def model_inputs(images: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """[0, 1] grey images → the model's input: its channels, normalised per `config.input.mode`."""
  mean, std = input_mean_std(config)
  return augment.normalize(images, mean, std, config.model.in_chans, jnp.dtype(config.dtype))


def loss_and_grads(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  loss_fn: Callable[..., jax.Array],
  config: ml_collections.ConfigDict,
  base_key: jax.Array,
  trainable: Any = None,
) -> tuple[jax.Array, jax.Array, nnx.State, nnx.State]:
  """Mean loss over the global batch, logits, updated batch statistics and parameter gradients.

  `trainable`: a pytree of bools like `state.params` (None: all train); frozen leaves are cut
  from the gradient with `stop_gradient` (their gradient is exactly zero).
  """
  # Keys derive from the step, so resumed and uninterrupted runs draw the same numbers.
  aug_key, drop_key = jax.random.split(jax.random.fold_in(base_key, state.step))
  images, targets = train_inputs(aug_key, batch, config)
  images = model_inputs(images, config)

  def compute_loss(params, rest):
    if trainable is not None:
      params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
    # copy=True makes fresh Variables in this trace, where batch norm may update its statistics
    # (Variables unflattened by jax.grad belong to the enclosing trace and refuse mutation).
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits = model(images, train=True, rngs=nnx.Rngs(dropout=drop_key))
    # The mean is taken over the global batch inside the differentiated function, so gradients
    # are those of the global-batch loss whatever the device count.
    loss = loss_fn(logits, targets).mean()
    return loss, (logits, nnx.state(model, nnx.Not(nnx.Param)))

  (loss, (logits, new_rest)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
    state.params, state.rest
  )
  return loss, logits, new_rest, grads


def is_segmentation(config: ml_collections.ConfigDict) -> bool:
  """Whether the run segments (`config.task`): targets are masks, outputs per-pixel logits."""
  return config.get("task", "classification") == "segmentation"


def train_inputs(
  key: jax.Array, batch: dict[str, jax.Array], config: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array]:
  """Augmented [0, 1] images and the loss targets: class labels, or the masks (segmentation),
  which take the images' geometric draw (`augment.augment_pair`)."""
  images = augment.to_float(batch["image"])
  if is_segmentation(config):
    return augment.augment_pair(key, images, batch["mask"].astype(jnp.float32), config.augment)
  return augment.augment(key, images, config.augment), batch["label"]


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  loss_fn: Callable[..., jax.Array],
  schedule: optim.Schedule,
  config: ml_collections.ConfigDict,
  base_key: jax.Array,
  trainable: Any = None,
  keep_stats: Any = None,
  plateau: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on a (global, sharded) batch of uint8 images and integer labels
  (segmentation: and uint8 0/1 `mask`s).

  `trainable`: see `loss_and_grads`. `keep_stats`: a pytree of bools like `state.rest` (None:
  all update); True leaves keep their old value (frozen batch-norm statistics). `plateau`:
  multiply the updates by the reduce-on-plateau scale (off: not even by 1, so a run without
  plateau compiles to the same arithmetic as before stages existed).
  """
  loss, logits, new_rest, grads = loss_and_grads(
    state, batch, graphdef=graphdef, loss_fn=loss_fn, config=config, base_key=base_key,
    trainable=trainable,
  )  # fmt: skip
  if keep_stats is not None:
    new_rest = jax.tree.map(lambda o, n, k: o if k else n, state.rest, new_rest, keep_stats)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  skipped = skipped_update(opt_state)
  if skipped is not None:  # A skipped step leaves the batch statistics as they were too.
    new_rest = jax.tree.map(lambda o, n: jnp.where(skipped, o, n), state.rest, new_rest)
  scale = state.plateau.scale
  if plateau:
    updates = jax.tree.map(lambda u: (u * scale).astype(u.dtype), updates)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(
    step=state.step + 1,
    stage_step=state.stage_step + 1,
    params=params,
    rest=new_rest,
    opt_state=opt_state,
  )
  grad_norm = optax.tree.norm(grads)
  step_ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if skipped is not None:
    step_ok = step_ok | skipped
  step_metrics = {
    "loss": loss,
    "grad_norm": grad_norm,
    "lr": schedule(state.stage_step) * scale if plateau else schedule(state.stage_step),
    # One fused reduction over the new state: cheap next to the backward pass.
    "finite": step_ok & all_finite((params, new_rest, opt_state)),
  }
  if skipped is not None:
    step_metrics["skipped"] = skipped
  if not is_segmentation(config):  # Segmentation is judged by its evaluator's Dice.
    step_metrics["accuracy"] = batch_accuracy(logits, batch["label"])
  return new_state, step_metrics


def all_finite(tree: Any) -> jax.Array:
  """Whether every floating-point leaf of `tree` is finite (a device bool)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.True_


def skipped_update(opt_state: Any) -> jax.Array | None:
  """Whether `optax.apply_if_finite` (the outermost transform) found this step's gradients
  non-finite, and so rejected its update; None when the optimizer does not skip.

  Once more than `max_consecutive_errors` come in a row it applies the non-finite update instead;
  the new state is then non-finite, which the `finite` flag reports (and the guard stops the run).
  """
  if not isinstance(opt_state, optax.ApplyIfFiniteState):
    return None
  return ~opt_state.last_finite


def batch_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy; for multi-hot labels, the fraction of correct findings at logit 0."""
  if labels.ndim == logits.ndim:
    return jnp.mean((logits > 0) == (labels > 0.5))
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def bind_train_step(
  config: ml_collections.ConfigDict,
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  schedule: optim.Schedule,
  num_classes: int,
  class_weights: np.ndarray | None = None,
  trainable: Any = None,
  keep_stats: Any = None,
  plateau: bool = False,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """`train_step` with everything but `(state, batch[, seed])` bound, ready for `jax.jit`.

  `seed` (optional, default `config.seed`): pass `seed_arg(config.seed)` to the jitted step to
  make the seed an input of the program rather than a constant in it; runs that differ only in
  their seed then compile to the same program, which the persistent compilation cache serves
  (the trainer does this). Either way the step draws the same numbers.
  """
  bound = functools.partial(
    train_step,
    graphdef=graphdef,
    tx=tx,
    loss_fn=losses.make_loss(config.loss, num_classes, class_weights),
    schedule=schedule,
    config=config,
    trainable=trainable,
    keep_stats=keep_stats,
    plateau=plateau,
  )

  def step(state: TrainState, batch: dict[str, jax.Array], seed: Any = None):
    return bound(state, batch, base_key=jax.random.key(config.seed if seed is None else seed))

  return step


def seed_arg(seed: int) -> np.ndarray:
  """`seed` as the uint32 array that the jitted train step takes (see `bind_train_step`).

  `jax.random.key` of a traced uint32 equals that of the Python int for every seed in
  [0, 2**32); other seeds would wrap, so they are refused.
  """
  if not 0 <= int(seed) < 2**32:
    raise ValueError(f"config.seed={seed}: expected an integer in [0, 2**32).")
  return np.asarray(seed, np.uint32)


def predict_step(
  state: Any,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  config: ml_collections.ConfigDict,
) -> jax.Array:
  """Class probabilities (softmax, or sigmoid for sigmoid losses) for a batch, eval mode."""
  return probabilities(predict_logits(state, batch, graphdef=graphdef, config=config), config)


def predict_logits(
  state: Any,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  config: ml_collections.ConfigDict,
) -> jax.Array:
  """Float32 logits of a batch in eval mode; `state` has `params` and `rest`."""
  return _logits(state, augment.to_float(batch["image"]), graphdef, config)


def _logits(state: Any, images: jax.Array, graphdef: nnx.GraphDef, config) -> jax.Array:
  """Eval-mode float32 logits of float images in [0, 1]."""
  model = nnx.merge(graphdef, state.params, state.rest)
  return model(model_inputs(images, config), train=False).astype(jnp.float32)


def probabilities(logits: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """Softmax, or sigmoid for sigmoid losses."""
  if config.loss.name in losses.SIGMOID_LOSSES:
    return jax.nn.sigmoid(logits)
  return jax.nn.softmax(logits)


def eval_step(
  state: Any,
  batch: dict[str, jax.Array],
  key: jax.Array | None = None,
  *,
  graphdef: nnx.GraphDef,
  config: ml_collections.ConfigDict,
  loss_fn: Callable[..., jax.Array],
) -> dict[str, jax.Array]:
  """Probabilities and per-example loss (the training objective) of a labelled batch (the
  `label` is the mask for segmentation). With `key` (`config.augment_eval`; classification)
  the images are first augmented by `config.augment`, one draw per example from `key`."""
  images = augment.to_float(batch["image"])
  if key is not None:
    images = augment.augment(key, images, config.augment)
  logits = _logits(state, images, graphdef, config)
  return {"probs": probabilities(logits, config), "loss": loss_fn(logits, batch["label"])}

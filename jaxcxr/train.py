"""Config-driven, sharded, resumable training and evaluation of chest X-ray classifiers.

    python -m jaxcxr.train --config configs/quickstart.py --workdir /tmp/quickstart
    python -m jaxcxr.train --config configs/chest_xray.py --workdir W --config.input.batch_size=16

The main is thin; everything lives in `train_and_evaluate(config, workdir)`, which tests call
with tiny configs. The step functions are pure and jitted: the Flax NNX model is split once into
a static graph and its state (`nnx.split`), and `train_step(state, batch)` maps a `TrainState` to
the next one with the batch sharded over a `('data',)` mesh (docs/design.md). Re-running a command
with the same workdir resumes from its latest checkpoint, input position included.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import flags, logging
from flax import nnx
from ml_collections import config_flags

from jaxcxr import checkpoint as ckpt_lib
from jaxcxr import cli, config_lib, losses, metrics, models, optim, sharding, workdir_lock
from jaxcxr.data import augment, classes, pipeline, splits, tfds_access


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree; the model graph is static)."""

  step: jax.Array
  params: nnx.State
  rest: nnx.State  # Non-trainable model state: batch-norm statistics.
  opt_state: optax.OptState


def model_inputs(images: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """[0, 1] grey images → the model's input: its channels, normalised per `config.input.mode`."""
  mean, std = augment.mode_mean_std(config.input.mode, config.input.mean, config.input.std)
  return augment.normalize(images, mean, std, config.model.in_chans, jnp.dtype(config.dtype))


def loss_and_grads(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  loss_fn: Callable[..., jax.Array],
  config: ml_collections.ConfigDict,
  base_key: jax.Array,
) -> tuple[jax.Array, jax.Array, nnx.State, nnx.State]:
  """Mean loss over the global batch, logits, updated batch statistics and parameter gradients."""
  # Keys derive from the step, so resumed and uninterrupted runs draw the same numbers.
  aug_key, drop_key = jax.random.split(jax.random.fold_in(base_key, state.step))
  images = augment.augment(aug_key, augment.to_float(batch["image"]), config.augment)
  images = model_inputs(images, config)

  def compute_loss(params, rest):
    # copy=True makes fresh Variables in this trace, where batch norm may update its statistics
    # (Variables unflattened by jax.grad belong to the enclosing trace and refuse mutation).
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits = model(images, train=True, rngs=nnx.Rngs(dropout=drop_key))
    # The mean is taken over the global batch inside the differentiated function, so gradients
    # are those of the global-batch loss whatever the device count.
    loss = loss_fn(logits, batch["label"]).mean()
    return loss, (logits, nnx.state(model, nnx.Not(nnx.Param)))

  (loss, (logits, new_rest)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
    state.params, state.rest
  )
  return loss, logits, new_rest, grads


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
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on a (global, sharded) batch of uint8 images and integer labels."""
  loss, logits, new_rest, grads = loss_and_grads(
    state, batch, graphdef=graphdef, loss_fn=loss_fn, config=config, base_key=base_key
  )
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, rest=new_rest, opt_state=opt_state)
  step_metrics = {
    "loss": loss,
    "accuracy": _batch_accuracy(logits, batch["label"]),
    "grad_norm": optax.tree.norm(grads),
    "lr": schedule(state.step),
  }
  return new_state, step_metrics


def _batch_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
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
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
  """`train_step` with everything but `(state, batch)` bound, ready for `jax.jit`."""
  return functools.partial(
    train_step,
    graphdef=graphdef,
    tx=tx,
    loss_fn=losses.make_loss(config.loss, num_classes, class_weights),
    schedule=schedule,
    config=config,
    base_key=jax.random.key(config.seed),
  )


def predict_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  config: ml_collections.ConfigDict,
) -> jax.Array:
  """Class probabilities (softmax, or sigmoid for sigmoid losses) for a batch, eval mode."""
  images = model_inputs(augment.to_float(batch["image"]), config)
  model = nnx.merge(graphdef, state.params, state.rest)
  logits = model(images, train=False).astype(jnp.float32)
  if config.loss.name == "sigmoid_xent":
    return jax.nn.sigmoid(logits)
  return jax.nn.softmax(logits)


def evaluate_split(
  predict_fn: Callable[..., jax.Array],
  state: TrainState,
  source: Any,
  *,
  mesh: jax.sharding.Mesh,
  config: ml_collections.ConfigDict,
  class_names: list[str],
) -> dict[str, Any]:
  """Runs `predict_fn` over a whole split (every example exactly once) and computes metrics."""
  global_bs = config.input.eval_batch_size or config.input.batch_size
  local_bs = sharding.local_batch_size(global_bs, mesh)
  probs, labels, masks = [], [], []
  for batch in pipeline.eval_batches(
    source,
    local_batch_size=local_bs,
    image_size=config.input.image_size,
    num_threads=config.input.num_threads,
  ):
    sharded = sharding.shard_batch(batch, mesh)
    p = predict_fn(state, {"image": sharded["image"]})
    gathered = sharding.process_allgather(
      {"probs": p, "label": sharded["label"], "mask": sharded["mask"]}
    )
    probs.append(gathered["probs"])
    labels.append(gathered["label"])
    masks.append(gathered["mask"])
  keep = np.concatenate(masks) > 0
  result = metrics.classification_metrics(
    np.concatenate(labels)[keep], np.concatenate(probs)[keep], class_names
  )
  if result["num_examples"] != len(source):
    raise RuntimeError(
      f"Evaluated {result['num_examples']} examples but the split has {len(source)}."
    )
  return result


def _load_datasets(config: ml_collections.ConfigDict) -> splits.Data:
  """The run's splits (jaxcxr.data.splits); datasets are prepared by process 0 if needed."""
  if config.input.prepare and jax.process_index() == 0:
    for comp in classes.components(config.input):
      tfds_access.prepare(
        tfds_access.get_builder(comp.data, config.input.data_dir),
        comp.manual_dir or config.input.manual_dir,
      )
  sharding.sync("dataset_prepared")
  # Builders are re-created after preparation so that every process reads the written info.
  return splits.load(config.input)


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nnx.Module:
  """The backbone of `config.model_name`, initialised from `config.model_init` if set."""
  kwargs = dict(config.model)
  in_chans = kwargs.pop("in_chans")
  model = models.create(
    config.model_name,
    num_classes=num_classes,
    in_chans=in_chans,
    rngs=nnx.Rngs(config.seed),
    dtype=jnp.dtype(config.dtype),
    **kwargs,
  )
  if config.model_init:
    init_from(model, config)
  return model


def init_from(model: nnx.Module, config: ml_collections.ConfigDict) -> None:
  """Loads `config.model_init` into `model`: pretrained weights or a converted checkpoint.

  `model_init` is a registered pretrained name (`resnet50.tv_in1k`, downloaded and cached), a
  local checkpoint file (safetensors, torch `.pth`, Keras `.h5`) of `config.model_name`'s
  architecture, or a directory written by `python -m jaxcxr.weights.convert_checkpoint`.
  Everything must match except what `config.model_load.dont_load` names and, for a new number
  of classes, the classifier (big_vision's rule: no silent partial loads).
  """
  from jaxcxr.weights import pretrained  # pylint: disable=g-import-not-at-top

  source = config.model_init
  if os.path.isdir(source):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    target = ckpt_lib.abstract_like(nnx.state(model))
    nnx.update(model, ocp.StandardCheckpointer().restore(os.path.abspath(source), target))
    logging.info("Initialised %s from the converted checkpoint %s", config.model_name, source)
    return
  report = pretrained.load_pretrained(
    model, source, arch=config.model_name, dont_load=tuple(config.model_load.dont_load)
  )
  logging.info("%s", report)


def create_train_state(
  config: ml_collections.ConfigDict, num_classes: int, tx: optax.GradientTransformation
) -> tuple[nnx.GraphDef, TrainState]:
  """The model's static graph and its initial train state (host arrays)."""
  model = create_model(config, num_classes)
  logging.info("%s: %s parameters", config.model_name, f"{models.param_count(model):,}")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  state = TrainState(
    step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params)
  )
  return graphdef, state


@dataclasses.dataclass
class Setup:
  """What training and evaluation build from a config before the first step."""

  mesh: jax.sharding.Mesh
  data: splits.Data  # The run's named splits.
  class_names: list[str]
  train_source: Any
  class_weights: np.ndarray | None
  steps_per_epoch: int
  total_steps: int
  schedule: optim.Schedule
  tx: optax.GradientTransformation
  graphdef: nnx.GraphDef
  state: TrainState  # Initial state, replicated over the mesh.


def setup(config: ml_collections.ConfigDict) -> Setup:
  """Mesh, dataset (prepared if needed), schedule, optimizer, model and initial state."""
  mesh = sharding.make_mesh()
  logging.info(
    "%d processes, %d devices (%s); mesh %s",
    jax.process_count(),
    jax.device_count(),
    jax.default_backend(),
    dict(mesh.shape),
  )
  config_lib.validate(config, num_devices=mesh.devices.size)
  data = _load_datasets(config)
  class_names = data.class_names
  num_classes = config.num_classes or len(class_names)
  if num_classes != len(class_names):
    raise ValueError(
      f"config.num_classes={config.num_classes} but the data has "
      f"{len(class_names)} classes {class_names}."
    )
  if data.multi_label and config.loss.name != "sigmoid_xent":
    raise ValueError(
      f"{config.input.data or config.input.mixture} is multi-label: set "
      "config.loss.name='sigmoid_xent' (one sigmoid per finding, as CheXNet)."
    )
  if data.multi_label and config.loss.class_weights.strip().lower() == "balanced":
    raise ValueError(
      "config.loss.class_weights='balanced' is for single-label data; give explicit "
      "comma-separated per-finding weights for multi-label data."
    )
  train_source = data.source(config.input.train_split)
  class_weights = None
  if config.loss.class_weights.strip().lower() not in ("", "none"):
    counts = np.bincount(train_source.labels, minlength=num_classes)
    class_weights = losses.resolve_class_weights(config.loss.class_weights, counts)
    logging.info("Class weights %s from training counts %s", class_weights, counts)
  steps_per_epoch = max(1, len(train_source) // config.input.batch_size)
  total_steps = config_lib.resolve_total_steps(config, steps_per_epoch)

  schedule = optim.make_schedule(config.schedule, config.optimizer.lr, total_steps, steps_per_epoch)
  tx = optim.make_optimizer(config.optimizer, schedule)
  graphdef, state = create_train_state(config, num_classes, tx)
  state = sharding.replicate(state, mesh)
  return Setup(
    mesh=mesh, data=data, class_names=class_names, train_source=train_source,
    class_weights=class_weights,
    steps_per_epoch=steps_per_epoch, total_steps=total_steps, schedule=schedule, tx=tx,
    graphdef=graphdef, state=state,
  )  # fmt: skip


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains per `config`, checkpointing into `workdir`, then evaluates `config.eval_splits`.

  Returns:
    `{split: metrics}` for every split in `config.eval_splits`; also written (by process 0) to
    `workdir/eval/<split>.json`.
  """
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  if is_main:
    workdir_lock.hold(workdir)  # a second run on this workdir is refused, naming the first
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  s = setup(config)
  mesh, data, class_names = s.mesh, s.data, s.class_names
  graphdef, state, total_steps = s.graphdef, s.state, s.total_steps
  global_bs = config.input.batch_size
  local_bs = sharding.local_batch_size(global_bs, mesh)

  train_iter = pipeline.train_iterator(
    s.train_source,
    local_batch_size=local_bs,
    image_size=config.input.image_size,
    seed=config.seed,
    num_workers=config.input.num_workers,
    num_threads=config.input.num_threads,
  )
  checkpointer = ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"),
    max_to_keep=config.keep_checkpoints,
    save_every_steps=config.checkpoint_every_steps,
  )
  start_step = checkpointer.latest_step() or 0
  if start_step:
    logging.info("Resuming from the checkpoint of step %d in %s", start_step, workdir)
    start_step, state, train_iter = checkpointer.restore_newest_intact(
      ckpt_lib.abstract_like(state), train_iter
    )
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    # Which patients went where: a reader can check the splits without re-running them.
    metrics.write_json(os.path.join(workdir, "data_splits.json"), data.describe())

  repl = sharding.replicated(mesh)
  jit_train = jax.jit(
    bind_train_step(config, graphdef, s.tx, s.schedule, len(class_names), s.class_weights),
    donate_argnums=0,
    out_shardings=(repl, repl),
  )
  jit_predict = jax.jit(functools.partial(predict_step, graphdef=graphdef, config=config))
  eval_fn = functools.partial(
    evaluate_split, jit_predict, mesh=mesh, config=config, class_names=class_names
  )

  writer = _summary_writer(workdir) if is_main else None
  halt_at = start_step + config.halt_after_steps if config.halt_after_steps else total_steps
  end_step = min(total_steps, halt_at)
  progress = _progress_bar(start_step, total_steps, config.progress_bar and is_main)
  meta = {"config_model": config.model_name, "data": config.input.data, "total_steps": total_steps}
  t_last, step_last = time.perf_counter(), start_step
  for step in range(start_step, end_step):
    batch = sharding.shard_batch(next(train_iter), mesh)
    state, step_metrics = jit_train(state, batch)
    done = step + 1
    if done % config.log_every_steps == 0 or done == end_step:
      scalars = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
      now = time.perf_counter()
      scalars["images_per_sec"] = (done - step_last) * global_bs / (now - t_last)
      t_last, step_last = now, done
      if writer:
        for k, v in scalars.items():
          writer.add_scalar(f"train/{k}", v, done)
      if progress:
        progress.set_postfix(
          loss=f"{scalars['loss']:.4f}",
          lr=f"{scalars['lr']:.2e}",
          img_s=f"{scalars['images_per_sec']:.1f}",
        )
    if progress:
      progress.update(1)
    if config.eval_every_steps and config.val_split and done % config.eval_every_steps == 0:
      val = eval_fn(state, data.source(config.val_split))
      _log_eval(writer, config.val_split, val, done)
      if is_main:
        with open(os.path.join(workdir, "eval", "history.jsonl"), "a") as f:
          f.write(json.dumps({"step": done, "split": config.val_split, **val}) + "\n")
    checkpointer.save(done, state, train_iter, {**meta, "step": done}, force=done == end_step)
  if progress:
    progress.close()
  checkpointer.wait()

  results: dict[str, Any] = {}
  if end_step < total_steps:
    logging.info("Halted after step %d of %d; re-run to resume.", end_step, total_steps)
  else:
    for split in config.eval_splits:
      results[split] = eval_fn(state, data.source(split))
      _log_eval(writer, split, results[split], total_steps)
      if is_main:
        metrics.write_json(os.path.join(workdir, "eval", f"{split}.json"), results[split])
        print(format_eval(split, results[split]), flush=True)
  checkpointer.close()
  if writer:
    writer.close()
  workdir_lock.release(workdir)
  return results


def _summary_writer(workdir: str):
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

  return SummaryWriter(os.path.join(workdir, "tb"))


def _progress_bar(start: int, total: int, enabled: bool):
  if not enabled:
    return None
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  return tqdm(total=total, initial=start, desc="train", unit="step", file=sys.stderr)


def _log_eval(writer, split: str, result: dict[str, Any], step: int) -> None:
  scalars = metrics.scalar_summary(result)
  logging.info("eval %s @ step %d: %s", split, step, scalars)
  if writer:
    for k, v in scalars.items():
      writer.add_scalar(f"{split}/{k}", v, step)
    writer.flush()


def format_eval(split: str, r: dict[str, Any]) -> str:
  fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
  return (
    f"[{split}] n={r['num_examples']} accuracy={fmt(r['accuracy'])} "
    f"auroc_macro={fmt(r['auroc_macro'])} top2_accuracy={fmt(r['top2_accuracy'])}"
  )


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file(
    "config", None, "Training config file (configs/*.py), with optional `:arg`.", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard logs and eval reports go here.")
  cli.define_multihost_flags()


def main(argv):
  del argv
  cli.quiet_checkpoint_logs()
  cli.init_multihost()
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, config_help=True)

"""Config-driven, sharded, resumable, staged training and evaluation of chest X-ray classifiers.

    python -m jaxcxr.train --config configs/quickstart.py --workdir /tmp/quickstart
    python -m jaxcxr.train --config configs/chest_xray.py --workdir W --config.input.batch_size=16

The main is thin; everything lives in `train_and_evaluate(config, workdir)`, which tests call
with tiny configs. Its parts live in `jaxcxr.training`: the pure jitted steps (`steps`: the Flax
NNX model split once into a static graph and its state, `train_step(state, batch)` mapping a
`TrainState` to the next one with the batch sharded over a `('data',)` mesh), the stages
(`stages`: `config.stages`, each with its own length, trainable parameters, batch-norm statistics,
optimizer, per-group rates, early stopping and plateau; none = one stage from the run's keys) and
the hooks the loop calls after each step (`hooks`: train-metric means, evaluation, plateau, early
stopping, best checkpoint, halt, checkpoint). Evaluations are `jaxcxr.evaluators` plug-ins named in
`config.evals`; the default one is classification on `config.val_split`, which also gives the
validation loss. Monitors are `<evaluator>_<scalar>` (`val_loss`, `val_accuracy`,
`val_auroc_macro`); `config.best_monitor` keeps the best model state (WORKDIR/best) and
`config.select='best'` reports it. Re-running a command with the same workdir resumes from its
latest checkpoint exactly: stage, step in the stage, plateau and early-stopping state and input
position included. Outputs: `eval/<split>.json` (metrics, `loss`, and `selected`: which state),
`eval/<split>_predictions.npz` (per-example probabilities, labels, patient ids) and
`eval/history.jsonl` (every evaluation during training).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import flags, logging
from flax import nnx
from ml_collections import config_flags

from jaxcxr import checkpoint as ckpt_lib
from jaxcxr import (
  cli,
  config_lib,
  evaluators,
  losses,
  lung_mask,
  metrics,
  models,
  optim,
  post_hoc,
  sharding,
  workdir_lock,
)
from jaxcxr.data import classes, pipeline, prepared, splits, tfds_access
from jaxcxr.training import guards
from jaxcxr.training import hooks as hooks_lib
from jaxcxr.training import stages as stages_lib
from jaxcxr.training import steps as steps_lib
from jaxcxr.training.model_init import create_model, init_from, init_from_run  # noqa: F401
from jaxcxr.training.steps import (  # noqa: F401  (the public names of jaxcxr.train)
  TrainState,
  bind_train_step,
  eval_step,
  loss_and_grads,
  model_inputs,
  predict_step,
  train_step,
)


def load_datasets(config: ml_collections.ConfigDict, workdir: str | None = None) -> splits.Data:
  """The run's splits (jaxcxr.data.splits); datasets are prepared by process 0 if needed.
  With `config.input.lung_mask` every split is lung-masked (`jaxcxr.lung_mask`; masks cached
  under `workdir` unless `lung_mask.cache_dir` says where); with `config.input.prepared_cache`
  every split is read from prepared (decoded and resized) images (`jaxcxr.data.prepared`)."""
  if config.input.prepare and jax.process_index() == 0:
    for comp in classes.components(config.input):
      tfds_access.prepare(
        tfds_access.get_builder(comp.data, config.input.data_dir),
        comp.manual_dir or config.input.manual_dir,
      )
  sharding.sync("dataset_prepared")
  # Builders are re-created after preparation so that every process reads the written info.
  data = lung_mask.load_splits(config, workdir)
  return prepared.prepare(data, config) if config.input.get("prepared_cache") else data


def create_train_state(
  config: ml_collections.ConfigDict, num_classes: int, tx: optax.GradientTransformation
) -> tuple[nnx.GraphDef, TrainState]:
  """The model's static graph and its initial train state (host arrays), stage 0."""
  model = create_model(config, num_classes)
  logging.info("%s: %s parameters", config.model_name, f"{models.param_count(model):,}")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    rest=rest,
    opt_state=tx.init(params),
    stage=jnp.zeros((), jnp.int32),
    stage_step=jnp.zeros((), jnp.int32),
    plateau=optax.contrib.reduce_on_plateau().init(params),
    stop_best=jnp.asarray(jnp.inf, jnp.float32),
    stop_wait=jnp.zeros((), jnp.int32),
  )
  return graphdef, state


def begin_stage(
  state: TrainState, stage: stages_lib.Stage, tx: optax.GradientTransformation
) -> TrainState:
  """`state` at the start of `stage`: a fresh optimizer, plateau and early-stopping state."""
  return state.replace(
    opt_state=tx.init(state.params),
    stage=jnp.asarray(stage.index, jnp.int32),
    stage_step=jnp.zeros((), jnp.int32),
    plateau=stages_lib.plateau_tx(stage).init(state.params),
    stop_best=jnp.asarray(jnp.inf, jnp.float32),
    stop_wait=jnp.zeros((), jnp.int32),
  )


def abstract_stage_state(
  state: TrainState, stage: stages_lib.Stage, tx: optax.GradientTransformation, mesh
) -> TrainState:
  """The restore target of a checkpoint of `stage`: shapes, dtypes and (replicated) shardings
  only, traced with `jax.eval_shape` (no optimizer state is allocated)."""
  repl = sharding.replicated(mesh)
  shapes = jax.eval_shape(lambda s: begin_stage(s, stage, tx), state)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), shapes)


@dataclasses.dataclass
class Setup:
  """What training and evaluation build from a config before the first step."""

  mesh: jax.sharding.Mesh
  data: splits.Data  # The run's named splits.
  class_names: list[str]
  train_source: Any
  class_weights: np.ndarray | None
  steps_per_epoch: int
  total_steps: int  # All stages together.
  stages: list[stages_lib.Stage]
  schedule: optim.Schedule  # Stage 0's.
  tx: optax.GradientTransformation  # Stage 0's.
  graphdef: nnx.GraphDef
  # Initial state (stage 0), replicated over the mesh; with `restoring`, its abstract shape.
  state: TrainState


def has_checkpoint(workdir: str | None) -> bool:
  """Whether `workdir` holds a training checkpoint to resume from."""
  ckpts = os.path.join(workdir, "checkpoints") if workdir else ""
  return bool(ckpts) and os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts))


def setup(
  config: ml_collections.ConfigDict, restoring: bool = False, workdir: str | None = None
) -> Setup:
  """Mesh, dataset (prepared if needed), stages, optimizer, model and initial state.

  `restoring`: the state will be restored from a checkpoint, so `config.model_init` is not
  loaded (no pretrained download; resume always wins over model_init). `workdir`: where a
  lung-masked run caches its masks (`config.input.lung_mask`).
  """
  mesh = sharding.make_mesh()
  logging.info(
    "%d processes, %d devices (%s); mesh %s",
    jax.process_count(),
    jax.device_count(),
    jax.default_backend(),
    dict(mesh.shape),
  )
  config_lib.validate(config, num_devices=mesh.devices.size)
  data = load_datasets(config, workdir)
  splits.check_source_overlap(config, data)
  class_names = data.class_names
  num_classes = config.num_classes or len(class_names)
  if num_classes != len(class_names):
    raise ValueError(
      f"config.num_classes={config.num_classes} but the data has "
      f"{len(class_names)} classes {class_names}."
    )
  if data.segmentation != steps_lib.is_segmentation(config):
    raise ValueError(
      f"config.task={config.task!r} but {config.input.data or config.input.mixture} "
      + ("holds masks: set config.task='segmentation'." if data.segmentation else "has no masks.")
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
  train_source = data.split(config.input.train_split)
  class_weights = None
  if config.loss.class_weights.strip().lower() not in ("", "none"):
    counts = np.bincount(train_source.labels, minlength=num_classes)
    class_weights = losses.resolve_class_weights(config.loss.class_weights, counts)
    logging.info("Class weights %s from training counts %s", class_weights, counts)
  steps_per_epoch = max(1, len(train_source) // config.input.batch_size)

  if restoring:  # Shapes only: the checkpoint brings the values (nnx.eval_shape allocates none).
    model = nnx.eval_shape(lambda: create_model(config, num_classes, init=False))
  else:
    model = create_model(config, num_classes)
  logging.info("%s: %s parameters", config.model_name, f"{models.param_count(model):,}")
  mean, std = steps_lib.input_mean_std(config)
  logging.info("Input normalisation (mode %s): mean %s, std %s", config.input.mode, mean, std)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  stages = stages_lib.resolve(config, steps_per_epoch, params, rest)
  for st in stages:
    logging.info("%s", st.describe())
  schedule = stages[0].schedule_fn(steps_per_epoch)
  tx = stages[0].make_tx(schedule)
  state = TrainState(
    step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=None,
    stage=jnp.zeros((), jnp.int32), stage_step=jnp.zeros((), jnp.int32), plateau=None,
    stop_best=jnp.zeros((), jnp.float32), stop_wait=jnp.zeros((), jnp.int32),
  )  # fmt: skip
  if restoring:
    state = abstract_stage_state(state, stages[0], tx, mesh)
  else:
    state = sharding.replicate(begin_stage(state, stages[0], tx), mesh)
  return Setup(
    mesh=mesh, data=data, class_names=class_names, train_source=train_source,
    class_weights=class_weights, steps_per_epoch=steps_per_epoch,
    total_steps=sum(st.total_steps for st in stages), stages=stages, schedule=schedule, tx=tx,
    graphdef=graphdef, state=state,
  )  # fmt: skip


def _evaluators(config: ml_collections.ConfigDict, ctx: evaluators.EvalContext) -> dict[str, Any]:
  """The evaluators run during training: `config.evals`, or classification on val_split."""
  cfgs = dict(config.evals.items())
  if not cfgs and config.val_split:
    kind = report_type(config)
    cfgs = {"val": ml_collections.ConfigDict({"type": kind, "split": config.val_split})}
  return {name: evaluators.create(name, cfg, ctx) for name, cfg in cfgs.items()}


def report_type(config: ml_collections.ConfigDict) -> str:
  """The evaluator type of the default validation and the final reports, by `config.task`."""
  return "segmentation" if steps_lib.is_segmentation(config) else "classification"


def _monitor_evaluator(monitor: str, evals: dict[str, Any], what: str) -> str:
  """The evaluator a `<evaluator>_<scalar>` monitor reads; a test split is an error."""
  names = [n for n in evals if monitor.startswith(n + "_")]
  if not names:
    raise ValueError(
      f"{what}={monitor!r} names no evaluator: monitors are '<evaluator>_<scalar>' with "
      f"evaluators {sorted(evals)} (config.evals; 'val' reads config.val_split)."
    )
  name = max(names, key=len)
  split = evals[name].split
  if "test" in split.lower():
    raise ValueError(
      f"{what}={monitor!r} monitors split {split!r}: selecting or stopping on a test split "
      "biases its figures; monitor a validation split."
    )
  return name


def _check_monitors(
  config: ml_collections.ConfigDict, stages: list[stages_lib.Stage], evals: dict[str, Any]
) -> dict[str, str]:
  """`{monitor: evaluator}` of every monitor the run uses, each checked."""
  out = {}
  if config.select not in ("last", "best"):
    raise ValueError(f"config.select={config.select!r} is not 'last' or 'best'.")
  if config.select == "best" and not config.best_monitor:
    raise ValueError("config.select='best' needs config.best_monitor (e.g. 'val_loss').")
  if config.best_monitor:
    out[config.best_monitor] = _monitor_evaluator(config.best_monitor, evals, "config.best_monitor")
    if not any(st.eval_every_steps for st in stages) and not all(
      e.every_steps for e in evals.values()
    ):
      raise ValueError(
        f"config.best_monitor={config.best_monitor!r} but nothing is evaluated during training: "
        "set config.eval_every_steps (or a stage's eval_every_steps)."
      )
  for st in stages:
    for what, cfg in (("early_stopping", st.early_stopping), ("plateau", st.plateau)):
      if cfg.patience:
        where = f"config.stages[{st.index}].{what}.monitor"
        out[cfg.monitor] = _monitor_evaluator(cfg.monitor, evals, where)
  return out


@guards.restores_sigterm
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains per `config` (stage by stage), checkpointing into `workdir`, then evaluates.

  Returns:
    `{split: metrics}` for every split in `config.eval_splits` of the selected state
    (`config.select`); also written (by process 0) to `workdir/eval/<split>.json`. Empty when
    the run halted (`halt_after_steps`) before its end.

  Raises:
    guards.NonFiniteError: the loss or gradient norm turned non-finite (nothing non-finite is
      saved; the last finite checkpoint is kept).
    guards.Preempted: SIGTERM (or a multi-host preemption notice) came during training; the
      current step was saved and a re-run resumes from it.
  """
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  if is_main:
    workdir_lock.hold(workdir)  # a second run on this workdir is refused, naming the first
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  s = setup(config, restoring=has_checkpoint(workdir), workdir=workdir)
  mesh, data, class_names, stages = s.mesh, s.data, s.class_names, s.stages
  post_hoc.check(config.report, class_names)
  graphdef, state = s.graphdef, s.state
  global_bs = config.input.batch_size
  local_bs = sharding.local_batch_size(global_bs, mesh)
  loss_fn = losses.make_loss(config.loss, len(class_names), s.class_weights)
  ctx = evaluators.EvalContext(
    config=config, mesh=mesh, data=data, class_names=class_names, graphdef=graphdef,
    eval_step=jax.jit(
      functools.partial(eval_step, graphdef=graphdef, config=config, loss_fn=loss_fn)
    ),
  )  # fmt: skip
  evals = _evaluators(config, ctx)
  monitors = _check_monitors(config, stages, evals)

  train_iter = pipeline.train_iterator(
    s.train_source,
    local_batch_size=local_bs,
    image_size=config.input.image_size,
    **pipeline.resize_args(config.input),
    seed=config.seed,
    num_workers=config.input.num_workers,
    num_threads=config.input.num_threads,
    with_masks=data.segmentation,
  )
  train_iter = pipeline.DevicePrefetch(
    train_iter, lambda b: sharding.shard_batch(b, mesh), config.input.prefetch_to_device
  )
  checkpointer = ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"),
    max_to_keep=config.keep_checkpoints,
    save_every_steps=config.checkpoint_every_steps,
  )
  best = None
  if config.best_monitor:
    mode = "min" if stages_lib.monitor_sign(config.best_monitor) > 0 else "max"
    best = ckpt_lib.BestCheckpointer(os.path.join(workdir, "best"), config.best_monitor, mode)
  start_step = checkpointer.latest_step() or 0
  if bool(start_step) != has_checkpoint(workdir):
    raise RuntimeError(f"{workdir}/checkpoints: orbax and the directory listing disagree.")
  if start_step:
    # The newest checkpoint that restores (a damaged one is set aside), against the abstract state
    # of the stage that step belongs to.
    def target(step: int) -> Any:
      st = stages[int(checkpointer.restore_meta(step).get("stage", 0))]
      return abstract_stage_state(state, st, st.make_tx(st.schedule_fn(s.steps_per_epoch)), mesh)

    start_step, state, train_iter = checkpointer.restore_newest_intact(target, train_iter)
    stage_idx = int(checkpointer.restore_meta(start_step).get("stage", 0))
    logging.info(
      "Resuming from the checkpoint of step %d (stage %d) in %s", start_step, stage_idx, workdir
    )
  if best:
    best.discard_after(start_step)  # best saves of steps this run replays
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    # Which patients went where: a reader can check the splits without re-running them.
    metrics.write_json(os.path.join(workdir, "data_splits.json"), data.describe())

  repl = sharding.replicated(mesh)
  writer = _summary_writer(workdir) if is_main else None
  halt_at = start_step + config.halt_after_steps if config.halt_after_steps else None
  # The progress bar starts after the first (compiling) step, so its rate and ETA exclude
  # compilation.
  progress = None
  meta = {
    "config_model": config.model_name,
    "data": config.input.data,
    "total_steps": s.total_steps,
  }
  train_metrics = hooks_lib.TrainMetrics(config.log_every_steps, global_bs, start_step)
  halted = False
  guard = guards.FiniteGuard(
    config.log_every_steps, checkpointer, best, guards.guard_advice(config)
  )
  if config.eval_at_start and not start_step:
    # The untrained-head baseline (Naik et al. 2021): the initial state on every report split,
    # before any step, as eval/<split>@0.json. Not on resume: that state is gone by then.
    final_reports(ctx, state, tuple(config.eval_splits), workdir,
                  {"select": "initial", "step": 0}, writer, suffix="@0")  # fmt: skip
  preempt = guards.Preemption()
  preempt.arm()  # SIGTERM from here to the loop's end: save this step and exit
  seed = steps_lib.seed_arg(config.seed)  # An input, not a constant: one program for all seeds.
  for st in stages[int(state.stage) :]:
    schedule = st.schedule_fn(s.steps_per_epoch)
    tx = st.make_tx(schedule)
    if int(state.stage) != st.index:
      state = sharding.replicate(begin_stage(state, st, tx), mesh)
    if hooks_lib.stage_over(state, st):
      continue
    logging.info("Training %s", st.describe())
    jit_train = jax.jit(
      bind_train_step(
        config, graphdef, tx, schedule, len(class_names), s.class_weights,
        trainable=st.trainable_tree(state.params), keep_stats=st.keep_stats_tree(state.rest),
        plateau=bool(st.plateau.patience),
      ),
      donate_argnums=0,
      out_shardings=(repl, repl),
    )  # fmt: skip
    hooks: list[Any] = [guard, hooks_lib.Evaluate(evals, st.eval_every_steps, workdir, is_main)]
    if st.plateau.patience:
      hooks.append(hooks_lib.Plateau(st, monitors[st.plateau.monitor]))
    if st.early_stopping.patience:
      hooks.append(hooks_lib.EarlyStopping(st, monitors[st.early_stopping.monitor]))
    if best:
      hooks.append(
        hooks_lib.BestCheckpoint(best, config.best_monitor, monitors[config.best_monitor])
      )
    hooks += [
      hooks_lib.Halt(halt_at),
      preempt,
      train_metrics,
      hooks_lib.Checkpoint(checkpointer, meta, train_iter),
    ]
    loop = hooks_lib.Loop(
      state=state, stage=st, step=int(state.step), stage_step=int(state.stage_step), writer=writer,
      progress=progress, guard=guard,
    )  # fmt: skip
    compiled = False
    while not loop.stage_over and not loop.halt:
      batch = hooks_lib.next_batch(train_iter, loop)  # On the devices already (DevicePrefetch).
      if compiled:
        loop.state, loop.step_metrics = jit_train(loop.state, batch, seed)
      else:
        # The stage's first step compiles its program: say so and time it (tens of seconds).
        with cli.phase(f"compiling and running the first train step of stage {st.index}"):
          loop.state, loop.step_metrics = jit_train(loop.state, batch, seed)
          jax.block_until_ready(loop.step_metrics)
        compiled = True
      loop.step += 1
      loop.stage_step += 1  # As the step did on device (no sync)
      loop.stage_over = loop.stage_step >= st.total_steps
      for hook in hooks:
        hook.after_step(loop)
      if progress:
        progress.update(1)
      elif config.progress_bar and is_main:
        progress = loop.progress = _progress_bar(loop.step, s.total_steps, True)
    state = loop.state
    if loop.halt and not (loop.stage_over and st.index == len(stages) - 1):
      halted = True
      break
  preempt.disarm()
  halted = halted or preempt.stopped_at is not None
  if progress:
    progress.close()
  checkpointer.wait()

  results: dict[str, Any] = {}
  if halted:
    logging.info("Halted after step %d of %d; re-run to resume.", int(state.step), s.total_steps)
  else:
    selected = {"select": "last", "step": int(state.step)}
    if config.select == "best":
      step = best.best_step()
      if step is None:
        raise RuntimeError(f"config.select='best' but {best.directory} holds no checkpoint.")
      model = {"params": state.params, "rest": state.rest}
      restored = best.restore(step, ckpt_lib.abstract_like(model))
      state = state.replace(params=restored["params"], rest=restored["rest"])
      selected = {"select": "best", "step": int(step), "monitor": config.best_monitor}
      logging.info("Reporting the best state by %s: step %d", config.best_monitor, step)
    results = final_reports(ctx, state, tuple(config.eval_splits), workdir, selected, writer)
  checkpointer.close()
  if best:
    best.close()
  if writer:
    writer.close()
  # The run report is of classification runs (segmentation writes its overlays with its reports).
  if results and is_main and config.report.html and report_type(config) == "classification":
    gallery = int(config.report.gallery)
    if gallery and jax.process_count() > 1:
      # The gallery restores the checkpoint, a collective orbax call, in process 0 alone: the
      # others have already left, so it would wait on them until the shutdown barrier aborts.
      logging.warning(
        "The report's Grad-CAM gallery is left out of a %d-process run; add it from one "
        "process: python -m jaxcxr.report --workdir %s", jax.process_count(), workdir)  # fmt: skip
      gallery = 0
    from jaxcxr import report  # pylint: disable=g-import-not-at-top

    report.build_after_training(workdir, gallery)
  workdir_lock.release(workdir)
  preempt.raise_if_stopped(checkpointer.directory)
  return results


def final_reports(
  ctx: evaluators.EvalContext,
  state: Any,
  splits: tuple[str, ...],
  workdir: str,
  selected: dict[str, Any],
  writer: Any = None,
  suffix: str = "",
) -> dict[str, Any]:
  """Evaluates `splits` with the task's evaluator (`report_type`); writes each split's report and
  per-example predictions (`eval/<split><suffix>.json`, `eval/<split><suffix>_predictions.npz`).

  Classification: a temperature and per-class thresholds are fitted on `config.val_split` only,
  saved under `WORKDIR/calibration/` and applied to the other splits (`jaxcxr.post_hoc`)."""
  results, evs = {}, {}
  kind = report_type(ctx.config)
  for split in splits:
    cfg = ml_collections.ConfigDict({"split": split, "type": kind, **ctx.config.report.to_dict()})
    evs[split] = ev = evaluators.create(split, cfg, ctx)
    results[split] = {**ev.run(state), "selected": selected}
  if kind == "classification":  # Temperatures and thresholds are of class probabilities.
    post = post_hoc.for_splits(ctx, state, evs, workdir, suffix, write=jax.process_index() == 0)
    for split in evs:
      results[split].update(post.get(split, {}))
  for split, ev in evs.items():
    hooks_lib.log_eval(writer, split, ev.scalars(results[split]), selected["step"])
    if jax.process_index() == 0:
      name = f"{split}{suffix}"
      metrics.write_json(os.path.join(workdir, "eval", f"{name}.json"), results[split])
      ev.write_predictions(os.path.join(workdir, "eval", f"{name}_predictions.npz"))
      state_note = f" state={selected['select']}@{selected['step']}"
      print(format_eval(split, results[split]) + state_note, flush=True)
  return results


def _summary_writer(workdir: str):
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

  return SummaryWriter(os.path.join(workdir, "tb"))


def _progress_bar(start: int, total: int, enabled: bool):
  if not enabled:
    return None
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  return tqdm(total=total, initial=start, desc="train", unit="step", file=sys.stderr)


def format_eval(split: str, r: dict[str, Any]) -> str:
  """One line per split: the headline metrics, each with its 95% interval when there is one."""

  def fmt(key: str) -> str:
    v, ci = r.get(key), r.get(f"{key}_ci95")
    text = "n/a" if v is None else f"{v:.4f}"
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

  if "dice" in r:  # The segmentation evaluator's report.
    return (
      f"[{split}] n={r['num_examples']} dice={fmt('dice')} (min {fmt('dice_min')}, median "
      f"{fmt('dice_median')}) iou={fmt('iou')} fallbacks={r.get('fallbacks', 0)} "
      f"loss={r['loss']:.4f}"
    )

  return (
    f"[{split}] n={r['num_examples']} accuracy={fmt('accuracy')} "
    f"auroc_macro={fmt('auroc_macro')} top2_accuracy={fmt('top2_accuracy')}"
    + (f" loss={r['loss']:.4f}" if "loss" in r else "")
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

r"""Export a trained run for deployment: the model with its weights as one serialised StableHLO
program (`jax.export`).

    python -m jaxcxr.export --workdir RUN --out exported/ [--step best] [--format stablehlo]

The exported function is jaxcxr's own prediction step with the run's parameters and statistics
baked in as constants: uint8 grey images `(N, S, S, 1)` (already resized to the run's
`input.image_size` S, as `jaxcxr.data.pipeline.Preprocess` does, letterboxed where the run's
`input.resize` is) → `(logits, probabilities)`,
float32 `(N, C)`; normalisation and channel handling happen inside. The batch size N is
symbolic, so one file serves any batch. Written to `OUT`:

  * `model.stablehlo`: `jax.export.Exported.serialize()` bytes; `jax.export.deserialize(...)`
    then `.call(images)` runs it from JAX on the platforms it was exported for (`--platforms`,
    default the current backend), with no jaxcxr, Flax or checkpoint needed;
  * `model.mlir`: the StableHLO module as text, for other StableHLO consumers (IREE, XLA tools);
  * `export.json`: class names, input shape and dtype, image size, outputs, the run and step.

ONNX (`--format onnx`) is refused with the reason: the maintained converter, jax2onnx 0.17.1,
requires orbax-checkpoint < 0.11.37 (jaxcxr runs on 0.12), its Flax `nnx.max_pool` patch rejects
a positional window shape (as every jaxcxr CNN calls it), and with that worked around its ONNX
ResNet disagreed with JAX by 0.11 in probability under onnxruntime 1.32 (NCHW/NHWC shape-merge
warnings) on the quick-start model: not a model to deploy.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax import export as jax_export

from jaxcxr import cli, inference
from jaxcxr.data import pipeline
from jaxcxr.training import steps as steps_lib

FORMATS = ("stablehlo", "onnx")
ONNX_REFUSAL = (
  "ONNX export is not available: the maintained converter (jax2onnx 0.17.1) requires "
  "orbax-checkpoint<0.11.37 while jaxcxr runs on 0.12, fails on Flax's nnx.max_pool with a "
  "positional window shape, and once that is worked around its ONNX ResNet disagrees with JAX "
  "by 0.11 in probability (onnxruntime 1.32). Use --format stablehlo."
)


def inference_fn(restored: inference.Restored):
  """uint8 `(N, S, S, 1)` → `(logits, probabilities)`: the prediction step with the run's state
  as constants."""
  config, graphdef, state = restored.config, restored.graphdef, restored.state

  def fn(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = steps_lib.predict_logits(state, {"image": images}, graphdef=graphdef, config=config)
    return logits, steps_lib.probabilities(logits, config)

  return fn


def export_stablehlo(
  restored: inference.Restored, platforms: Sequence[str] | None = None
) -> jax_export.Exported:
  """The run's prediction as a `jax.export.Exported` with a symbolic batch dimension."""
  size = restored.config.input.image_size
  (batch,) = jax_export.symbolic_shape("batch")
  spec = jax.ShapeDtypeStruct((batch, size, size, 1), jnp.uint8)
  return jax_export.export(jax.jit(inference_fn(restored)), platforms=platforms)(spec)


def export(
  workdir: str,
  out_dir: str,
  *,
  fmt: str = "stablehlo",
  step: str | int | None = "latest",
  platforms: Sequence[str] | None = None,
) -> dict[str, Any]:
  """Exports the run in `workdir` to `out_dir`; returns what `export.json` holds."""
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt!r} is not one of {FORMATS}.")
  if fmt == "onnx":
    raise cli.UserError(ONNX_REFUSAL)
  restored = inference.restore(workdir, step)
  with cli.phase("exporting to StableHLO"):
    exported = export_stablehlo(restored, platforms)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "model.stablehlo"), "wb") as f:
    f.write(exported.serialize())
  with open(os.path.join(out_dir, "model.mlir"), "w") as f:
    f.write(exported.mlir_module())
  size = restored.config.input.image_size
  meta = {
    "format": "jax.export (StableHLO), serialised; jax.export.deserialize(bytes).call(images)",
    "jax_version": jax.__version__,
    "platforms": list(exported.platforms),
    "workdir": os.path.abspath(workdir),
    "state": {"select": restored.select, "step": restored.step},
    "model_name": restored.config.model_name,
    "class_names": restored.class_names,
    "input": {
      "shape": ["batch", size, size, 1],
      "dtype": "uint8",
      "meaning": "grey levels 0-255, resized to image_size as jaxcxr.data.pipeline.Preprocess "
      "(jaxcxr.data.images.read_grey, then a bilinear resize: see 'resize')",
      **pipeline.resize_args(restored.config.input),
    },
    "outputs": ["logits float32 (batch, C)", "probabilities float32 (batch, C)"],
    "probabilities": "sigmoid" if restored.config.loss.name == "sigmoid_xent" else "softmax",
  }
  with open(os.path.join(out_dir, "export.json"), "w") as f:
    json.dump(meta, f, indent=2)
  return meta


def load(out_dir: str) -> tuple[jax_export.Exported, dict[str, Any]]:
  """The exported program of `out_dir` and its `export.json`."""
  with open(os.path.join(out_dir, "model.stablehlo"), "rb") as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  with open(os.path.join(out_dir, "export.json")) as f:
    return exported, json.load(f)


def run_exported(exported: jax_export.Exported, images: np.ndarray) -> tuple[np.ndarray, ...]:
  """Calls a deserialised export on uint8 images `(N, S, S, 1)`: `(logits, probabilities)`."""
  out = jax.jit(functools.partial(exported.call))(np.asarray(images, np.uint8))
  return tuple(np.asarray(o) for o in out)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_string("out", None, "Folder for model.stablehlo, model.mlir, export.json.")
  flags.DEFINE_enum("format", "stablehlo", list(FORMATS), "Export format.")
  flags.DEFINE_string("step", "latest", "Checkpoint: 'latest', 'best' or a step number.")
  flags.DEFINE_list(
    "platforms", None, "Platforms to export for (cpu, cuda, rocm, tpu); default: this backend."
  )


def main(argv):
  del argv
  cli.quiet_checkpoint_logs()
  meta = export(
    FLAGS.workdir, FLAGS.out, fmt=FLAGS.format, step=FLAGS.step, platforms=FLAGS.platforms
  )
  print(
    f"exported {meta['model_name']} ({meta['state']['select']}@{meta['state']['step']}) for "
    f"{', '.join(meta['platforms'])} to {os.path.join(FLAGS.out, 'model.stablehlo')}",
    flush=True,
  )


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main)

r"""Converts pretrained weights into an orbax checkpoint that training can start from.

    python -m jaxcxr.weights.convert_checkpoint --model resnet50 --weights resnet50.tv2_in1k \
        --num_classes 3 --in_chans 1 --out /tmp/resnet50_cxr [--dont_load REGEX ...]

``--weights`` is a registered ``arch.tag`` (downloaded and cached) or a local checkpoint file
(safetensors, torch ``.pth``/``.pth.tar``, Keras ``.h5``). The model is built for the new task
(classifier left as initialised when the class count differs, first conv adapted to
``--in_chans``), loaded through :func:`jaxcxr.weights.pretrained.load_pretrained`, and its whole
``nnx.state`` (parameters and batch-norm statistics) saved with orbax's ``StandardCheckpointer``
to ``--out``; point ``config.model_init`` at that directory. Converting once lets machines
without internet access, or without the original checkpoint's format, start from the weights.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import jax
import orbax.checkpoint as ocp
from absl import app, flags
from flax import nnx

from jaxcxr import cli, models
from jaxcxr.weights import pretrained


def convert(
  model_name: str,
  weights: str,
  out: str,
  *,
  num_classes: int,
  in_chans: int = 3,
  seed: int = 0,
  dont_load: tuple[str, ...] = (),
) -> tuple[nnx.Module, pretrained.LoadReport]:
  """Builds `model_name`, loads `weights` into it and saves its state to the directory `out`.

  Returns:
    The loaded model and the load report.

  Raises:
    ValueError: the weights do not fit the model (see `load_pretrained`), or `out` exists.
  """
  out = os.path.abspath(out)
  if os.path.exists(out):
    raise ValueError(f"{out} already exists; choose a new --out directory.")
  model = models.create(
    model_name,
    num_classes=num_classes,
    in_chans=in_chans,
    rngs=nnx.Rngs(jax.random.key(seed, impl="rbg")),
  )
  report = pretrained.load_pretrained(model, weights, arch=model_name, dont_load=dont_load)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(out, nnx.state(model))
  return model, report


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Command-line flags, defined only when run as a program (so the module imports freely)."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_string("model", None, "Registered model name, e.g. resnet50.", required=True, **kw)
  flags.DEFINE_string("weights", None, "arch.tag or a local checkpoint file.", required=True, **kw)
  flags.DEFINE_integer("num_classes", None, "Classes of the new task.", required=True, **kw)
  flags.DEFINE_integer("in_chans", 3, "Input channels (1 for grey X-rays).", **kw)
  flags.DEFINE_string("out", None, "New directory for the orbax checkpoint.", required=True, **kw)
  flags.DEFINE_integer("seed", 0, "Initialisation of what is not loaded.", **kw)
  flags.DEFINE_multi_string(
    "dont_load", [], "NNX path regex to keep as initialised (repeatable).", **kw
  )


def run(fv: flags.FlagValues) -> None:
  """Converts as the parsed flags `fv` say and prints what was loaded."""
  _, report = convert(
    fv.model,
    fv.weights,
    fv.out,
    num_classes=fv.num_classes,
    in_chans=fv.in_chans,
    seed=fv.seed,
    dont_load=tuple(fv.dont_load),
  )
  print(report)
  print(f"Saved {fv.model} (num_classes={fv.num_classes}, in_chans={fv.in_chans}) to {fv.out}")


def main(argv: Sequence[str]) -> None:
  """The CLI from Python: `argv` is the command line without the program name."""
  fv = flags.FlagValues()  # Private flags, so that it can be called more than once.
  define_flags(fv)
  fv([sys.argv[0], *argv])
  run(fv)


def _app_main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  run(flags.FLAGS)


if __name__ == "__main__":
  define_flags()
  cli.run(_app_main)

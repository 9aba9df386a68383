"""Converts pretrained weights into an orbax checkpoint that training can start from.

    python -m jaxcxr.weights.convert_checkpoint --model resnet50 --weights resnet50.tv2_in1k \
        --num_classes 3 --in_chans 1 --out /tmp/resnet50_cxr

``--weights`` is a registered ``arch.tag`` (downloaded and cached) or a local checkpoint file
(safetensors, torch ``.pth``/``.pth.tar``, Keras ``.h5``). The model is built for the new task
(classifier left as initialised when the class count differs, first conv adapted to
``--in_chans``), loaded through :func:`jaxcxr.weights.pretrained.load_pretrained`, and its whole
``nnx.state`` (parameters and batch-norm statistics) saved with orbax's ``StandardCheckpointer``
to ``--out``; point ``config.model_init`` at that directory. Converting once lets machines
without internet access, or without the original checkpoint's format, start from the weights.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import orbax.checkpoint as ocp
from flax import nnx

from jaxcxr import models
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


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True, help="registered model name, e.g. resnet50")
  p.add_argument("--weights", required=True, help="arch.tag or a local checkpoint file")
  p.add_argument("--num_classes", type=int, required=True, help="classes of the new task")
  p.add_argument("--in_chans", type=int, default=3, help="input channels (1 for grey X-rays)")
  p.add_argument("--out", required=True, help="new directory for the orbax checkpoint")
  p.add_argument("--seed", type=int, default=0, help="initialisation of what is not loaded")
  p.add_argument("--dont_load", nargs="*", default=(), help="NNX path regexes to keep as init")
  a = p.parse_args(argv)
  _, report = convert(
    a.model,
    a.weights,
    a.out,
    num_classes=a.num_classes,
    in_chans=a.in_chans,
    seed=a.seed,
    dont_load=tuple(a.dont_load),
  )
  print(report)
  print(f"Saved {a.model} (num_classes={a.num_classes}, in_chans={a.in_chans}) to {a.out}")


if __name__ == "__main__":
  main(sys.argv[1:])

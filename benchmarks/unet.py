r"""UNet train and inference throughput (images/s) at a resolution, on a fixed batch.

    python benchmarks/unet.py --model unet_lite0 --image_size 256 --batch_size 8

The jitted `jaxcxr.train.train_step` of the segmentation task (`configs/lung_unet.py`'s
augmentation and `bce_dice` loss, AdamW) and the jitted eval-mode forward (`predict_step`:
sigmoid probabilities), each compiled first, then one untimed and `--steps` timed calls on a
random uint8 batch with 0/1 masks: no input pipeline. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import common  # benchmarks/common.py (this script's folder is on sys.path)
import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs import lung_unet  # noqa: E402


def _time(fn, args, steps: int, carry: bool) -> tuple[float, float]:
  """(compile seconds, seconds per call) of `fn(*args)`; `carry`: feed the state back."""
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  out = compiled(*args)
  args = (out[0], *args[1:]) if carry else args
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  for _ in range(steps):
    out = compiled(*args)
    args = (out[0], *args[1:]) if carry else args
  jax.block_until_ready(out)
  return compile_s, (time.perf_counter() - t0) / steps


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="unet_lite0")
  p.add_argument("--image_size", type=int, default=256)
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--steps", type=int, default=3, help="timed calls")
  p.add_argument("--only", choices=("both", "train", "infer"), default="both")
  p.add_argument(
    "--decoder_channels", default="", help="comma-separated, e.g. 128,64,32,16,8 (lung_unet's)"
  )
  a = p.parse_args()
  c = lung_unet.get_config()
  c.model_name, c.model_init = a.model, ""  # Random weights: the speed is the same.
  c.input.mode = "tf"
  c.input.image_size, c.input.batch_size = a.image_size, a.batch_size
  if a.decoder_channels:
    c.model.decoder_channels = tuple(int(x) for x in a.decoder_channels.split(","))
  elif "decoder_channels" in c.model:
    del c.model["decoder_channels"]  # The model's own default.
  state, batch, step, forward = common.jitted_steps(c, 1)
  out = {
    "model": a.model,
    "decoder_channels": a.decoder_channels or "default",
    "image_size": a.image_size,
    "batch_size": a.batch_size,
    "device_kind": getattr(jax.devices()[0], "device_kind", jax.devices()[0].platform),
  }
  if a.only in ("both", "infer"):
    fwd_compile, fwd_s = _time(forward, (state, batch), a.steps, carry=False)
    out.update(
      infer_compile_s=round(fwd_compile, 1),
      infer_batch_s=round(fwd_s, 3),
      infer_images_per_s=round(a.batch_size / fwd_s, 2),
    )
  if a.only in ("both", "train"):
    train_compile, train_s = _time(step, (state, batch), a.steps, carry=True)
    out.update(
      train_compile_s=round(train_compile, 1),
      train_step_s=round(train_s, 3),
      train_images_per_s=round(a.batch_size / train_s, 2),
    )
  print(json.dumps(out))


if __name__ == "__main__":
  main()

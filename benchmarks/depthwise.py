r"""Depthwise convolutions: XLA's grouped convolution vs shifted slices vs PyTorch, in one run.

    python benchmarks/depthwise.py                        # layers, then the three models
    python benchmarks/depthwise.py --models ""            # per-layer timings only
    python benchmarks/depthwise.py --layers "" --models mobilenet_v2_tiny: --size 64  # smoke

Per layer (MobileNetV2 / EfficientNet-B0 shaped depthwise convs at 224 px input, batch
`--batch_size`): the jitted forward and forward + backward (gradients wrt input and kernel) of
`jaxcxr.models.depthwise.depthwise_conv` with `impl='xla'` and `impl='slices'`, and of
`torch.nn.functional.conv2d(groups=C)` on the CPU. Per model: `benchmarks/backbones.py`'s eval
forward and train step (jaxcxr's `train.train_step`, SGD) with `config.model.depthwise_impl` xla
and slices, then timm's model in PyTorch. Every figure is the median of `--steps` timed calls
after `--warmup` untimed ones (and compilation). Prints JSON lines, then markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import backbones  # benchmarks/backbones.py (the script's directory is on sys.path)

# (name, spatial size of the input, channels, kernel, stride): depthwise layers of the zoo.
LAYERS = (
  ("mbv2 features.2 dw", 112, 96, 3, 2),
  ("mbv2 features.4 dw", 56, 144, 3, 1),
  ("b0 blocks.2.0 dw", 56, 144, 5, 2),
  ("b0 blocks.3.1 dw", 14, 480, 3, 1),
  ("b0 blocks.4.1 dw", 14, 672, 5, 1),
)


def _median_s(run, warmup: int, steps: int, sync) -> float:
  for _ in range(warmup):
    sync(run())
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    sync(run())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bench_layer(size: int, ch: int, k: int, stride: int, a: argparse.Namespace) -> dict:
  """Milliseconds per call: forward and forward + backward, xla / slices / torch."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxcxr.models import depthwise

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((a.batch_size, size, size, ch), np.float32))
  w = jnp.asarray(rng.standard_normal((k, k, 1, ch), np.float32))
  pad = ((k // 2, k // 2), (k // 2, k // 2))
  r = {}
  for impl in ("xla", "slices"):

    def fwd(x, w, impl=impl):
      return depthwise.depthwise_conv(x, w, strides=stride, padding=pad, impl=impl)

    grad = jax.jit(jax.grad(lambda x, w, f=fwd: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
    fwd = jax.jit(fwd)
    r[f"{impl}_fwd_ms"] = 1e3 * _median_s(
      lambda f=fwd: f(x, w), a.warmup, a.steps, jax.block_until_ready
    )
    r[f"{impl}_fwd_bwd_ms"] = 1e3 * _median_s(
      lambda g=grad: g(x, w), a.warmup, a.steps, jax.block_until_ready
    )
  if not a.no_torch:
    import torch

    torch.set_num_threads(os.cpu_count())
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    wt = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()).requires_grad_(True)

    def torch_fwd():
      with torch.inference_mode():
        return torch.nn.functional.conv2d(xt, wt, stride=stride, padding=k // 2, groups=ch)

    def torch_fwd_bwd():
      y = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=k // 2, groups=ch)
      return torch.autograd.grad((y**2).sum(), (xt, wt))

    r["torch_fwd_ms"] = 1e3 * _median_s(torch_fwd, a.warmup, a.steps, lambda _: None)
    r["torch_fwd_bwd_ms"] = 1e3 * _median_s(torch_fwd_bwd, a.warmup, a.steps, lambda _: None)
  return {k: round(v, 2) for k, v in r.items()}


def layer_table(rows: list[dict]) -> str:
  cols = ["layer", "input", "k/s"] + [
    f"{i} {p} ms" for p in ("fwd", "fwd+bwd") for i in ("xla", "slices", "torch")
  ]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    vals = [r["layer"], r["input"], r["k/s"]] + [
      str(r.get(f"{i}_{p}_ms", "-")) for p in ("fwd", "fwd_bwd") for i in ("xla", "slices", "torch")
    ]
    lines.append("| " + " | ".join(vals) + " |")
  return "\n".join(lines)


def model_table(rows: list[dict]) -> str:
  cols = [
    ("model", "model"),
    ("px", "size"),
    ("xla fwd", "xla_forward_ips"),
    ("slices fwd", "slices_forward_ips"),
    ("torch fwd", "torch_forward_ips"),
    ("xla train", "xla_train_ips"),
    ("slices train", "slices_train_ips"),
    ("torch train", "torch_train_ips"),
    ("slices / torch (fwd, train)", "ratio"),
    ("compile s train (xla / slices)", "compile"),
  ]
  import common  # benchmarks/common.py

  table = []
  for r in rows:
    r = dict(r)
    if "torch_train_ips" in r:
      r["ratio"] = (
        f"{r['slices_forward_ips'] / r['torch_forward_ips']:.2f}, "
        f"{r['slices_train_ips'] / r['torch_train_ips']:.2f}"
      )
    r["compile"] = f"{r['xla_train_compile_s']} / {r['slices_train_compile_s']}"
    table.append(r)
  return common.markdown_table(cols, table, header_suffix=" (images/s)")


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    "--models",
    default="efficientnet_b0,mobilenet_v2,efficientnet_lite0",
    help="comma-separated name[:timm] ('' for none; ':' alone skips PyTorch)",
  )
  p.add_argument("--layers", default="all", help="'all' or '' (none)")
  p.add_argument("--size", type=int, default=0, help="model input size; 0: native")
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--num_classes", type=int, default=14)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--steps", type=int, default=5, help="timed calls; the median is reported")
  p.add_argument("--no_torch", action="store_true", help="skip the PyTorch columns")
  a = p.parse_args()

  layer_rows = []
  if a.layers:
    for name, size, ch, k, stride in LAYERS:
      r = {"layer": name, "input": f"{a.batch_size}x{size}x{size}x{ch}", "k/s": f"{k}/{stride}"}
      r |= bench_layer(size, ch, k, stride, a)
      print(json.dumps(r), flush=True)
      layer_rows.append(r)

  from jaxcxr import models

  model_rows = []
  for spec in filter(None, a.models.split(",")):
    name, sep, timm_name = spec.partition(":")
    if not sep:
      timm_name = backbones.TIMM_NAMES.get(name, "")
    size = a.size or models.get_default_cfg(name)["input_size"][1]
    r = {"model": name, "timm": timm_name or None, "size": size, "batch_size": a.batch_size}
    for impl in ("xla", "slices"):
      a.depthwise_impl = impl
      r |= {k.replace("jax_", f"{impl}_"): v for k, v in backbones.bench_jax(name, size, a).items()}
    if timm_name and not a.no_torch:
      r |= backbones.bench_torch(timm_name, size, a)
    print(json.dumps(r), flush=True)
    model_rows.append(r)

  if layer_rows:
    print(layer_table(layer_rows))
  if model_rows:
    print(model_table(model_rows))


if __name__ == "__main__":
  main()

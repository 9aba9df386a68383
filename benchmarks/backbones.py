r"""Throughput of each backbone family in jaxcxr (JAX) and timm (PyTorch, CPU), in one run.

    python benchmarks/backbones.py                                  # every family, native size
    python benchmarks/backbones.py --models resnet50,inception_v3 --batch_size 8
    python benchmarks/backbones.py --models resnet_tiny:resnet18 --size 32 --steps 2  # smoke test

For each model at its native input size (its `default_cfg`, or `--size`): the jitted eval
forward (`jaxcxr.train.predict_step`) and the jitted train step (`jaxcxr.train.train_step`, the
one training runs, SGD + softmax cross-entropy, as `benchmarks/train_step.py`) on JAX's default
device; then the same timm model in PyTorch on the CPU with `os.cpu_count()` threads: forward
under `torch.inference_mode()` and a train step (SGD, momentum 0.9, cross-entropy). Both get
random images, `--warmup` untimed steps (after JAX's compilation) and `--steps` timed ones; the
figure is the median step. `--depthwise_impl` sets `config.model.depthwise_impl` (see
`benchmarks/depthwise.py` for xla vs slices side by side).

Prints one JSON line per model, then a markdown table of images/s. A model is `jaxcxr_name` or
`jaxcxr_name:timm_name` (the default timm names are in `TIMM_NAMES`; `:` alone skips PyTorch).
torch and timm are imported here only, never by jaxcxr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

# jaxcxr name -> timm name of the same architecture (its default for the PyTorch columns).
TIMM_NAMES = {
  "resnet50": "resnet50",
  "densenet121": "densenet121",
  "efficientnet_b0": "efficientnet_b0",
  "efficientnet_lite0": "efficientnet_lite0",
  "tf_efficientnet_b0": "tf_efficientnet_b0",
  "vgg19_bn": "vgg19_bn",
  "mobilenet_v2": "mobilenetv2_100",
  "inception_v3": "inception_v3",
}


def _images_per_s(run, batch_size: int, warmup: int, steps: int, sync) -> float:
  """`run()` `warmup` times untimed, then `steps` times, each timed to `sync` of its result;
  images/s of the median step (robust to other jobs sharing the CPU)."""
  for _ in range(warmup):
    out = run()
  sync(out)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    sync(run())
    times.append(time.perf_counter() - t0)
  return batch_size / statistics.median(times)


def bench_jax(name: str, size: int, a: argparse.Namespace) -> dict:
  """Eval forward and train step of jaxcxr's `name`: compile seconds and images/s."""
  import common  # benchmarks/common.py
  import jax

  from jaxcxr import config_lib

  c = config_lib.base_config()
  c.model_name, c.dtype = name, a.dtype
  c.model.depthwise_impl = getattr(a, "depthwise_impl", "auto")
  c.input.image_size, c.input.batch_size = size, a.batch_size
  c.optimizer.name, c.optimizer.lr = "sgd", 0.01
  state, batch, step, forward = common.jitted_steps(c, a.num_classes)
  t0 = time.perf_counter()
  forward = forward.lower(state, batch).compile()
  fwd_compile = time.perf_counter() - t0
  t0 = time.perf_counter()
  step = step.lower(state, batch).compile()
  step_compile = time.perf_counter() - t0

  fwd = _images_per_s(
    lambda: forward(state, batch), a.batch_size, a.warmup, a.steps, jax.block_until_ready
  )
  holder = [state]  # the step donates its input state: carry the new one

  def train_once():
    holder[0], metrics = step(holder[0], batch)
    return metrics

  trn = _images_per_s(train_once, a.batch_size, a.warmup, a.steps, jax.block_until_ready)
  device = jax.devices()[0]
  return {
    "jax_device": getattr(device, "device_kind", device.platform),
    "jax_devices": jax.device_count(),
    "jax_forward_compile_s": round(fwd_compile, 2),
    "jax_train_compile_s": round(step_compile, 2),
    "jax_forward_ips": round(fwd, 2),
    "jax_train_ips": round(trn, 2),
  }


def bench_torch(timm_name: str, size: int, a: argparse.Namespace) -> dict:
  """Eval forward and train step of timm's `timm_name` on the CPU: images/s."""
  import timm
  import torch

  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  model = timm.create_model(timm_name, num_classes=a.num_classes)
  x = torch.randn(a.batch_size, 3, size, size)
  y = torch.randint(0, a.num_classes, (a.batch_size,))

  model.eval()

  def forward():
    with torch.inference_mode():
      return model(x)

  fwd = _images_per_s(forward, a.batch_size, a.warmup, a.steps, lambda _: None)

  model.train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()

  def train_once():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss

  trn = _images_per_s(train_once, a.batch_size, a.warmup, a.steps, lambda _: None)
  return {
    "torch_threads": torch.get_num_threads(),
    "torch_forward_ips": round(fwd, 2),
    "torch_train_ips": round(trn, 2),
  }


def markdown(results: list[dict]) -> str:
  cols = [
    ("model", "model"),
    ("size", "size"),
    ("JAX fwd img/s", "jax_forward_ips"),
    ("JAX train img/s", "jax_train_ips"),
    ("torch CPU fwd img/s", "torch_forward_ips"),
    ("torch CPU train img/s", "torch_train_ips"),
    ("JAX compile s (fwd / train)", "compile"),
  ]
  import common  # benchmarks/common.py

  rows = [
    {**r, "compile": f"{r['jax_forward_compile_s']} / {r['jax_train_compile_s']}"} for r in results
  ]
  return common.markdown_table(cols, rows)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default=",".join(TIMM_NAMES), help="comma-separated, name[:timm]")
  p.add_argument("--size", type=int, default=0, help="input size; 0: each model's native size")
  p.add_argument("--batch_size", type=int, default=4)
  p.add_argument("--num_classes", type=int, default=14)
  p.add_argument("--dtype", default="float32", help="JAX computation dtype")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
  p.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
  p.add_argument(
    "--depthwise_impl", default="auto", help="depthwise convs: auto (slices on CPU), slices, xla"
  )
  a = p.parse_args()

  from jaxcxr import models

  results = []
  for spec in a.models.split(","):
    name, sep, timm_name = spec.partition(":")
    if not sep:
      timm_name = TIMM_NAMES.get(name, "")
    size = a.size or models.get_default_cfg(name)["input_size"][1]
    r = {"model": name, "timm": timm_name or None, "size": size, "batch_size": a.batch_size}
    r |= bench_jax(name, size, a)
    if timm_name:
      r |= bench_torch(timm_name, size, a)
    print(json.dumps(r), flush=True)
    results.append(r)
  print(markdown(results))


if __name__ == "__main__":
  main()

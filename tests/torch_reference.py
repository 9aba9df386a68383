"""Reference outputs from torchvision, computed in a separate process.

    python tests/torch_reference.py resnet18 --num_classes 10 --size 64 --out ref.npz

Importing torch into a process that has already loaded TensorFlow (the TFDS tests do) crashes
with a segfault in native libraries, so parity tests run torch here, in a subprocess, and read
the result: the model's `state_dict` (as numpy), the input (NCHW) and the eval-mode logits. BN
affine parameters and running statistics are randomised so that a wrong BN mapping cannot hide
behind 1/0 initial values. Exit status 3 means torch/torchvision are not installed.
"""

import argparse
import sys

import numpy as np


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument("arch")
  p.add_argument("--num_classes", type=int, default=10)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  a = p.parse_args()
  try:
    import torch
    import torchvision
  except ImportError as e:
    print(f"torch/torchvision not installed: {e}", file=sys.stderr)
    return 3
  torch.manual_seed(a.seed)
  ref = getattr(torchvision.models, a.arch)(weights=None, num_classes=a.num_classes)
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
  ref.eval()
  x = np.random.default_rng(a.seed).standard_normal((2, 3, a.size, a.size)).astype(np.float32)
  with torch.no_grad():
    logits = ref(torch.from_numpy(x)).numpy()
  arrays = {f"sd/{k}": v.detach().numpy() for k, v in ref.state_dict().items()}
  np.savez(a.out, x=x, logits=logits, **arrays)
  return 0


if __name__ == "__main__":
  sys.exit(main())

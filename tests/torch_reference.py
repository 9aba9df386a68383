"""Reference outputs from torchvision / timm, computed in a separate process.

    python tests/torch_reference.py torchvision resnet18 --num_classes 10 --size 64 --out ref.npz
    python tests/torch_reference.py timm tf_efficientnet_b0 --size 64 --out ref.npz \
        --save_pth sd.pth --save_safetensors sd.safetensors

Importing torch into a process that has already loaded TensorFlow (the TFDS tests do) crashes
with a segfault in native libraries, so parity tests run torch here, in a subprocess, and read
the result: the model's `state_dict` (as numpy, keys prefixed `sd/`), the input `x` (NCHW, 2
images) and the eval-mode `logits`, plus the parameter count `num_params`. BN affine parameters
and running statistics are randomised so that a wrong BN mapping cannot hide behind 1/0 initial
values. `--save_pth` / `--save_safetensors` also write the state dict in the formats users have,
so a test can load it through jaxcxr's own readers. `--kwargs` passes JSON keyword arguments to
the model constructor. Exit status 3: torch (or timm/torchvision) is not installed.
"""

import argparse
import json
import sys

import numpy as np


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument("lib", choices=["torchvision", "timm"])
  p.add_argument("arch")
  p.add_argument("--num_classes", type=int, default=10)
  p.add_argument("--in_chans", type=int, default=3)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--kwargs", default="{}", help="JSON constructor keyword arguments")
  p.add_argument("--out", required=True)
  p.add_argument("--save_pth")
  p.add_argument("--save_safetensors")
  a = p.parse_args()
  try:
    import torch

    if a.lib == "timm":
      import timm
    else:
      import torchvision
  except ImportError as e:
    print(f"reference library not installed: {e}", file=sys.stderr)
    return 3
  torch.manual_seed(a.seed)
  kwargs = json.loads(a.kwargs)
  if a.lib == "timm":
    ref = timm.create_model(
      a.arch, pretrained=False, num_classes=a.num_classes, in_chans=a.in_chans, **kwargs
    )
  else:
    ref = getattr(torchvision.models, a.arch)(weights=None, num_classes=a.num_classes, **kwargs)
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
  ref.eval()
  x = np.random.default_rng(a.seed).standard_normal((2, a.in_chans, a.size, a.size))
  x = x.astype(np.float32)
  with torch.no_grad():
    out = ref(torch.from_numpy(x))
    logits = (out[0] if isinstance(out, tuple) else out).numpy()
  sd = ref.state_dict()
  arrays = {f"sd/{k}": v.detach().numpy() for k, v in sd.items()}
  num_params = sum(p.numel() for p in ref.parameters())
  np.savez(a.out, x=x, logits=logits, num_params=num_params, **arrays)
  if a.save_pth:
    torch.save(sd, a.save_pth)
  if a.save_safetensors:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, a.save_safetensors)
  return 0


if __name__ == "__main__":
  sys.exit(main())

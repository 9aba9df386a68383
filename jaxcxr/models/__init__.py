"""Model registry: build any backbone by name.

Each family module (``resnet.py``, ``densenet.py``, ``efficientnet.py`` ...) decorates its
factory functions with ``registry.register``; importing this package imports those modules so
every model is available through :func:`create` and :func:`list_models` (the timm pattern). The
registry itself (``jaxcxr.models.registry``) imports no family, so there is no import cycle.

Example::

    from jaxcxr import models
    model = models.create('resnet50', num_classes=14, in_chans=1)
"""

from __future__ import annotations

from jaxcxr.models import densenet as densenet
from jaxcxr.models import efficientnet as efficientnet
from jaxcxr.models import inception as inception
from jaxcxr.models import mobilenet as mobilenet
from jaxcxr.models import resnet as resnet
from jaxcxr.models import unet as unet
from jaxcxr.models import vgg as vgg
from jaxcxr.models.registry import create, get_default_cfg, list_models, param_count, register

__all__ = ["create", "get_default_cfg", "list_models", "param_count", "register"]

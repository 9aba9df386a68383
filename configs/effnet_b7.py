r"""EfficientNet-B7 on COVID-19 / pneumonia / no-finding: the Rachha 2020 recipe with its best
backbone (`tf_efficientnet_b7.ra_in1k` weights), a thin file over configs/studies/rachha2020.py.

    python -m jaxcxr.train --config configs/effnet_b7.py:cohen=D1,covidx=D2 --workdir W
    python -m jaxcxr.train --config configs/effnet_b7.py:tiny --workdir W   # CI-sized

Every argument of the study config is accepted except `backbone` (fixed here).
"""

from configs.studies import rachha2020


def get_config(arg: str = ""):
  if "backbone=" in (arg or ""):
    raise ValueError("configs/effnet_b7.py fixes the backbone; use configs/studies/rachha2020.py.")
  return rachha2020.get_config(",".join(filter(None, [arg or "", "backbone=efficientnet_b7"])))

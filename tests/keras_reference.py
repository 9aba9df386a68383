"""Reference logits from `keras.applications` models, for the Keras weight-map parity tests.

Run as a script (in a subprocess, to keep TensorFlow's threads and memory out of pytest):

    python tests/keras_reference.py {resnet50|vgg19} --size 224 --out DIR [--classic]

Builds the model with `weights=None` and `classifier_activation=None` (logits, not softmax),
randomises every bias and the batch-norm gammas, betas and moving statistics (Keras initialises
them to 0/1, which would hide a swapped or dropped tensor), then writes into DIR:

* `model.weights.h5`: `model.save_weights` (Keras 3 layout);
* `model.h5` with `--classic`: `model.save` in the legacy HDF5 layout (`model_weights` group,
  `layer_names`/`weight_names` attributes), the layout of the downloadable ImageNet files;
* `ref.npz`: `x` (NHWC input, used raw: no `preprocess_input`) and its `logits`; `x_grey`
  (one channel) and `logits_grey` (of `x_grey` repeated to 3 channels); `num_params`
  (trainable variables only, as `jaxcxr.models.param_count`).

Exit code 3 means Keras is not installed (the test skips).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("arch", choices=["resnet50", "vgg19"])
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--out", required=True)
  parser.add_argument("--classic", action="store_true")
  args = parser.parse_args()

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  try:
    import keras
  except ImportError as e:
    print(f"keras unavailable: {e}", file=sys.stderr)
    return 3

  build = {"resnet50": keras.applications.ResNet50, "vgg19": keras.applications.VGG19}[args.arch]
  model = build(weights=None, input_shape=(args.size, args.size, 3), classifier_activation=None)
  rng = np.random.default_rng(0)
  for w in model.weights:
    leaf = w.path.rsplit("/", 1)[-1]
    if leaf in ("gamma", "moving_variance"):
      value = rng.uniform(0.5, 1.5, w.shape)
    elif leaf in ("beta", "moving_mean", "bias"):
      value = rng.normal(0.0, 0.1, w.shape)
    else:
      continue
    w.assign(value.astype(np.float32))

  x = rng.standard_normal((args.batch, args.size, args.size, 3)).astype(np.float32)
  logits = np.asarray(model(x, training=False))
  # A grey image replicated to 3 channels: what a 1-channel model with summed kernels must match.
  x_grey = rng.standard_normal((args.batch, args.size, args.size, 1)).astype(np.float32)
  logits_grey = np.asarray(model(np.repeat(x_grey, 3, axis=-1), training=False))
  os.makedirs(args.out, exist_ok=True)
  model.save_weights(os.path.join(args.out, "model.weights.h5"))
  if args.classic:
    model.save(os.path.join(args.out, "model.h5"))
  num_params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  np.savez(
    os.path.join(args.out, "ref.npz"),
    x=x,
    logits=logits,
    x_grey=x_grey,
    logits_grey=logits_grey,
    num_params=num_params,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())

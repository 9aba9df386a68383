"""Reference outputs of Keras's DenseNet121 and InceptionV3, computed in a separate process.

    python tests/keras_reference_densenet_inception.py densenet121 --size 64 --out ref.npz \
        --save_weights w.weights.h5 --save_legacy_h5 w.h5

Builds ``keras.applications.<Arch>(weights=None, classifier_activation=None)``, randomises every
batch norm's gamma (where it has one), beta and moving statistics so that a wrong BN mapping
cannot hide behind 1/0 initial values, and saves the input ``x`` (NHWC, one image), the
``logits`` and the number of trainable weights ``num_trainable`` (no moving statistics) to
``--out``. The weights are written in both layouts users have: Keras 3's ``save_weights``
(``.weights.h5``, layers grouped by class under ``layers/``) and the classic layout of the
downloaded ``*_tf_dim_ordering_tf_kernels.h5`` files (root attribute ``layer_names``).
TensorFlow and torch cannot share a process with the test (native-library crashes), hence the
subprocess. Exit status 3: Keras is not installed.
"""

import argparse
import os
import sys

import numpy as np

ARCHS = {"densenet121": "DenseNet121", "inception_v3": "InceptionV3"}


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument("arch", choices=sorted(ARCHS))
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--num_classes", type=int, default=10)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  p.add_argument("--save_weights", help="Keras 3 .weights.h5 file")
  p.add_argument("--save_legacy_h5", help="classic-layout .h5 file")
  a = p.parse_args()
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  try:
    import keras
    from keras.src.legacy.saving import legacy_h5_format
  except ImportError as e:
    print(f"reference library not installed: {e}", file=sys.stderr)
    return 3
  import h5py

  keras.utils.set_random_seed(a.seed)
  model = getattr(keras.applications, ARCHS[a.arch])(
    weights=None,
    input_shape=(a.size, a.size, 3),
    classes=a.num_classes,
    classifier_activation=None,
  )
  rng = np.random.default_rng(a.seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      for var in layer.weights:
        kind = var.path.rsplit("/", 1)[-1]
        low, high = {
          "gamma": (0.5, 1.5),
          "beta": (-0.5, 0.5),
          "moving_mean": (-0.5, 0.5),
          "moving_variance": (0.5, 1.5),
        }[kind]
        var.assign(rng.uniform(low, high, var.shape).astype("float32"))
  x = rng.standard_normal((1, a.size, a.size, 3)).astype("float32")
  logits = np.asarray(model(x, training=False))
  num_trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  np.savez(a.out, x=x, logits=logits, num_trainable=num_trainable)
  if a.save_weights:
    model.save_weights(a.save_weights)
  if a.save_legacy_h5:
    with h5py.File(a.save_legacy_h5, "w") as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, model)
  return 0


if __name__ == "__main__":
  sys.exit(main())

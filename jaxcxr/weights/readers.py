"""Reading the checkpoint formats users actually have into numpy, without torch or TensorFlow.

* ``.safetensors`` (timm's Hugging Face hub weights) through the ``safetensors`` numpy API.
* torch ``.pth`` / ``.bin`` / ``.pth.tar``: the zip format of ``torch.save`` since torch 1.6
  (``<archive>/data.pkl`` plus one raw ``<archive>/data/<key>`` record per storage) and the
  legacy format before it (a stream of pickles followed by the raw storages, e.g. CheXNet's
  2017 ``model.pth.tar``). The very first torch format (a tar archive, torch < 0.1.10) is not
  supported. The pickle is read by a restricted unpickler that resolves only what a state dict
  is made of (``OrderedDict``, torch's tensor-rebuild functions, storage and dtype names, plain
  builtins): nothing in the file is ever executed. A whole pickled model (``torch.save(model)``)
  is read as its state dict when every class in it is one of
  :data:`jaxcxr.weights.torch_modules.MODULE_CLASSES` (DenseNet, e.g. jrzech/reproduce-chexnet);
  any other module is refused, naming its class, with the one-line conversion to run instead.
* Keras ``.h5`` weights: the classic layout (root attribute ``layer_names``, per-layer
  ``weight_names``; the downloaded ``*_weights_tf_dim_ordering_tf_kernels.h5`` files and
  ``model.save('x.h5')``) and Keras 3's ``.weights.h5`` (``layers/<class>/vars/<i>``).

Tensors come back as numpy arrays in the layout of the framework that wrote them; float16 stays
float16, bfloat16 becomes float32 (exact), so every array is usable by plain numpy.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import types
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import ml_dtypes
import numpy as np

from jaxcxr.weights import torch_modules

__all__ = [
  "find_state_dict",
  "read_checkpoint",
  "read_keras_h5",
  "read_safetensors",
  "read_torch",
]

PathLike = str | os.PathLike

# torch dtype name -> numpy dtype. The storage classes (`torch.FloatStorage`) carry the same
# information under their legacy names.
_TORCH_DTYPES: dict[str, np.dtype] = {
  "float64": np.dtype(np.float64),
  "float32": np.dtype(np.float32),
  "float16": np.dtype(np.float16),
  "bfloat16": np.dtype(ml_dtypes.bfloat16),
  "int64": np.dtype(np.int64),
  "int32": np.dtype(np.int32),
  "int16": np.dtype(np.int16),
  "int8": np.dtype(np.int8),
  "uint8": np.dtype(np.uint8),
  "bool": np.dtype(np.bool_),
  "complex64": np.dtype(np.complex64),
  "complex128": np.dtype(np.complex128),
}
_TORCH_DTYPE_ALIASES = {
  "float": "float32",
  "double": "float64",
  "half": "float16",
  "long": "int64",
  "int": "int32",
  "short": "int16",
  "cfloat": "complex64",
  "cdouble": "complex128",
}
_STORAGE_DTYPES: dict[str, np.dtype] = {
  "DoubleStorage": _TORCH_DTYPES["float64"],
  "FloatStorage": _TORCH_DTYPES["float32"],
  "HalfStorage": _TORCH_DTYPES["float16"],
  "BFloat16Storage": _TORCH_DTYPES["bfloat16"],
  "LongStorage": _TORCH_DTYPES["int64"],
  "IntStorage": _TORCH_DTYPES["int32"],
  "ShortStorage": _TORCH_DTYPES["int16"],
  "CharStorage": _TORCH_DTYPES["int8"],
  "ByteStorage": _TORCH_DTYPES["uint8"],
  "BoolStorage": _TORCH_DTYPES["bool"],
  "ComplexFloatStorage": _TORCH_DTYPES["complex64"],
  "ComplexDoubleStorage": _TORCH_DTYPES["complex128"],
  # Bytes only; `_rebuild_tensor_v3` then names the tensor's dtype.
  "UntypedStorage": np.dtype(np.uint8),
}
_LEGACY_MAGIC, _LEGACY_PROTOCOL, _ZIP_MAGIC = 0x1950A86A20F9469CFC6C, 1001, b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "params")


# --- torch ------------------------------------------------------------------------------------


class _StorageType:  # stands in for `torch.FloatStorage` etc.: only the element type matters
  def __init__(self, dtype: np.dtype):
    self.dtype = dtype


class _Storage:
  """A torch storage: raw bytes (filled in later for the legacy format) and an element type."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype = dtype
    self.numel = numel
    self.data: bytes | None = None


class _Tensor:
  """A tensor whose storage may not have been read yet; `materialise` turns it into numpy."""

  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple, dtype=None):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
    self.dtype = storage.dtype if dtype is None and isinstance(storage, _Storage) else dtype

  def to_numpy(self, path: PathLike = "checkpoint", key: str = "?") -> np.ndarray:
    """The tensor as an owned numpy array, after `_check_tensor` proved the view in bounds."""
    flat = _check_tensor(self, path, key)
    item = self.dtype.itemsize
    array = np.lib.stride_tricks.as_strided(
      flat[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
    )
    array = np.array(array)  # an owned, contiguous copy
    if array.dtype == _TORCH_DTYPES["bfloat16"]:
      array = array.astype(np.float32)  # exact, and plain numpy can compute with it
    return array


def _is_int(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _check_tensor(t: _Tensor, path: PathLike, key: str) -> np.ndarray:
  """The storage as a flat array of `t.dtype`, once `t`'s metadata is proven to fit in it.

  The size, stride and offset come from the (untrusted) pickle: an unchecked `as_strided` view
  past the end of the storage reads foreign memory or crashes the process.

  Raises:
    ValueError: naming the file and tensor, if the dtype is not a torch dtype, the metadata is
      not non-negative integers of matching rank, or the view reaches past the storage.
  """
  where = f"{os.fspath(path)}: tensor {key!r}"
  if not isinstance(t.storage, _Storage):
    raise ValueError(f"{where} has no storage ({type(t.storage).__name__}): malformed pickle.")
  if not (isinstance(t.dtype, np.dtype) and t.dtype in _TORCH_DTYPES.values()):
    raise ValueError(f"{where} has dtype {t.dtype!r}, not a torch dtype: malformed pickle.")
  size, stride, offset = t.size, t.stride, t.offset
  if not (
    isinstance(size, tuple | list)
    and isinstance(stride, tuple | list)
    and len(size) == len(stride)
    and all(_is_int(n) and n >= 0 for n in (*size, *stride))
    and _is_int(offset)
    and offset >= 0
  ):
    raise ValueError(
      f"{where} has malformed metadata (size {size!r}, stride {stride!r}, offset {offset!r}): "
      "expected non-negative integers, one stride per dimension."
    )
  t.size, t.stride = tuple(size), tuple(stride)
  data = t.storage.data
  if data is None:
    raise ValueError(f"{where}: its storage was never written (truncated file?).")
  item = t.dtype.itemsize
  if len(data) % item:
    raise ValueError(f"{where}: storage of {len(data)} bytes is not a whole number of {t.dtype}.")
  available = len(data) // item
  extent = sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
  needed = 0 if 0 in t.size else offset + 1 + extent
  if needed > available:
    raise ValueError(
      f"{where} reaches past its storage: size {t.size}, stride {t.stride} and offset {offset} "
      f"need {needed} elements of {t.dtype}, the storage holds {available}. The file is "
      "corrupt or crafted."
    )
  return np.frombuffer(data, dtype=t.dtype)


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused) -> _Tensor:
  # torch._utils._rebuild_tensor (torch < 0.4) and _rebuild_tensor_v2 (requires_grad,
  # backward_hooks, metadata follow; none of them matter for the values).
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, _grad, _hooks, dtype, *_unused):
  return _Tensor(storage, storage_offset, size, stride, dtype=dtype)


def _rebuild_parameter(data, *_unused) -> _Tensor:  # an nn.Parameter is its tensor, here
  return data


def _decode_latin1(text: str, encoding: str) -> bytes:
  # Protocol-2 pickles spell `bytes` objects as `_codecs.encode(text, 'latin1')`.
  if encoding not in ("latin1", "latin-1"):
    raise ValueError(f"_codecs.encode with encoding {encoding!r} is not allowed in a checkpoint.")
  return text.encode("latin1")


def _torch_global(name: str) -> Any:
  """`torch.<name>` as a numpy stand-in: a dtype, a storage type, or `torch.Size`."""
  if name in _STORAGE_DTYPES:
    return _StorageType(_STORAGE_DTYPES[name])
  dtype = _TORCH_DTYPE_ALIASES.get(name, name)
  if dtype in _TORCH_DTYPES:
    return _TORCH_DTYPES[dtype]
  if name == "Size":
    return tuple
  return None


_ALLOWED: dict[tuple[str, str], Any] = {
  ("collections", "OrderedDict"): OrderedDict,
  ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
  ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
  ("builtins", "set"): set,
  ("builtins", "frozenset"): frozenset,
  ("builtins", "complex"): complex,
  ("builtins", "slice"): slice,
  ("_codecs", "encode"): _decode_latin1,
  # argparse flags kept in training checkpoints: a SimpleNamespace takes them, running no code.
  ("argparse", "Namespace"): types.SimpleNamespace,
}


def _refuse(path: PathLike, module: str, name: str) -> ValueError:
  what = f"{module}.{name}"
  if module.startswith(("torch.nn", "torchvision", "timm", "__main__")):
    kind = f"a pickled module ({what}), not a state dict"
  else:
    kind = f"a pickled Python object ({what}), not a state dict of tensors"
  return ValueError(
    f"{os.fspath(path)} holds {kind}. jaxcxr reads checkpoints without torch and never runs "
    "code from them. Convert it once with torch: "
    f"`model = torch.load({os.fspath(path)!r}, weights_only=False); "
    "torch.save(model.state_dict(), 'weights.pth')`, then load 'weights.pth'."
  )


class _Unpickler(pickle.Unpickler):
  """Resolves only the globals a state dict (or a training checkpoint around one) is made of."""

  def __init__(self, file, *, path: PathLike, load_storage: Callable[[tuple], _Storage] | None):
    super().__init__(file, encoding="utf-8")
    self._path = path
    self._load_storage = load_storage

  def find_class(self, module: str, name: str) -> Any:
    module = "builtins" if module == "__builtin__" else module  # protocol 2 spells it so
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module in ("torch", "torch.cuda", "torch.storage"):
      found = _torch_global(name)
      if found is not None:
        return found
    if (stub := torch_modules.find_module_class(module, name)) is not None:
      return stub
    raise _refuse(self._path, module, name)

  def persistent_load(self, pid: Any) -> Any:
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind == "module" and torch_modules.is_stub_class(pid[1]):
      return pid[1]  # legacy files tag module classes with their source: the class was allowed
    if kind != "storage" or self._load_storage is None:
      raise ValueError(f"{os.fspath(self._path)}: unsupported persistent id {kind!r} in pickle.")
    return self._load_storage(pid[1:])


def _materialise(obj: Any, path: PathLike, key: str = "") -> Any:
  """Replaces every `_Tensor` in nested dicts/lists/tuples by its numpy array.

  `key` is the dotted position in the checkpoint (`state_dict.conv1.weight`), for errors.
  """
  if isinstance(obj, _Tensor):
    return obj.to_numpy(path, key)
  if isinstance(obj, torch_modules.ModuleStub):  # a whole pickled model: its state dict
    obj = obj.state_dict()
  join = lambda k: f"{key}.{k}" if key else str(k)
  if isinstance(obj, dict):
    out = type(obj)() if type(obj) in (dict, OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _materialise(v, path, join(k))
    return out
  if isinstance(obj, list):
    return [_materialise(v, path, join(i)) for i, v in enumerate(obj)]
  if isinstance(obj, tuple):
    return tuple(_materialise(v, path, join(i)) for i, v in enumerate(obj))
  return obj


def _storage_args(path: PathLike, storage_type: Any, key: Any, numel: Any) -> None:
  """Checks a persistent storage id from the pickle: a storage class, a key, an element count."""
  if not isinstance(storage_type, _StorageType) or not _is_int(numel) or numel < 0:
    raise ValueError(
      f"{os.fspath(path)}: malformed storage reference (type {storage_type!r}, key {key!r}, "
      f"numel {numel!r}) in the pickle."
    )


def _read_torch_zip(path: PathLike) -> Any:
  with zipfile.ZipFile(path) as zf:
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if not pkl:
      raise ValueError(
        f"{os.fspath(path)} is a zip archive without <archive>/data.pkl: not a torch.save file "
        "(a TorchScript archive from torch.jit.save is not supported; save its state_dict)."
      )
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = "little"
    if f"{prefix}byteorder" in zf.namelist():
      byteorder = zf.read(f"{prefix}byteorder").decode()
    storages: dict[str, _Storage] = {}

    def load_storage(args: tuple) -> _Storage:
      storage_type, key, _location, numel = args
      _storage_args(path, storage_type, key, numel)
      if key not in storages:
        dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
        storage = _Storage(dtype, numel)
        try:
          storage.data = zf.read(f"{prefix}data/{key}")
        except KeyError:
          raise ValueError(
            f"{os.fspath(path)}: the pickle names storage {key!r}, which the archive lacks "
            f"({prefix}data/{key}): truncated or crafted file."
          ) from None
        storages[key] = storage
      return storages[key]

    with zf.open(pkl[0]) as f:
      obj = _Unpickler(f, path=path, load_storage=load_storage).load()
  return _materialise(obj, path)


def _read_torch_legacy(path: PathLike) -> Any:
  storages: dict[str, _Storage] = {}

  def load_storage(args: tuple) -> _Storage:
    storage_type, root_key, _location, numel, view = args
    _storage_args(path, storage_type, root_key, numel)
    if root_key not in storages:
      storages[root_key] = _Storage(storage_type.dtype, numel)
    if view is not None:
      # Storage views (torch < 0.4): a slice of the root storage, known once it is read.
      raise ValueError(f"{os.fspath(path)}: legacy storage views are not supported.")
    return storages[root_key]

  with open(path, "rb") as f:
    plain = lambda: _Unpickler(f, path=path, load_storage=None).load()
    if plain() != _LEGACY_MAGIC:
      raise ValueError(f"{os.fspath(path)}: not a torch checkpoint (bad magic number).")
    if (protocol := plain()) != _LEGACY_PROTOCOL:
      raise ValueError(f"{os.fspath(path)}: unknown torch legacy protocol {protocol}.")
    sys_info = plain()
    if not sys_info.get("little_endian", True):
      raise ValueError(f"{os.fspath(path)}: big-endian legacy checkpoints are not supported.")
    obj = _Unpickler(f, path=path, load_storage=load_storage).load()
    for key in plain():
      # Each storage: its element count (int64, little-endian), then the raw elements.
      head = f.read(8)
      if len(head) != 8 or key not in storages:
        raise ValueError(f"{os.fspath(path)}: truncated or malformed file (storage {key!r}).")
      (numel,) = struct.unpack("<q", head)
      if numel < 0:
        raise ValueError(f"{os.fspath(path)}: negative element count for storage {key!r}.")
      storage = storages[key]
      storage.data = f.read(numel * storage.dtype.itemsize)
      if len(storage.data) != numel * storage.dtype.itemsize:
        raise ValueError(f"{os.fspath(path)}: truncated file (storage {key}).")
  return _materialise(obj, path)


def read_torch(path: PathLike) -> dict[str, Any]:
  """Reads a `torch.save` file (`.pth`, `.bin`, `.pth.tar`) without importing torch.

  Args:
    path: the file. Zip format (torch ≥ 1.6) or legacy pickle format (torch 0.4–1.5, and the
      `_use_new_zipfile_serialization=False` option since).

  Returns:
    What was saved, with every tensor as a numpy array (a whole model as its state dict): a flat
    state dict, or a nested training checkpoint (`{'epoch': ..., 'state_dict': {...}}`).

  Raises:
    ValueError: the file holds a class outside a state dict or an allowed whole model
      (``torch_modules.MODULE_CLASSES``; nothing in it is executed), or is not a torch file.
  """
  with open(path, "rb") as f:
    head = f.read(512)
  if head.startswith(_ZIP_MAGIC):
    return _read_torch_zip(path)
  if head[257:262] == b"ustar":
    raise ValueError(
      f"{os.fspath(path)} is a tar-format torch checkpoint (torch < 0.1.10), which jaxcxr "
      "cannot read. Re-save it with a current torch: "
      "`torch.save(torch.load(f, weights_only=False), 'weights.pth')`."
    )
  if head[:1] == b"\x80":  # a pickle protocol ≥ 2 opcode: the legacy format
    return _read_torch_legacy(path)
  raise ValueError(f"{os.fspath(path)} is not a torch checkpoint (neither zip nor pickle).")


# --- safetensors ------------------------------------------------------------------------------


def read_safetensors(path: PathLike) -> dict[str, np.ndarray]:
  """Reads a `.safetensors` file into `{name: numpy array}` (bfloat16 becomes float32).

  Raises:
    ValueError: naming the file, if its header or data are malformed.
  """
  from safetensors import safe_open

  out: dict[str, np.ndarray] = {}
  bf16: list[str] = []
  try:
    with safe_open(os.fspath(path), framework="np") as f:
      for key in f.keys():
        try:
          out[key] = f.get_tensor(key)
        except TypeError:  # older numpy/safetensors: no 'bfloat16'; read the raw bytes below
          bf16.append(key)
  except Exception as e:  # safetensors raises its own SafetensorError (a Rust exception)
    raise ValueError(f"{os.fspath(path)} is not a valid safetensors file: {e}") from e
  if bf16:
    with open(path, "rb") as f:
      (n,) = struct.unpack("<Q", f.read(8))
      header = json.loads(f.read(n))
      base = 8 + n
      for key in bf16:
        info = header[key]
        if info["dtype"] != "BF16":
          raise ValueError(f"{os.fspath(path)}: cannot read tensor {key!r} ({info['dtype']}).")
        start, end = info["data_offsets"]
        f.seek(base + start)
        out[key] = np.frombuffer(f.read(end - start), dtype=ml_dtypes.bfloat16).reshape(
          info["shape"]
        )
  for key, value in out.items():
    if value.dtype == _TORCH_DTYPES["bfloat16"]:
      # Recent safetensors returns ml_dtypes.bfloat16 itself; as for torch files, widen to
      # float32 (exact) so plain numpy can compute with every array this module returns.
      out[key] = value.astype(np.float32)
  return {k: out[k] for k in sorted(out)}


# --- Keras ------------------------------------------------------------------------------------

# Keras 3 `.weights.h5` stores a layer's variables by index only; these are their names, in
# order, for the layers the Keras applications use (the group is named after the layer class).
_KERAS3_VARS = {
  "conv2d": ("kernel", "bias"),
  "conv1d": ("kernel", "bias"),
  "dense": ("kernel", "bias"),
  "depthwise_conv2d": ("kernel", "bias"),  # Keras 2 called it depthwise_kernel
  "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
  "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
  "layer_normalization": ("gamma", "beta"),
  "normalization": ("mean", "variance", "count"),
}


def _as_str(x: Any) -> str:
  return x.decode("utf8") if isinstance(x, bytes) else str(x)


def read_keras_h5(path: PathLike) -> dict[str, np.ndarray]:
  """Reads Keras weights into `{'layer_name/weight_name': array}` (Keras layouts, e.g. HWIO).

  Keys look like `conv1_conv/kernel` and `conv1_bn/moving_mean` for both layouts: TF's `:0`
  variable suffix (Keras 2 files) is dropped. In Keras 3 files, variables of layer classes not in
  the table above are named by their index (`layer/0`).

  Args:
    path: a classic Keras weights file (root attribute `layer_names`, as the downloaded
      `*_weights_tf_dim_ordering_tf_kernels.h5` and `model.save('x.h5')`'s `model_weights`)
      or a Keras 3 `model.save_weights('x.weights.h5')` file.
  """
  import h5py

  out: dict[str, np.ndarray] = {}

  def put(key: str, value: np.ndarray) -> None:
    if key in out:
      raise ValueError(f"{os.fspath(path)}: two weights are named {key!r}.")
    out[key] = np.asarray(value)

  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(
      f"{os.fspath(path)} is not a readable HDF5 file ({e}); expected Keras weights (.h5)."
    ) from e
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in root.attrs:
      for layer in map(_as_str, root.attrs["layer_names"]):
        if layer not in root:
          raise ValueError(f"{os.fspath(path)}: layer {layer!r} is in layer_names but missing.")
        group = root[layer]
        for wname in map(_as_str, group.attrs.get("weight_names", [])):
          if wname not in group:
            raise ValueError(
              f"{os.fspath(path)}: weight {wname!r} of layer {layer!r} is in weight_names but "
              "missing."
            )
          short = re.sub(r":\d+$", "", wname)
          key = short if short.startswith(f"{layer}/") else f"{layer}/{short}"
          put(key, group[wname][()])
    elif "layers" in root:

      def visit(name: str, obj: Any) -> None:
        if not (isinstance(obj, h5py.Group) and name.endswith("vars") and len(obj)):
          return
        parent = name[: -len("vars")].rstrip("/")
        layer = _as_str(obj.attrs.get("name", parent.rsplit("/", 1)[-1]))
        cls = re.sub(r"_\d+$", "", parent.rsplit("/", 1)[-1])
        names = _KERAS3_VARS.get(cls, ())
        for i in sorted(obj, key=int):
          vname = names[int(i)] if int(i) < len(names) else i
          put(f"{layer}/{vname}", obj[i][()])

      root.visititems(visit)
    else:
      raise ValueError(
        f"{os.fspath(path)} is an HDF5 file but not Keras weights (no 'layer_names' attribute "
        "and no 'layers' group)."
      )
  return out


# --- dispatch ---------------------------------------------------------------------------------


def read_checkpoint(path: PathLike) -> dict[str, Any]:
  """Reads any supported checkpoint, choosing the reader by file suffix and magic bytes.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the format is not one of safetensors, torch (zip or legacy) or Keras HDF5.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Checkpoint file not found: {path}")
  with open(path, "rb") as f:
    head = f.read(16)
  if path.endswith(".safetensors"):
    return read_safetensors(path)
  if head.startswith(_HDF5_MAGIC) or path.endswith((".h5", ".hdf5")):
    return read_keras_h5(path)
  if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80" or path.endswith((".pth", ".pt", ".bin")):
    return read_torch(path)
  if len(head) >= 8 and head[8:9] == b"{":  # safetensors: u64 header size, then JSON
    return read_safetensors(path)
  raise ValueError(
    f"{path}: unknown checkpoint format (expected .safetensors, a torch .pth/.bin/.pth.tar, or "
    f"a Keras .h5); the file starts with {head[:8]!r}."
  )


def find_state_dict(obj: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The flat `{name: array}` state dict inside a checkpoint, without a `module.` prefix.

  Training checkpoints nest the weights beside other entries (`{'epoch': 3, 'state_dict':
  {...}, 'optimizer': {...}}`, CheXNet's `model.pth.tar`); this descends through `state_dict`,
  `model_state_dict`, `model_state`, `model`, `net`, `params` (first match) until the values are
  arrays, then strips the `module.` prefix `nn.DataParallel` adds to every key.

  Raises:
    ValueError: no mapping of arrays is found.
  """
  node: Any = obj
  while isinstance(node, Mapping) and not _is_flat_arrays(node):
    key = next((k for k in _STATE_DICT_KEYS if isinstance(node.get(k), Mapping)), None)
    if key is None:
      raise ValueError(
        "No state dict found in the checkpoint: expected a mapping of arrays, or one under "
        f"{list(_STATE_DICT_KEYS)}; top-level keys are {list(node)[:20]}."
      )
    node = node[key]
  if not isinstance(node, Mapping):
    raise ValueError(f"Expected a mapping of arrays, got {type(node).__name__}.")
  keys = list(node)
  if keys and all(k.startswith("module.") for k in keys):
    return {k[len("module.") :]: v for k, v in node.items()}
  return dict(node)


def _is_flat_arrays(node: Mapping[str, Any]) -> bool:
  return bool(node) and all(isinstance(v, np.ndarray) for v in node.values())

"""The grain input pipeline: decode, resize and batch on the host; augmentation runs on device.

Training reads an endless, per-epoch reshuffled stream through `grain.DataLoader` with an
`IndexSampler` sharded by JAX process, so each host reads only its own records and the iterator
position can be checkpointed with the model (a resumed run sees exactly the batches an
uninterrupted one would). Evaluation reads each process's contiguous slice of a split once, in
order, padding the last batch and marking padding with `mask == 0` so no example is dropped or
counted twice.

Host-side work is deliberately small (resize to the training resolution, one grey channel, uint8):
the random augmentation is done on the accelerator by `jaxcxr.data.augment` with dm-pix.

Resizing (`config.input.resize`, the one rule every path uses: training, evaluation, `predict`,
markers, the gallery): 'stretch' (the default) resizes to S×S whatever the aspect ratio;
'letterbox' scales the longer side to S keeping the aspect ratio and centres the image on an S×S
canvas of grey `config.input.pad_value` (Zhang & Liu 2021's "letterboxed 224 px with grey
padding"; masks are padded with background).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import numpy as np
from PIL import Image

from jaxcxr.data.images import to_grey

RESIZE_MODES = ("stretch", "letterbox")


def fit(grey: np.ndarray, image_size: int, resize: str = "stretch", pad_value: int = 128):
  """A grey uint8 (H, W) image → PIL 'L' image S×S, bilinear: stretched to the square, or
  letterboxed (aspect ratio kept, longer side S, centred on a `pad_value` canvas; an odd margin
  puts its extra pixel right/bottom)."""
  pil = Image.fromarray(grey)
  size = (image_size, image_size)
  if resize == "stretch":
    return pil if pil.size == size else pil.resize(size, Image.BILINEAR, reducing_gap=None)
  if resize != "letterbox":
    raise ValueError(f"config.input.resize={resize!r}: expected one of {RESIZE_MODES}.")
  x0, y0, nw, nh = letterbox_box(*pil.size, image_size)
  if (nw, nh) != pil.size:
    pil = pil.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
  if (nw, nh) == size:
    return pil
  canvas = Image.new("L", size, int(pad_value))
  canvas.paste(pil, (x0, y0))
  return canvas


def letterbox_box(w: int, h: int, image_size: int) -> tuple[int, int, int, int]:
  """Where a W×H image lands when letterboxed onto S×S: (x0, y0, width, height)."""
  scale = image_size / max(w, h)
  nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
  return (image_size - nw) // 2, (image_size - nh) // 2, nw, nh


def resize_mask(mask: np.ndarray, image_size: int, resize: str = "stretch") -> np.ndarray:
  """A stored 0/255 mask → uint8 0/1 (S, S, 1): resized bilinearly as its image is (letterbox
  padding is background), then thresholded at half, so the outline follows the resized image
  (nearest-neighbour would shift it by up to a pixel)."""
  grey = fit(to_grey(mask), image_size, resize, pad_value=0)
  return (np.asarray(grey, np.uint8) >= 128).astype(np.uint8)[..., None]


class Preprocess(grain.transforms.Map):
  """Record → {'image': uint8 (S, S, 1), 'label': int32}: grey level, resized to S×S (`resize`:
  'stretch' or 'letterbox' on grey `pad_value`, see `fit`); with `with_mask` (segmentation data)
  also 'mask': uint8 0/1 (S, S, 1) from the record's `mask`. (Classification records may carry a
  `mask` of their own, e.g. covid_chestxray's; it is not read then.)"""

  def __init__(
    self,
    image_size: int,
    label_key: str = "label",
    with_mask: bool = False,
    resize: str = "stretch",
    pad_value: int = 128,
  ):
    if resize not in RESIZE_MODES:
      raise ValueError(f"config.input.resize={resize!r}: expected one of {RESIZE_MODES}.")
    self.image_size = int(image_size)
    self.label_key = label_key
    self.with_mask = with_mask
    self.resize, self.pad_value = resize, int(pad_value)

  @classmethod
  def of(cls, input_config: Any, with_mask: bool = False) -> Preprocess:
    """The preprocessing of a run's `config.input` (size, resize mode, pad value)."""
    return cls(input_config.image_size, with_mask=with_mask, **resize_args(input_config))

  def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
    if "prepared" in element:  # Already this map's output (`jaxcxr.data.prepared`): passed on.
      return self._prepared(element)
    # Radiographs are grey; RGB(A) copies (common in the COVID collections) and deeper pixels are
    # converted by the one decoder the builders and the audit use.
    pil = fit(to_grey(element["image"]), self.image_size, self.resize, self.pad_value)
    label = element[self.label_key]
    out = {
      "image": np.asarray(pil, np.uint8)[..., None],
      # A class id, or a multi-hot float vector for multi-label data.
      "label": np.int32(label) if np.ndim(label) == 0 else np.asarray(label, np.float32),
    }
    if self.with_mask:
      out["mask"] = resize_mask(element["mask"], self.image_size, self.resize)
    return out

  def _prepared(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
    made = tuple(element["prepared"])
    if made != (self.image_size, self.resize, self.pad_value):
      raise ValueError(
        f"A prepared-cache record made at (image_size, resize, pad_value) = {made} reached "
        f"preprocessing for {(self.image_size, self.resize, self.pad_value)}; its pixels cannot "
        "be resized again. Read the split without config.input.prepared_cache, or at its size."
      )
    out = {"image": element["image"], "label": element[self.label_key]}
    if self.with_mask:
      if "mask" not in element:
        raise ValueError("A prepared-cache record without a mask reached segmentation input.")
      out["mask"] = element["mask"]
    return out


def resize_args(input_config: Any) -> dict[str, Any]:
  """`resize` and `pad_value` of a `config.input` (defaults for configs saved before them)."""
  return {
    "resize": input_config.get("resize", "stretch"),
    "pad_value": input_config.get("pad_value", 128),
  }


def train_iterator(
  split: Any,
  *,
  local_batch_size: int,
  image_size: int,
  seed: int,
  num_workers: int = 0,
  num_threads: int = 4,
  with_masks: bool = False,
  resize: str = "stretch",
  pad_value: int = 128,
) -> grain.DataLoaderIterator:
  """An endless iterator of this process's training batches (checkpointable via grain).

  Args:
    split: the training split, random access by index (a `jaxcxr.data.views.View`).
    local_batch_size: examples per batch on this process.
    image_size: side of the square the images are resized to.
    seed: shuffling seed; each epoch is reshuffled deterministically from it.
    num_workers: grain worker processes (0: decode in threads of this process).
    num_threads: reader threads per worker.
    with_masks: segmentation data: batches also hold the records' masks (`mask`).
    resize, pad_value: 'stretch' or 'letterbox' on grey `pad_value` (`Preprocess`).
  """
  if len(split) < local_batch_size * jax.process_count():
    raise ValueError(
      f"The training split has {len(split)} examples, fewer than one global batch "
      f"({local_batch_size * jax.process_count()}); lower config.input.batch_size."
    )
  sampler = grain.samplers.IndexSampler(
    num_records=len(split),
    shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
    shuffle=True,
    num_epochs=None,
    seed=seed,
  )
  loader = grain.DataLoader(
    data_source=split,
    sampler=sampler,
    operations=[
      Preprocess(image_size, with_mask=with_masks, resize=resize, pad_value=pad_value),
      grain.transforms.Batch(local_batch_size, drop_remainder=True),
    ],
    worker_count=num_workers,
    read_options=grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=128),
  )
  return iter(loader)


class DevicePrefetch:
  """Training batches put on the devices `depth` steps ahead, with grain's exact resumption kept.

  `put` (the trainer's `sharding.shard_batch`) is asynchronous, so a batch's host-to-device copy
  overlaps the steps before it. The checkpointed position is that of the last batch handed out,
  not of the inner iterator, which runs `depth` batches ahead: after each inner `next` the
  iterator's state is recorded with the batch, and `get_state` returns the one of the batch last
  returned. A resumed run therefore restarts exactly after the last batch a step used, as
  without prefetch (tests/test_prefetch.py; the resume tests run with the default depth 2).
  `set_state` drops the buffer. Has what grain's orbax handler calls: `get_state`, `set_state`,
  `start_prefetch`. `depth=0`: each batch is put when asked for (no lookahead).
  """

  def __init__(self, inner: Any, put: Callable[[Any], Any], depth: int = 2):
    if depth < 0:
      raise ValueError(f"config.input.prefetch_to_device={depth}: expected >= 0.")
    self._inner, self._put, self.depth = inner, put, int(depth)
    self._buffer: collections.deque = collections.deque()
    self._state = inner.get_state()  # The position after the last batch handed out.

  def __iter__(self) -> DevicePrefetch:
    return self

  def __next__(self) -> Any:
    while len(self._buffer) <= self.depth:
      batch = next(self._inner)
      self._buffer.append((self._put(batch), self._inner.get_state()))
    batch, self._state = self._buffer.popleft()
    return batch

  def get_state(self) -> Any:
    return self._state

  def set_state(self, state: Any) -> None:
    self._buffer.clear()
    self._inner.set_state(state)
    self._state = state

  def start_prefetch(self) -> None:
    start = getattr(self._inner, "start_prefetch", None)
    if start is not None:
      start()


def eval_batches(
  split: Any,
  *,
  local_batch_size: int,
  image_size: int,
  num_threads: int = 4,
  with_masks: bool = False,
  resize: str = "stretch",
  pad_value: int = 128,
) -> Iterator[dict[str, np.ndarray]]:
  """This process's share of a split, once, in order, as padded batches with a `mask`.

  Every process yields the same number of batches (collectives need that); padding examples have
  `mask == 0` and are removed before metrics are computed. `with_masks`: segmentation data, each
  batch also has `seg`, the examples' uint8 0/1 masks (S, S, 1) (`mask` stays the padding mask).
  `resize`, `pad_value`: as `Preprocess`.
  """
  n = len(split)
  per_process = math.ceil(n / jax.process_count())
  start = min(jax.process_index() * per_process, n)
  stop = min(start + per_process, n)
  num_batches = max(1, math.ceil(per_process / local_batch_size))
  ds = (
    grain.MapDataset.source(split)[start:stop]
    .map(Preprocess(image_size, with_mask=with_masks, resize=resize, pad_value=pad_value))
    .to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=64))
  )
  it = iter(ds)
  ex = next(it, None)
  # Every process builds the same arrays, even with an empty slice: the label shape (class ids,
  # or multi-hot vectors) comes from the split's metadata, not from an example.
  label_shape, label_dtype = getattr(split, "label_spec", ((), np.int32))
  for _ in range(num_batches):
    images = np.zeros((local_batch_size, image_size, image_size, 1), np.uint8)
    labels = np.zeros((local_batch_size, *label_shape), label_dtype)
    mask = np.zeros((local_batch_size,), np.float32)
    seg = np.zeros((local_batch_size, image_size, image_size, 1), np.uint8) if with_masks else None
    for j in range(local_batch_size):
      if ex is None:
        break
      images[j], labels[j], mask[j] = ex["image"], ex["label"], 1.0
      if seg is not None:
        seg[j] = ex["mask"]
      ex = next(it, None)
    batch = {"image": images, "label": labels, "mask": mask}
    if seg is not None:
      batch["seg"] = seg
    yield batch

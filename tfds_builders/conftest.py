"""pytest settings for the TFDS builder tests (`tfds.testing.DatasetBuilderTestCase` classes)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
  """Deselects TensorFlow's `tf.test.TestCase.test_session`, which every builder test inherits.

  It is a context manager named like a test; unittest collects it and TensorFlow's `setUp` skips
  it ("Not a test."), which adds one meaningless skip per builder test class to every report.
  """
  tf_session = [
    item
    for item in items
    if item.name == "test_session"
    and getattr(getattr(item, "obj", None), "__module__", "").startswith("tensorflow.")
  ]
  if tf_session:
    config.hook.pytest_deselected(items=tf_session)
    items[:] = [item for item in items if item not in tf_session]

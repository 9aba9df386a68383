"""The jaxcxr package has no import cycle, counting imports inside functions (read with `ast`).

A cycle hidden in a function (`audit` importing `data.sources` lazily while `sources` imported
`audit`) still ties two modules together: neither can be understood, tested or moved alone.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxcxr"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
  """Module → the jaxcxr modules it imports anywhere in its source (top level or in functions)."""
  modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph: dict[str, set[str]] = {}
  for name, path in modules.items():
    is_package = path.name == "__init__.py"
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
          base = ".".join([*anchor, base] if base else anchor)
        # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg.
        targets = [
          f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
        ]
      else:
        continue
      for t in targets:
        while t and t not in modules:  # `import jaxcxr.a.b` also runs jaxcxr.a, and so on.
          t = t.rpartition(".")[0]
        if t and t != name and t.startswith("jaxcxr"):
          deps.add(t)
    graph[name] = deps
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_walk_sees_lazy_imports():
  graph = _graph()
  # `records_from_tfds` imports the data layer inside the function.
  assert "jaxcxr.data.tfds_access" in graph["jaxcxr.audit.records"]
  assert "jaxcxr.models.registry" in graph["jaxcxr.models.resnet"]


def test_a_planted_cycle_is_found():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_name_imported_from_a_parent_package_is_an_edge_to_it():
  # `from jaxcxr.models import register` in a family (the old layout) ties the family to
  # models/__init__, which imports the family: a cycle. A submodule import is an edge to it.
  graph = _graph()
  assert "jaxcxr.models" not in graph["jaxcxr.models.resnet"]
  assert "jaxcxr.models.resnet" in graph["jaxcxr.models"]


def test_no_import_cycle():
  cycles = _cycles(_graph())
  if cycles:
    pytest.fail("Import cycles in jaxcxr: " + "; ".join(" <-> ".join(c) for c in cycles))

"""The package's modules import each other without a cycle (issue 16).

Every ``import`` statement counts, at module level or inside a function (a
lazy import only hides a cycle), as do ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import ast
import pathlib

from absl.testing import absltest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'uisrnn_jax'


def module_files(package: pathlib.Path) -> dict[str, pathlib.Path]:
  """``{dotted module name: file}`` of every module of ``package``."""
  out = {}
  for path in sorted(package.rglob('*.py')):
    parts = path.relative_to(package.parent).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    out['.'.join(parts)] = path
  return out


def imported_modules(
  name: str, path: pathlib.Path, modules: set[str]
) -> set[str]:
  """The modules of ``modules`` that module ``name`` imports anywhere."""
  is_package = path.name == '__init__.py'
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: from the module's package upwards
        package = name.split('.')
        package = package[: len(package) - node.level + is_package]
        base = '.'.join(package + ([node.module] if node.module else []))
      else:
        base = node.module
      # `from pkg import sub` imports the submodule `pkg.sub` if there is
      # one, else a name of `pkg` itself.
      targets = [
        f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
        for alias in node.names
      ]
    else:
      continue
    found.update(t for t in targets if t in modules and t != name)
  return found


def import_graph(package: pathlib.Path) -> dict[str, set[str]]:
  """``{module: modules it imports}`` within ``package``."""
  files = module_files(package)
  return {
    name: imported_modules(name, path, set(files))
    for name, path in files.items()
  }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle ``[a, b, ..., a]`` of ``graph``, or None."""
  done: set[str] = set()
  path: list[str] = []

  def visit(node: str) -> list[str] | None:
    if node in path:
      return path[path.index(node) :] + [node]
    if node in done:
      return None
    path.append(node)
    for target in sorted(graph.get(node, ())):
      cycle = visit(target)
      if cycle:
        return cycle
    path.pop()
    done.add(node)
    return None

  for node in sorted(graph):
    cycle = visit(node)
    if cycle:
      return cycle
  return None


class ImportGraphTest(absltest.TestCase):
  def test_the_package_has_no_import_cycle(self):
    graph = import_graph(PACKAGE)
    cycle = find_cycle(graph)
    self.assertIsNone(cycle, f'import cycle: {" -> ".join(cycle or [])}')

  def test_the_graph_sees_every_kind_of_import(self):
    graph = import_graph(PACKAGE)
    self.assertGreater(len(graph), 20)
    self.assertIn('uisrnn_jax.dataset', graph['uisrnn_jax.shards'])
    # `from uisrnn_jax.errors import ...`:
    self.assertIn('uisrnn_jax.errors', graph['uisrnn_jax.dataset'])
    # A function-level import (the plots are drawn on demand):
    self.assertIn('uisrnn_jax.plots', graph['uisrnn_jax.experiment'])

  def test_find_cycle(self):
    self.assertIsNone(find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}))
    self.assertIsNone(find_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}))
    self.assertEqual(
      find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}), ['a', 'b', 'c', 'a']
    )
    self.assertEqual(find_cycle({'x': {'y'}, 'y': {'y'}}), ['y', 'y'])

  def test_function_level_and_relative_imports_count(self):
    directory = pathlib.Path(self.create_tempdir().full_path) / 'pkg'
    (directory / 'sub').mkdir(parents=True)
    (directory / '__init__.py').write_text('')
    (directory / 'a.py').write_text('def f():\n  from pkg import b\n')
    (directory / 'b.py').write_text('from .sub import c\n')
    (directory / 'sub' / '__init__.py').write_text('')
    (directory / 'sub' / 'c.py').write_text('from .. import a\n')
    (directory / 'd.py').write_text('import os\nimport pkg.sub.c\n')
    graph = import_graph(directory)
    self.assertEqual(graph['pkg.a'], {'pkg.b'})
    self.assertEqual(graph['pkg.b'], {'pkg.sub.c'})
    self.assertEqual(graph['pkg.sub.c'], {'pkg.a'})
    self.assertEqual(graph['pkg.d'], {'pkg.sub.c'})
    self.assertEqual(
      find_cycle(graph), ['pkg.a', 'pkg.b', 'pkg.sub.c', 'pkg.a']
    )


if __name__ == '__main__':
  absltest.main()

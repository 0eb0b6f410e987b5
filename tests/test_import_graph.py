"""robust_jax's modules import each other without a cycle, and the commands stay on top.

Module level only (imports inside functions are deliberate late imports, e.g. TensorFlow's): a
cycle would make import order matter; a library module importing a command (`main`, `evaluate`,
`cli`) would run back up from the library into the command lines."""
import ast
import os

from tests.helpers import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, 'robust_jax')
COMMANDS = {'robust_jax.main', 'robust_jax.evaluate', 'robust_jax.cli'}


def _modules() -> dict[str, str]:
  """Dotted module name -> file, for every module of the package."""
  modules = {}
  for folder, _, files in os.walk(PACKAGE):
    for file in files:
      if file.endswith('.py'):
        parts = os.path.relpath(os.path.join(folder, file), REPO_ROOT)[:-3].split(os.sep)
        modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = os.path.join(
            folder, file)
  return modules


def _imports(file: str, modules: dict[str, str]) -> set[str]:
  """The package's modules a file imports at module level ('from a import b' counts b when b is
  a module, else a)."""
  with open(file) as f:
    tree = ast.parse(f.read())
  found = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name in modules}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module in modules:
      for alias in node.names:
        sub = f'{node.module}.{alias.name}'
        found.add(sub if sub in modules else node.module)
  return found


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {name: _imports(file, modules) - {name} for name, file in modules.items()}


def test_the_module_import_graph_has_no_cycle():
  graph = _graph()
  # Packages' __init__ files re-export their modules; an edge from a module to its own package's
  # __init__ would be a cycle through it, and is reported like any other.
  state = {}

  def visit(module, path):
    state[module] = 'open'
    for imported in sorted(graph.get(module, ())):
      if state.get(imported) == 'open':
        cycle = path[path.index(imported):] + [imported]
        raise AssertionError('import cycle: ' + ' -> '.join(cycle))
      if imported not in state:
        visit(imported, path + [imported])
    state[module] = 'done'

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  assert len(state) > 60  # every module was visited


def test_no_library_module_imports_a_command():
  graph = _graph()
  offenders = {module: sorted(imported & COMMANDS) for module, imported in graph.items()
               if imported & COMMANDS and module not in COMMANDS}
  assert not offenders, offenders

"""docs/bad_inputs.md lists at least 100 bad inputs, and every test it names exists."""
import ast
import os
import re
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
DOC = os.path.join(ROOT, 'docs', 'bad_inputs.md')
MINIMUM_ROWS = 100


def _rows() -> list[tuple[str, str]]:
  """(bad input, test) of every table row of the document."""
  rows = []
  with open(DOC) as f:
    for line in f:
      cells = [cell.strip() for cell in line.strip().strip('|').split(' | ')]
      if line.startswith('|') and len(cells) == 3 and cells[2] not in ('test', '---'):
        rows.append((cells[0], cells[2]))
  return rows


def _test_functions(path: str) -> set[str]:
  with open(path) as f:
    tree = ast.parse(f.read())
  return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_the_document_lists_at_least_100_bad_inputs_each_with_a_test():
  rows = _rows()
  assert len(rows) >= MINIMUM_ROWS, len(rows)
  inputs = [bad_input for bad_input, _ in rows]
  assert len(set(inputs)) == len(inputs), [i for i in inputs if inputs.count(i) > 1]
  for bad_input, test in rows:
    match = re.fullmatch(r'`((?:\w+/)?test_\w+\.py)::(test_\w+)`', test)
    assert match, f'{bad_input}: the test column must be `[FOLDER/]test_FILE.py::test_NAME` (under tests/), got {test}'
    path = os.path.join(ROOT, 'tests', match[1])
    assert os.path.exists(path), f'{bad_input}: no file tests/{match[1]}'
    assert match[2] in _test_functions(path), f'{bad_input}: no test {match[2]} in {match[1]}'

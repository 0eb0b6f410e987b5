#!/usr/bin/env bash
# Mutation testing of robust_jax/methods/, robust_jax/attacks/ and robust_jax/training/step.py with
# cosmic-ray, configured in mutation.toml (not part of CI: it is slow).
#
#   python3 -m pip install cosmic-ray==8.7.0
#   bash tools/mutation_testing.sh REPORT.txt [FILE_OR_FOLDER ...]  # default: whole scope
#   bash tools/mutation_testing.sh --count [FILE_OR_FOLDER ...]     # count, run nothing
#
# It copies the working tree (tracked and untracked, not ignored files) to a scratch folder, so
# the tree is never mutated and nothing is left in it. There it
#   1. lets cosmic-ray list the mutants (`cosmic-ray init`) and drop the operators mutation.toml
#      filters out; of NumberReplacer's n + 1 and n - 1 it keeps n + 1, and it skips mutants in
#      annotations and signatures (never evaluated, or not an operator: the `*` of `f(a, *, b)`);
#   2. runs the tests of mutation.toml once, each after `jax.clear_caches()` and under a line
#      tracer, to learn which test executes which line of the scope and how long it takes. A test
#      that fails here is left out (and named in the report). A mutant on lines no test executes
#      is recorded as surviving without a run; one on code run at import (module level, `def`
#      lines, decorators) gets every test that reaches its file. Every XLA program compiled here
#      goes to JAX's persistent cache, so a mutant recompiles only the programs it changed;
#   3. `cosmic-ray exec`: per mutant, a fork server that has imported JAX, Flax, pytest, ... (but
#      started no JAX backend, so forking is safe) forks a child that imports the mutated code and
#      runs, in-process, the tests that execute the mutated lines, fastest first, with -x. The
#      child stops itself after 60 s + 3 x their measured time (a timeout, counted as killed);
#   4. writes REPORT.txt and prints it: the kill rate, the counts per file, and every surviving
#      mutant with file:line, operator and diff.
# PYTHON (default python3) is the interpreter that has robust_jax's dependencies and cosmic-ray.
set -euo pipefail

# All in a function, so that bash has read the whole script before it runs any of it.
main() {
  PYTHON=${PYTHON:-python3}

  if [[ ${1:-} == --test-mutant ]]; then  # cosmic-ray's test command, run in the scratch copy
    exec "$PYTHON" .mutation/helper.py test-mutant
  fi
  if [[ $# -lt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
  fi
  if [[ $1 == --count ]]; then
    report=''
  else
    report=$(realpath -m "$1")
  fi
  shift
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/robust_jax_mutation.XXXXXX")
  server_pid=''
  trap 'if [[ -n $server_pid ]]; then kill "$server_pid" || true; fi; rm -rf "$scratch"' EXIT
  # JAX reads JAX_PLATFORMS when imported, i.e. in the fork server before tests/conftest.py runs.
  export PYTHONDONTWRITEBYTECODE=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
  export JAX_COMPILATION_CACHE_DIR=$scratch/.mutation/jax_cache
  export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1

  cd "$repo"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do if [[ -f $path ]]; then printf '%s\0' "$path"; fi; done |
    xargs -0 cp --parents -t "$scratch"
  cd "$scratch"
  mkdir .mutation
  cat > .mutation/helper.py <<'PYTHON_HELPER'
"""The Python half of tools/mutation_testing.sh; see there. Run in the scratch copy.

  helper.py session-config CONFIG OUT [PATH ...]  CONFIG with module-path set to PATHs, if given
  helper.py skip-mutants SESSION                  skip NumberReplacer's n - 1, and mutants in
                                                  signatures and annotations
  helper.py count SESSION                         mutants to run, per file
  helper.py map SESSION CONFIG                    traced test run -> .mutation/lines.json; marks
                                                  the mutants that no test executes
  helper.py serve                                 fork server for the test command
  helper.py test-mutant                           cosmic-ray's test command
  helper.py report SESSION OUT EXEC_SECONDS       kill rate and surviving mutants
"""
from __future__ import annotations

import ast
import collections
import difflib
import glob
import json
import os
import resource
import sys
import threading
import time
import tomllib

STARTED = time.perf_counter()  # before pytest, JAX and the tests are imported

# pytest, JAX and cosmic_ray are imported where they are used: the test command, run once per
# mutant, imports only this module and asks the fork server (`serve`) to run the tests.

LINES_JSON = '.mutation/lines.json'
PRISTINE = '.mutation/pristine'
NOT_EXECUTED = 'not run: no test executes this line'
TIMEOUT_MARK = 'MUTANT TIMEOUT'
INCOMPETENT_MARK = 'RUN BROKEN'  # cosmic-ray counts it as killed; the report does not
PROGRESS = '.mutation/progress.log'
SOCKET = '.mutation/server.sock'
HARD_LIMIT_S = 1200  # the fork server kills a child after this (mutation.toml's timeout)
# Imported once by the fork server; never robust_jax, the tests or anything that starts JAX.
PRELOAD = ('numpy', 'jax', 'jax.numpy', 'flax.linen', 'optax', 'chex', 'ml_collections',
           'hypothesis', 'pytest', 'tqdm')
TIMINGS = '.mutation/timings.jsonl'  # per mutant run: wall and CPU seconds of its process


def statement_rows(source: str, row: int) -> tuple[range, bool]:
  """(rows of the innermost statement holding `row`, whether that code runs at import).

  A compound statement (if, for, def, ...) counts with its header only. Module-level statements,
  `def` lines of top-level functions and decorators run at import, before any test starts.
  """
  tree = ast.parse(source)
  parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
  best = None
  for node in ast.walk(tree):
    if isinstance(node, ast.stmt) and node.lineno <= row <= node.end_lineno:
      if best is None or node.lineno >= best.lineno and node.end_lineno <= best.end_lineno:
        best = node
  if best is None:
    return range(row, row + 1), True
  end = best.end_lineno
  body = getattr(best, 'body', None)
  if isinstance(body, list) and body:
    end = max(best.lineno, min(end, body[0].lineno - 1))
  decorators = getattr(best, 'decorator_list', [])
  at_import = isinstance(parents[best], ast.Module) or any(
      d.lineno <= row <= d.end_lineno for d in decorators)
  return range(best.lineno, end + 1), at_import


def tests_for(path: str, rows: list[int], line_map: dict) -> list[str]:
  """Tests that execute the statements on `rows` of `path`, fastest first (see statement_rows)."""
  with open(os.path.join(PRISTINE, path), encoding='utf-8') as f:
    source = f.read()
  tests = set()
  for row in rows:
    span, at_import = statement_rows(source, row)
    if at_import:
      tests.update(t for key, ts in line_map['lines'].items()
                   if key.rpartition(':')[0] == path for t in ts)
    else:
      tests.update(t for r in span for t in line_map['lines'].get(f'{path}:{r}', ()))
  return sorted(tests, key=lambda t: line_map['durations'][t])


def session_config(config: str, out: str, paths: list[str]) -> None:
  import toml  # a cosmic-ray dependency
  data = toml.load(config)
  if paths:
    data['cosmic-ray']['module-path'] = paths
  with open(out, 'w', encoding='utf-8') as f:
    toml.dump(data, f)


def in_signature(source: str, row: int, col: int) -> bool:
  """Whether (row, col) lies in a def's signature outside its default values, or in an annotation.

  Annotations are never evaluated here (`from __future__ import annotations`), and the `*` of a
  signature is not an operator: a mutant there cannot change a result.
  """
  line = source.splitlines()[row - 1]
  position = (row, len(line[:col].encode()))  # ast columns count UTF-8 bytes

  def inside(node):
    return (node.lineno, node.col_offset) <= position < (node.end_lineno, node.end_col_offset)

  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.AnnAssign) and inside(node.annotation):
      return True
    if isinstance(node, ast.FunctionDef):
      body = node.body[0]
      if (node.lineno, node.col_offset) <= position < (body.lineno, body.col_offset):
        defaults = [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
        return not any(inside(d) for d in defaults)
  return False


def skip_mutants(session: str) -> None:
  """Skips NumberReplacer's n - 1 (it keeps n + 1) and the mutants `in_signature`."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkerOutcome, WorkResult
  sources = {}
  with use_db(session, WorkDB.Mode.open) as db:
    for item in list(db.pending_work_items):
      (m,) = item.mutations
      if str(m.module_path) not in sources:
        with open(m.module_path, encoding='utf-8') as f:
          sources[str(m.module_path)] = f.read()
      # NumberReplacer yields two occurrences per number, n + 1 (even) then n - 1 (odd).
      if m.operator_name == 'core/NumberReplacer' and m.occurrence % 2:
        reason = 'NumberReplacer n - 1'
      elif in_signature(sources[str(m.module_path)], *m.start_pos):
        reason = 'annotation or signature'
      else:
        continue
      db.set_result(item.job_id, WorkResult(output=f'Filtered: {reason}',
                                            worker_outcome=WorkerOutcome.SKIPPED))


def count(session: str) -> None:
  from cosmic_ray.work_db import WorkDB, use_db
  with use_db(session, WorkDB.Mode.open) as db:
    per_file = collections.Counter(str(item.mutations[0].module_path)
                                   for item in db.pending_work_items)
  for path, n in sorted(per_file.items()):
    print(f'{n:6d}  {path}')
  print(f'{sum(per_file.values()):6d}  mutants to run')


class LineTracer:
  """pytest plugin: per test, the lines of `files` it executes and its wall time."""

  def __init__(self, files: set[str]):
    self.files = files
    self.lines = collections.defaultdict(set)
    self.durations = {}
    self.failed = set()  # tests that fail, and test files that cannot be collected
    self.hit = set()
    self.start = 0.0

  def _line(self, frame, event, arg):  # pylint: disable=unused-argument
    if event == 'line':
      self.hit.add((frame.f_code.co_filename, frame.f_lineno))
    return self._line

  def _call(self, frame, event, arg):  # pylint: disable=unused-argument
    return self._line if frame.f_code.co_filename in self.files else None

  def pytest_runtest_logstart(self, nodeid, location):  # pylint: disable=unused-argument
    import jax
    jax.clear_caches()  # a jitted function traced by an earlier test would run no Python here
    self.hit = set()
    self.start = time.perf_counter()
    sys.settrace(self._call)
    threading.settrace(self._call)

  def pytest_runtest_logfinish(self, nodeid, location):  # pylint: disable=unused-argument
    sys.settrace(None)
    threading.settrace(None)
    self.durations[nodeid] = time.perf_counter() - self.start
    for filename, row in self.hit:
      self.lines[f'{os.path.relpath(filename)}:{row}'].add(nodeid)

  def pytest_runtest_logreport(self, report):
    if report.failed:
      self.failed.add(report.nodeid)

  def pytest_collectreport(self, report):
    if report.failed:
      self.failed.add(report.nodeid)


def map_lines(session: str, config: str) -> None:
  import pytest
  from cosmic_ray.mutating import mutate_code
  from cosmic_ray.plugins import get_operator
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult
  with open(config, 'rb') as f:
    patterns = tomllib.load(f)['robust-jax-mutation']['tests']
  test_files = list(dict.fromkeys(p for pattern in patterns for p in sorted(glob.glob(pattern))))
  with use_db(session, WorkDB.Mode.open) as db:
    items = list(db.pending_work_items)
  paths = sorted({str(item.mutations[0].module_path) for item in items})
  for path in paths:
    os.makedirs(os.path.dirname(os.path.join(PRISTINE, path)), exist_ok=True)
    with open(path, encoding='utf-8') as src, open(os.path.join(PRISTINE, path), 'w',
                                                   encoding='utf-8') as dst:
      dst.write(src.read())
  print(f'traced run of {", ".join(test_files)}', flush=True)
  tracer = LineTracer({os.path.abspath(p) for p in paths})
  exit_code = pytest.main(['-q', '-p', 'no:cacheprovider', '--continue-on-collection-errors',
                           *test_files], plugins=[tracer])
  imported = sys.modules.get('robust_jax')
  if imported is None or not os.path.abspath(imported.__file__).startswith(os.getcwd()):
    sys.exit(f'robust_jax was imported from {getattr(imported, "__file__", None)}, not the copy')
  if exit_code not in (0, 1) or not tracer.durations:
    sys.exit(f'the traced test run did not run (pytest exit code {exit_code})')
  # A test that fails without a mutant would "kill" every mutant it reaches: leave it out.
  line_map = {'durations': tracer.durations, 'left_out': sorted(tracer.failed),
              'lines': {k: sorted(set(v) - tracer.failed) for k, v in tracer.lines.items()}}
  if tracer.failed:
    print(f'LEFT OUT, failing on the unmutated code: {", ".join(sorted(tracer.failed))}')
  with open(LINES_JSON, 'w', encoding='utf-8') as f:
    json.dump(line_map, f)
  not_executed = 0
  with use_db(session, WorkDB.Mode.open) as db:
    for item in items:
      (m,) = item.mutations
      if tests_for(str(m.module_path), [m.start_pos[0]], line_map):
        continue
      with open(m.module_path, encoding='utf-8') as f:
        source = f.read()
      mutated = mutate_code(source, get_operator(m.operator_name)(), m.occurrence)
      db.set_result(item.job_id, WorkResult(
          output=NOT_EXECUTED, diff=unified_diff(source, mutated, str(m.module_path)),
          test_outcome=TestOutcome.SURVIVED, worker_outcome=WorkerOutcome.NORMAL))
      not_executed += 1
  print(f'{not_executed} of {len(items)} mutants lie on lines no test executes', flush=True)


def unified_diff(before: str, after: str, path: str) -> str:
  return ''.join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                      f'a/{path}', f'b/{path}', n=1))


def run_mutant(started: float) -> int:
  """Runs, in this process, the tests that execute the mutated lines; 0: the mutant survived."""
  import pytest
  with open(LINES_JSON, encoding='utf-8') as f:
    line_map = json.load(f)
  tests, changed = set(), []
  for root, _, names in os.walk(PRISTINE):
    for name in names:
      pristine = os.path.join(root, name)
      path = os.path.relpath(pristine, PRISTINE)
      with open(pristine, encoding='utf-8') as a, open(path, encoding='utf-8') as b:
        before, after = a.read().splitlines(), b.read().splitlines()
      if before == after:
        continue
      rows = sorted({i1 + 1 for tag, i1, i2, _, _ in
                     difflib.SequenceMatcher(None, before, after).get_opcodes() if tag != 'equal'})
      changed.append(f'{path}:{",".join(map(str, rows))}')
      tests.update(tests_for(path, rows, line_map))
  tests = sorted(tests, key=lambda t: line_map['durations'][t])
  if not tests:  # cannot happen: the map step marks such mutants before cosmic-ray runs them
    print(f'no test executes {changed}; survived')
    return 0
  limit = 60 + 3 * sum(line_map['durations'][t] for t in tests)

  def log(outcome):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter() - started, usage.ru_utime + usage.ru_stime
    with open(PROGRESS, 'a', encoding='utf-8') as f:
      f.write(f'{" ".join(changed)}: {outcome} ({len(tests)} tests, {wall:.1f} s, '
              f'{cpu:.1f} s CPU)\n')
    with open(TIMINGS, 'a', encoding='utf-8') as f:
      f.write(json.dumps({'wall': wall, 'cpu': cpu}) + '\n')

  def stop():
    print(f'{TIMEOUT_MARK} after {limit:.0f} s', flush=True)
    log('timeout')
    os._exit(3)  # pylint: disable=protected-access

  watchdog = threading.Timer(limit, stop)
  watchdog.daemon = True
  watchdog.start()
  print(f'mutated {changed}; {len(tests)} tests', flush=True)
  exit_code = pytest.main(['-x', '-q', '-p', 'no:cacheprovider', '--tb=line',
                           '-W', 'ignore::pytest.PytestAssertRewriteWarning', *tests])
  imported = getattr(sys.modules.get('robust_jax'), '__file__', os.getcwd())
  if exit_code in (3, 4, 5) or not imported.startswith(os.getcwd()):  # not the mutant's doing
    print(f'{INCOMPETENT_MARK}: pytest exit code {exit_code}, robust_jax from {imported}')
    log('incompetent')
    return 1
  log('survived' if exit_code == 0 else 'killed')
  return 0 if exit_code == 0 else 1


def serve() -> None:
  """Fork server: imports the tests' third-party packages once, then forks a child per mutant.

  The child imports robust_jax (mutated) and the tests afresh and runs `run_mutant`; its output
  and then NUL and its exit code go back on the connection. Nothing here may start a JAX backend:
  its threads would not exist in the child, which would hang (as mutmut's children do).
  """
  import importlib
  import socket
  import traceback
  for name in PRELOAD:
    importlib.import_module(name)
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  if xla_bridge._backends:  # pylint: disable=protected-access
    sys.exit('fork server: importing started a JAX backend, so it cannot fork')
  with socket.socket(socket.AF_UNIX) as server:
    server.bind(SOCKET)
    server.listen()
    while True:
      connection, _ = server.accept()
      with connection:
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
          code = 1
          try:  # the child must never return into this loop
            server.close()
            os.dup2(connection.fileno(), 1)
            os.dup2(connection.fileno(), 2)
            code = run_mutant(started)
          except BaseException:  # pylint: disable=broad-exception-caught
            traceback.print_exc()
            print(INCOMPETENT_MARK)
          finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # pylint: disable=protected-access
        connection.sendall(b'\0%d' % wait_or_kill(pid, HARD_LIMIT_S, connection))


def wait_or_kill(pid: int, seconds: float, connection) -> int:
  """Exit code of child `pid`; kills it after `seconds`, a backstop to its own watchdog."""
  deadline = time.perf_counter() + seconds
  while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
    if time.perf_counter() > deadline:
      os.kill(pid, 9)
      connection.sendall(f'{TIMEOUT_MARK}: killed by the fork server\n'.encode())
      done = os.waitpid(pid, 0)
      break
    time.sleep(0.02)
  return os.waitstatus_to_exitcode(done[1])


def test_mutant() -> int:
  """cosmic-ray's test command: has the fork server run the mutant (or runs it here without one)."""
  import socket
  if not os.path.exists(SOCKET):
    return run_mutant(STARTED)
  with socket.socket(socket.AF_UNIX) as client:
    client.connect(SOCKET)
    chunks = []
    while chunk := client.recv(1 << 16):
      chunks.append(chunk)
  output, _, code = b''.join(chunks).rpartition(b'\0')
  sys.stdout.buffer.write(output)
  return int(code)


def report(session: str, out: str, exec_seconds: float) -> None:
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import TestOutcome, WorkerOutcome
  status = collections.defaultdict(collections.Counter)
  survivors = []
  killers = collections.Counter()  # test file -> mutants it killed
  with use_db(session, WorkDB.Mode.open) as db:
    pending = sum(1 for _ in db.pending_work_items)
    for item, result in db.completed_work_items:
      (m,) = item.mutations
      if result.worker_outcome == WorkerOutcome.SKIPPED:
        continue
      output = result.output or ''
      if result.test_outcome == TestOutcome.SURVIVED:
        kind = 'not executed' if output == NOT_EXECUTED else 'survived'
        survivors.append((str(m.module_path), m.start_pos[0], m.operator_name, kind,
                          result.diff or ''))
      elif INCOMPETENT_MARK in output:
        kind = 'incompetent'
      elif result.test_outcome == TestOutcome.KILLED:
        kind = 'timeout' if output == 'timeout' or TIMEOUT_MARK in output else 'killed'
        killers.update(line.split()[1].split('::')[0] for line in output.splitlines()
                       if line.startswith(('FAILED ', 'ERROR ')))
      else:
        kind = 'incompetent'
      status[str(m.module_path)][kind] += 1
  total = sum(status.values(), collections.Counter())
  timings = []
  if os.path.exists(TIMINGS):
    with open(TIMINGS, encoding='utf-8') as f:
      timings = [json.loads(line) for line in f]
  kinds = ['killed', 'timeout', 'survived', 'not executed', 'incompetent']
  dead = total['killed'] + total['timeout']
  judged = dead + total['survived'] + total['not executed']
  ran = judged + total['incompetent'] - total['not executed']
  with open(LINES_JSON, encoding='utf-8') as f:
    line_map = json.load(f)
  left_out, durations = line_map['left_out'], line_map['durations']
  lines = [
      f'robust_jax mutation testing (cosmic-ray), {time.strftime("%Y-%m-%d %H:%M")}',
      *([f'WARNING: {len(left_out)} tests failed on the unmutated code and were left out: '
         + ', '.join(left_out)] if left_out else []),
      f'kill rate: {dead} / {judged} = {100 * dead / max(judged, 1):.1f} % '
      '(killed + timeout) / (killed + timeout + survived + not executed)',
      f'mutants: {judged + total["incompetent"]}; ' + ', '.join(f'{k} {total[k]}' for k in kinds)
      + (f'; still pending {pending}' if pending else ''),
      f'cosmic-ray exec: {exec_seconds:.0f} s for {ran} mutants run '
      f'({exec_seconds / max(ran, 1):.1f} s each); their test processes: '
      f'{sum(t["wall"] for t in timings):.0f} s wall, {sum(t["cpu"] for t in timings):.0f} s CPU'
      ' (Python start-up excluded)', '',
      f'{"file":48s}' + ''.join(f'{k:>13s}' for k in kinds)]
  for path in sorted(status):
    lines.append(f'{path:48s}' + ''.join(f'{status[path][k]:13d}' for k in kinds))
  lines += ['', 'Mutants killed per test file (the first failing test of each):']
  lines += [f'{n:6d}  {path}' for path, n in killers.most_common()]
  slowest = sorted(durations.items(), key=lambda item: -item[1])[:5]
  lines += ['', f'Traced run: {len(durations)} tests in {sum(durations.values()):.0f} s; slowest:']
  lines += [f'{seconds:6.1f} s  {test}' for test, seconds in slowest]
  lines += ['', f'Surviving mutants ({len(survivors)}):']
  for path, row, operator, kind, diff in sorted(survivors):
    lines += ['', f'{path}:{row}  {operator.removeprefix("core/")}  [{kind}]',
              *[d for d in diff.splitlines() if not d.startswith(('---', '+++'))]]
  text = '\n'.join(lines) + '\n'
  with open(out, 'w', encoding='utf-8') as f:
    f.write(text)
  print(text, end='')


def main(argv: list[str]) -> int:
  command, args = argv[0], argv[1:]
  if command == 'session-config':
    session_config(args[0], args[1], args[2:])
  elif command == 'skip-mutants':
    skip_mutants(args[0])
  elif command == 'count':
    count(args[0])
  elif command == 'map':
    map_lines(args[0], args[1])
  elif command == 'test-mutant':
    return test_mutant()
  elif command == 'serve':
    serve()
  elif command == 'report':
    report(args[0], args[1], float(args[2]))
  else:
    sys.exit(f'unknown command {command!r}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
PYTHON_HELPER

  "$PYTHON" .mutation/helper.py session-config mutation.toml .mutation/session.toml "$@"
  "$PYTHON" -m cosmic_ray.cli init .mutation/session.toml .mutation/session.sqlite
  "$PYTHON" -m cosmic_ray.tools.filters.operators_filter .mutation/session.sqlite \
    .mutation/session.toml
  "$PYTHON" .mutation/helper.py skip-mutants .mutation/session.sqlite
  if [[ -z $report ]]; then
    "$PYTHON" .mutation/helper.py count .mutation/session.sqlite
    exit 0
  fi
  "$PYTHON" .mutation/helper.py map .mutation/session.sqlite mutation.toml
  "$PYTHON" .mutation/helper.py count .mutation/session.sqlite
  "$PYTHON" .mutation/helper.py serve &
  server_pid=$!
  until [[ -S .mutation/server.sock ]]; do
    kill -0 "$server_pid"  # fails (and so stops the script) if the server died
    sleep 0.2
  done
  start=$(date +%s)
  touch .mutation/progress.log
  tail --pid=$$ -n 0 -f .mutation/progress.log &
  tail_pid=$!
  "$PYTHON" -m cosmic_ray.cli exec .mutation/session.toml .mutation/session.sqlite
  kill "$tail_pid" "$server_pid"
  server_pid=''
  "$PYTHON" .mutation/helper.py report .mutation/session.sqlite "$report" $(($(date +%s) - start))
}

main "$@"

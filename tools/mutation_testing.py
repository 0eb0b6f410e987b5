#!/usr/bin/env python3
"""Mutation testing of robust_jax/methods/, robust_jax/attacks/, robust_jax/training/step.py and
the data pipeline with cosmic-ray, configured in mutation.toml (not part of CI: it is slow).

  python3 -m pip install cosmic-ray==8.7.0
  python3 tools/mutation_testing.py [REPORT.txt] --part NAME   # one part (mutation.toml), < 1 h
  python3 tools/mutation_testing.py REPORT.txt [FILE_OR_FOLDER ...]  # default: whole scope
  python3 tools/mutation_testing.py --count [FILE_OR_FOLDER ...]     # count, run nothing
  python3 tools/mutation_testing.py [REPORT.txt] --module FILE_OR_FOLDER [--module ...]
      # files or folders of the scope (--module may repeat); without REPORT.txt the report is
      # only printed
  --jobs N   # traced run and mutants in N processes (default: one per CPU)

FILE_OR_FOLDER is relative to the repository root (or absolute, inside it); without one, the scope
is mutation.toml's module-path. A part's mutants meet the part's tests; files or folders meet the
tests of every part that holds one of them. Run it with the interpreter that has robust_jax's
dependencies and cosmic-ray: every step runs in that interpreter.

It copies the working tree (tracked and untracked, not ignored files) to a scratch folder, so
the tree is never mutated and nothing is left in it. There it
  1. lets cosmic-ray list the mutants (`cosmic-ray init`) and drop the operators mutation.toml
     filters out; of NumberReplacer's n + 1 and n - 1 it keeps n + 1, and it skips mutants in
     annotations and signatures (never evaluated, or not an operator: the `*` of `f(a, *, b)`);
  2. runs the tests once (split over the N jobs), each after `jax.clear_caches()` and under a
     line tracer, to learn which test executes which line of the scope and how long it takes. A
     test that fails here is left out (and named in the report). A mutant on lines no test executes
     is recorded as surviving without a run; one on code run at import (module level, `def`
     lines, decorators) gets every test that reaches its file and the part's import tests
     (tests that read module-level values, defaults or tables, without running a line of the
     file). Every XLA program compiled here
     goes to JAX's persistent cache, so a mutant recompiles only the programs it changed;
  3. `cosmic-ray exec` in N copies of the scratch folder, each running every N-th mutant (their
     results are gathered back): per mutant, a fork server that has imported JAX, Flax, pytest,
     ... (but started no JAX backend, so forking is safe) forks a child that imports the mutated
     code and
     runs, in-process, the tests that execute the mutated lines, fastest first, with -x. The
     child stops itself after 60 s + 3 x their measured time (a timeout, counted as killed).
     A mutant that is not valid Python (`{**d}` -> `{*d}`) is incompetent, left out of the
     rate; one that makes a test module fail to collect (pytest's exit code 4) is killed;
  4. writes REPORT.txt and prints it: the kill rate, the counts per file, and every surviving
     mutant with file:line, operator and diff.

`--test-mutant` is cosmic-ray's test command (mutation.toml), run in the scratch copy: it asks the
fork server to run the mutant.
"""
from __future__ import annotations

import argparse
import ast
import collections
import difflib
import glob
import json
import os
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

STARTED = time.perf_counter()  # before pytest, JAX and the tests are imported

# pytest, JAX and cosmic_ray are imported where they are used: the test command, run once per
# mutant, imports only this module and asks the fork server (`serve`) to run the tests.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Paths relative to the scratch copy, the working folder of every step but the copy.
SCRIPT = 'tools/mutation_testing.py'
CONFIG = 'mutation.toml'
SESSION_TOML = '.mutation/session.toml'
SESSION_DB = '.mutation/session.sqlite'
LINES_JSON = '.mutation/lines.json'
LINES_SHARD = '.mutation/lines.{}.json'  # the traced run's share K
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
KINDS = ('killed', 'timeout', 'survived', 'not executed', 'incompetent')  # the report's columns


# --- The command line ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  """The parser of the command line (the usage lines of the module docstring)."""
  parser = argparse.ArgumentParser(
      prog='tools/mutation_testing.py', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
      usage='%(prog)s [-h] (REPORT.txt | --count) [FILE_OR_FOLDER ...] '
            '[--module FILE_OR_FOLDER ...] [--part NAME] [--jobs N]')
  parser.add_argument('--count', action='store_true',
                      help='count the mutants to run per file, run nothing')
  parser.add_argument('--module', action='append', default=[], metavar='FILE_OR_FOLDER',
                      help='mutate only this file or folder (may repeat; added to the positional '
                           'ones)')
  parser.add_argument('--part', metavar='NAME',
                      help="mutate one part of mutation.toml's [robust-jax-mutation.parts]")
  parser.add_argument('--jobs', type=int, default=len(os.sched_getaffinity(0)), metavar='N',
                      help='processes for the traced run and the mutants (default: one per CPU)')
  parser.add_argument('--test-mutant', action='store_true',
                      help="cosmic-ray's test command (mutation.toml), run in the scratch copy")
  parser.add_argument('--stage', choices=('map', 'serve'), help=argparse.SUPPRESS)
  parser.add_argument('--shard', default='0/1', help=argparse.SUPPRESS)  # map: K/N
  parser.add_argument('positional', nargs='*', metavar='REPORT.txt [FILE_OR_FOLDER ...]',
                      help='the report to write, then the files or folders to mutate '
                           '(with --count: only files or folders)')
  return parser


def resolve_module(path: str, repo: str = REPO) -> str:
  """`path` (a file or folder to mutate) relative to the repository root, checked to exist there.

  A relative path is taken from the repository root, as in the scratch copy; an absolute one must
  lie inside the repository (cosmic-ray would otherwise mutate the tree itself, not the copy).
  Raises ValueError with the reason.
  """
  repo = os.path.realpath(repo)
  full = os.path.realpath(path if os.path.isabs(path) else os.path.join(repo, path))
  relative = os.path.relpath(full, repo)
  if relative == '.' or relative.startswith(os.pardir + os.sep) or relative == os.pardir:
    raise ValueError(f'{path} is not a file or folder inside the repository {repo}')
  if os.path.isdir(full):
    return relative
  if not os.path.isfile(full):
    raise ValueError(f'{path}: no such file or folder in the repository {repo} '
                     '(relative paths start at its root)')
  if not full.endswith('.py'):
    raise ValueError(f'{path} is not a Python file')
  return relative


def load_parts(repo: str = REPO) -> dict[str, dict]:
  """mutation.toml's parts: name -> {'modules': [...], 'tests': [...globs]}."""
  import tomllib
  with open(os.path.join(repo, CONFIG), 'rb') as f:
    return tomllib.load(f)['robust-jax-mutation']['parts']


def part_tests(parts: dict[str, dict], modules: list[str]) -> tuple[list[str], list[str]]:
  """The test globs that `modules` (files or folders; empty: the whole scope) meet, and the import
  tests among them: those of every part holding one of them or held by one, in order, each once."""
  def overlap(a, b):
    return a == b or a.startswith(b + '/') or b.startswith(a + '/')
  chosen = [part for part in parts.values()
            if not modules or any(overlap(m, p) for m in modules for p in part['modules'])]
  return (list(dict.fromkeys(t for part in chosen for t in part['tests'])),
          list(dict.fromkeys(t for part in chosen for t in part['import-tests'])))


def parse_args(argv: list[str], repo: str = REPO) -> argparse.Namespace:
  """Parses `argv` into report (an absolute path, or None: print only), modules, tests (the test
  globs and the import-test globs), jobs, count, test_mutant, stage and shard; exits 2 with the
  help or the usage and an error on a bad command line.

  As in the bash version: with --count every positional argument is a file or folder, otherwise
  the first is REPORT.txt. A REPORT.txt that is a Python file or a folder is refused: it is a
  FILE_OR_FOLDER given without REPORT.txt, and writing the report there would overwrite it.
  """
  parser = build_parser()
  if not argv:
    parser.print_help()
    raise SystemExit(2)
  args = parser.parse_args(argv)
  if args.test_mutant or args.stage:
    if (args.positional or args.module or args.count or args.part
        or (args.test_mutant and args.stage)):
      parser.error('--test-mutant and --stage take no other argument')
    args.report, args.modules, args.tests = None, [], ([], [])
    return args
  if args.jobs < 1:
    parser.error(f'--jobs {args.jobs}: give 1 or more')
  parts = load_parts(repo)
  if args.part is not None and args.part not in parts:
    parser.error(f'--part {args.part!r}: mutation.toml has the parts {", ".join(parts)}')
  paths = list(args.positional)
  args.report = None
  if not args.count:
    if paths:
      report = paths.pop(0)
      if report.endswith('.py') or os.path.isdir(report):
        parser.error(f'REPORT.txt {report!r} is a Python file or a folder: name the report first, '
                     'or give the files to mutate with --module')
      args.report = os.path.realpath(report)
      if not os.path.isdir(os.path.dirname(args.report)):
        parser.error(f'REPORT.txt {report!r}: its folder does not exist')
    elif not args.module and not args.part:
      parser.error('give REPORT.txt, --count, --module or --part')
  if args.part is not None and (paths or args.module):
    parser.error('--part takes no FILE_OR_FOLDER: a part names its files')
  modules = list(parts[args.part]['modules']) if args.part is not None else []
  for path in paths + args.module:
    try:
      module = resolve_module(path, repo)
    except ValueError as error:
      parser.error(str(error))
    if module not in modules:
      modules.append(module)
  args.modules = modules
  args.tests = part_tests(parts, modules)
  if not args.tests[0]:
    parser.error(f'no part of mutation.toml holds {", ".join(modules)}: no test to run')
  return args


# --- The driver: a scratch copy of the tree, cosmic-ray's steps, the fork server -----------------

def mutation_env(environ: dict, scratch: str) -> dict:
  """The environment variables every step runs with (read by JAX when imported, i.e. in the fork
  server before tests/conftest.py runs): the CPU unless JAX_PLATFORMS says otherwise, and JAX's
  persistent compilation cache in the scratch folder, for every program."""
  return {'PYTHONDONTWRITEBYTECODE': '1',
          'JAX_PLATFORMS': environ.get('JAX_PLATFORMS') or 'cpu',
          'JAX_COMPILATION_CACHE_DIR': os.path.join(scratch, '.mutation', 'jax_cache'),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '-1'}


def tree_files(repo: str) -> list[str]:
  """The working tree's files that git tracks or would track (not ignored), relative to `repo`;
  regular files (or links to them) only, so deleted tracked files are left out."""
  listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                          cwd=repo, check=True, capture_output=True).stdout.decode()
  files = dict.fromkeys(path for path in listed.split('\0') if path)
  return [path for path in files if os.path.isfile(os.path.join(repo, path))]


def copy_tree(repo: str, scratch: str, files: list[str]) -> None:
  """Copies `files` (relative to `repo`) to the same places under `scratch`, contents and modes
  (a link is copied as the file it points to)."""
  for path in files:
    target = os.path.join(scratch, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy(os.path.join(repo, path), target)


def run_step(*args: str) -> None:
  """Runs `python ARGS` in the current folder; raises CalledProcessError if it fails."""
  sys.stdout.flush()
  subprocess.run([sys.executable, *args], check=True)


def follow(path: str, stop: threading.Event) -> None:
  """Prints the lines appended to `path` (the mutants' progress) until `stop` is set and all are
  printed."""
  with open(path, encoding='utf-8') as f:
    pending = ''
    while True:
      pending += f.readline()
      if pending.endswith('\n'):
        print(pending, end='', flush=True)
        pending = ''
      elif stop.is_set():
        if pending:
          print(pending, flush=True)
        return
      else:
        stop.wait(0.2)


def start_server(folder: str) -> subprocess.Popen:
  """Starts the fork server (`serve`) in `folder` (a job's copy) and waits for its socket; raises
  RuntimeError if it dies."""
  sys.stdout.flush()
  # Its own process group, so that stopping it stops a child still running a mutant's tests.
  server = subprocess.Popen([sys.executable, SCRIPT, '--stage', 'serve'], cwd=folder,
                            start_new_session=True)
  socket_path = os.path.join(folder, SOCKET)
  while not (os.path.exists(socket_path) and stat.S_ISSOCK(os.stat(socket_path).st_mode)):
    if server.poll() is not None:
      raise RuntimeError(f'the fork server stopped (exit code {server.returncode})')
    time.sleep(0.2)
  return server


def stop_server(server: subprocess.Popen) -> None:
  """Stops the fork server (it waits for connections forever) and any child it forked."""
  try:
    os.killpg(server.pid, signal.SIGTERM)
  except ProcessLookupError:  # the group is gone
    pass
  server.wait()


def run_together(commands: list[list[str]], folders: list[str]) -> None:
  """Runs `python COMMAND` in each folder at once and waits for all; raises CalledProcessError
  for the first that failed."""
  sys.stdout.flush()
  processes = [subprocess.Popen([sys.executable, *command], cwd=folder)
               for command, folder in zip(commands, folders)]
  codes = [process.wait() for process in processes]
  for command, code in zip(commands, codes):
    if code:
      raise subprocess.CalledProcessError(code, [sys.executable, *command])


def _terminated(signum, frame):  # pylint: disable=unused-argument
  """SIGTERM handler: exits through the `finally` clauses, which remove the scratch folder."""
  raise SystemExit(128 + signum)


def drive(report_path: str | None, modules: list[str], tests: list[str], count_only: bool,
          jobs: int = 1, repo: str = REPO) -> int:
  """The whole run (see the module docstring) in a scratch copy of `repo`, removed at the end.

  report_path: where the report goes besides stdout (None: stdout only); modules: the files and
  folders to mutate, relative to `repo` (empty: mutation.toml's module-path); tests: the test
  globs their mutants meet and the import-test globs among them; count_only: stop after counting
  the mutants; jobs: processes for the traced run and the mutants. Returns the exit code: 0, or
  that of the step that failed.
  """
  scratch = tempfile.mkdtemp(prefix='robust_jax_mutation.')
  previous_handler = signal.signal(signal.SIGTERM, _terminated)
  cwd = os.getcwd()
  servers = []
  folders = [f'{scratch}.job{k}' for k in range(jobs)]
  try:
    os.environ.update(mutation_env(os.environ, scratch))
    copy_tree(repo, scratch, tree_files(repo))
    # This file as it is now runs the steps there, committed or not.
    os.makedirs(os.path.join(scratch, os.path.dirname(SCRIPT)), exist_ok=True)
    shutil.copy(os.path.abspath(__file__), os.path.join(scratch, SCRIPT))
    os.chdir(scratch)
    os.mkdir('.mutation')
    session_config(CONFIG, SESSION_TOML, modules, tests)
    run_step('-m', 'cosmic_ray.cli', 'init', SESSION_TOML, SESSION_DB)
    run_step('-m', 'cosmic_ray.tools.filters.operators_filter', SESSION_DB, SESSION_TOML)
    skip_mutants(SESSION_DB)
    if count_only:
      count(SESSION_DB)
      return 0
    save_pristine(SESSION_DB)
    run_together([[SCRIPT, '--stage', 'map', '--shard', f'{k}/{jobs}'] for k in range(jobs)],
                 [scratch] * jobs)
    line_map = merge_line_maps([load_json(LINES_SHARD.format(k)) for k in range(jobs)])
    with open(LINES_JSON, 'w', encoding='utf-8') as f:
      json.dump(line_map, f)
    mark_not_executed(SESSION_DB, line_map)
    count(SESSION_DB)
    shares = split_mutants(SESSION_DB, jobs)
    for folder, share in zip(folders, shares):
      shutil.copytree(scratch, folder, ignore=shutil.ignore_patterns('jax_cache'))
      keep_only(os.path.join(folder, SESSION_DB), share)
    servers = [start_server(folder) for folder in folders]
    start = time.monotonic()
    stop = threading.Event()
    followers = []
    for folder in folders:
      open(os.path.join(folder, PROGRESS), 'a', encoding='utf-8').close()
      followers.append(threading.Thread(target=follow, args=(os.path.join(folder, PROGRESS), stop),
                                        daemon=True))
      followers[-1].start()
    try:
      run_together([['-m', 'cosmic_ray.cli', 'exec', SESSION_TOML, SESSION_DB]] * jobs, folders)
    finally:
      stop.set()
      for follower in followers:
        follower.join()
    for server in servers:
      stop_server(server)
    servers = []
    gather(SESSION_DB, folders, shares)
    report(SESSION_DB, report_path, time.monotonic() - start)
    return 0
  except subprocess.CalledProcessError as error:
    print(f'mutation_testing: `{shlex.join(map(str, error.cmd))}` failed '
          f'(exit code {error.returncode})', file=sys.stderr)
    return error.returncode if error.returncode > 0 else 1
  except RuntimeError as error:
    print(f'mutation_testing: {error}', file=sys.stderr)
    return 1
  finally:
    for server in servers:
      stop_server(server)
    os.chdir(cwd)
    for folder in [scratch, *folders]:
      shutil.rmtree(folder, ignore_errors=True)
    signal.signal(signal.SIGTERM, previous_handler)


def split_mutants(session: str, jobs: int) -> list[list[int]]:
  """The pending mutants' job ids dealt to `jobs` shares, in file and line order (so that every
  share gets a like mix of files)."""
  from cosmic_ray.work_db import WorkDB, use_db
  with use_db(session, WorkDB.Mode.open) as db:
    items = sorted(db.pending_work_items, key=lambda item: (
        str(item.mutations[0].module_path), item.mutations[0].start_pos, item.job_id))
  return [[item.job_id for item in items[k::jobs]] for k in range(jobs)]


def keep_only(session: str, share: list[int]) -> None:
  """Marks the pending mutants of `session` outside `share` as skipped: another job runs them."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkerOutcome, WorkResult
  keep = set(share)
  with use_db(session, WorkDB.Mode.open) as db:
    others = [item.job_id for item in db.pending_work_items if item.job_id not in keep]
    db.set_multiple_results(others, WorkResult(output='Filtered: another job runs it',
                                               worker_outcome=WorkerOutcome.SKIPPED))


def gather(session: str, folders: list[str], shares: list[list[int]]) -> None:
  """Copies each job's results (of its share) and run timings into `session` and TIMINGS."""
  from cosmic_ray.work_db import WorkDB, use_db
  for folder, share in zip(folders, shares):
    keep = set(share)
    with use_db(os.path.join(folder, session), WorkDB.Mode.open) as db:
      results = [(item.job_id, result) for item, result in db.completed_work_items
                 if item.job_id in keep]
    with use_db(session, WorkDB.Mode.open) as db:
      for job_id, result in results:
        db.set_result(job_id, result)
    timings = os.path.join(folder, TIMINGS)
    if os.path.exists(timings):
      with open(timings, encoding='utf-8') as src, open(TIMINGS, 'a', encoding='utf-8') as dst:
        dst.write(src.read())


# --- The steps in the scratch copy --------------------------------------------------------------

def session_data(data: dict, paths: list[str], tests: tuple[list[str], list[str]]) -> dict:
  """mutation.toml's `data` with module-path set to `paths` if any, and the tests to trace and
  the import tests set to `tests` (a new dict)."""
  data = {**data, 'cosmic-ray': dict(data['cosmic-ray']),
          'robust-jax-mutation': {'tests': list(tests[0]), 'import-tests': list(tests[1])}}
  if paths:
    data['cosmic-ray']['module-path'] = list(paths)
  return data


def session_config(config: str, out: str, paths: list[str],
                   tests: tuple[list[str], list[str]]) -> None:
  """Writes `config` (mutation.toml) to `out` with module-path set to `paths`, if given, and the
  tests to trace and the import tests set to `tests`."""
  import toml  # a cosmic-ray dependency
  data = session_data(toml.load(config), paths, tests)
  with open(out, 'w', encoding='utf-8') as f:
    toml.dump(data, f)


def statement_rows(source: str, row: int) -> tuple[range, bool]:
  """(rows of the innermost statement holding `row`, whether that code runs at import).

  A compound statement (if, for, def, ...) counts with its header only. What no function body
  holds runs at import, before any test starts: module-level statements, class bodies (a
  dataclass's field defaults), `def` lines (their default values) and decorators.
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
  enclosing, functions = parents[best], (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
  while not isinstance(enclosing, (ast.Module, *functions)):
    enclosing = parents[enclosing]
  at_import = isinstance(enclosing, ast.Module) or any(
      d.lineno <= row <= d.end_lineno for d in decorators)
  return range(best.lineno, end + 1), at_import


def tests_for(path: str, rows: list[int], line_map: dict, pristine: str = PRISTINE) -> list[str]:
  """Tests that execute the statements on `rows` of `path`, fastest first (see statement_rows);
  for import-time code, also the part's import tests (which read module-level values such as
  defaults and schemas without running a line of the module). `path`'s unmutated source is read
  from `pristine`."""
  with open(os.path.join(pristine, path), encoding='utf-8') as f:
    source = f.read()
  tests = set()
  for row in rows:
    span, at_import = statement_rows(source, row)
    if at_import:
      tests.update(t for key, ts in line_map['lines'].items()
                   if key.rpartition(':')[0] == path for t in ts)
      tests.update(line_map.get('import_tests', ()))
    else:
      tests.update(t for r in span for t in line_map['lines'].get(f'{path}:{r}', ()))
  return sorted(tests, key=lambda t: line_map['durations'][t])


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


def skip_reason(operator_name: str, occurrence: int, source: str,
                start_pos: tuple[int, int]) -> str | None:
  """Why a mutant is not run (None: it is): NumberReplacer's n - 1, or `in_signature`."""
  # NumberReplacer yields two occurrences per number, n + 1 (even) then n - 1 (odd).
  if operator_name == 'core/NumberReplacer' and occurrence % 2:
    return 'NumberReplacer n - 1'
  if in_signature(source, *start_pos):
    return 'annotation or signature'
  return None


def skip_mutants(session: str) -> None:
  """Marks the mutants with a `skip_reason` as skipped in the session database."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkerOutcome, WorkResult
  sources = {}
  with use_db(session, WorkDB.Mode.open) as db:
    for item in list(db.pending_work_items):
      (m,) = item.mutations
      if str(m.module_path) not in sources:
        with open(m.module_path, encoding='utf-8') as f:
          sources[str(m.module_path)] = f.read()
      reason = skip_reason(m.operator_name, m.occurrence, sources[str(m.module_path)], m.start_pos)
      if reason is None:
        continue
      db.set_result(item.job_id, WorkResult(output=f'Filtered: {reason}',
                                            worker_outcome=WorkerOutcome.SKIPPED))


def format_count(paths: list[str]) -> str:
  """The count's lines: mutants per file (one path per pending mutant), then the total."""
  per_file = collections.Counter(paths)
  lines = [f'{n:6d}  {path}' for path, n in sorted(per_file.items())]
  lines.append(f'{sum(per_file.values()):6d}  mutants to run')
  return '\n'.join(lines) + '\n'


def count(session: str) -> None:
  """Prints the mutants still to run, per file."""
  from cosmic_ray.work_db import WorkDB, use_db
  with use_db(session, WorkDB.Mode.open) as db:
    paths = [str(item.mutations[0].module_path) for item in db.pending_work_items]
  print(format_count(paths), end='', flush=True)


class LineTracer:
  """pytest plugin: per test of share `shard` of `shards` (every shards-th collected test, from
  the shard-th), the lines of `files` it executes and its wall time."""

  def __init__(self, files: set[str], shard: int = 0, shards: int = 1):
    self.files = files
    self.shard, self.shards = shard, shards
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

  def pytest_collection_modifyitems(self, items):
    """Keeps this share of the tests."""
    items[:] = items[self.shard::self.shards]

  def pytest_runtest_logstart(self, nodeid, location):  # pylint: disable=unused-argument
    """Starts tracing test `nodeid` (after clearing JAX's caches)."""
    import jax
    jax.clear_caches()  # a jitted function traced by an earlier test would run no Python here
    self.hit = set()
    self.start = time.perf_counter()
    sys.settrace(self._call)
    threading.settrace(self._call)

  def pytest_runtest_logfinish(self, nodeid, location):  # pylint: disable=unused-argument
    """Stops tracing; records the test's lines and duration."""
    sys.settrace(None)
    threading.settrace(None)
    self.durations[nodeid] = time.perf_counter() - self.start
    for filename, row in self.hit:
      self.lines[f'{os.path.relpath(filename)}:{row}'].add(nodeid)

  def pytest_runtest_logreport(self, report):
    """Records a failing test."""
    if report.failed:
      self.failed.add(report.nodeid)

  def pytest_collectreport(self, report):
    """Records a test file that cannot be collected."""
    if report.failed:
      self.failed.add(report.nodeid)


def test_files(patterns: list[str]) -> list[str]:
  """The files matching the globs `patterns` (mutation.toml's tests), in order, each once."""
  return list(dict.fromkeys(p for pattern in patterns for p in sorted(glob.glob(pattern))))


def scope_paths(session: str) -> list[str]:
  """The files of the session's pending mutants, relative to the scratch copy."""
  from cosmic_ray.work_db import WorkDB, use_db
  with use_db(session, WorkDB.Mode.open) as db:
    return sorted({str(item.mutations[0].module_path) for item in db.pending_work_items})


def save_pristine(session: str) -> None:
  """Copies the unmutated files of the session's mutants to PRISTINE."""
  for path in scope_paths(session):
    os.makedirs(os.path.dirname(os.path.join(PRISTINE, path)), exist_ok=True)
    shutil.copy(path, os.path.join(PRISTINE, path))


def trace_share(session: str, config: str, shard: int, shards: int) -> None:
  """Share `shard` of `shards` of the traced run of the session's tests -> LINES_SHARD."""
  import tomllib

  import pytest
  with open(config, 'rb') as f:
    settings = tomllib.load(f)['robust-jax-mutation']
  files = test_files(settings['tests'])
  import_files = set(test_files(settings['import-tests']))
  print(f'traced run ({shard + 1} of {shards}) of {", ".join(files)}', flush=True)
  tracer = LineTracer({os.path.abspath(p) for p in scope_paths(session)}, shard, shards)
  exit_code = pytest.main(['-q', '-p', 'no:cacheprovider', '--continue-on-collection-errors',
                           *files], plugins=[tracer])
  imported = sys.modules.get('robust_jax')
  if imported is None or not os.path.abspath(imported.__file__).startswith(os.getcwd()):
    sys.exit(f'robust_jax was imported from {getattr(imported, "__file__", None)}, not the copy')
  if exit_code not in (0, 1) or not tracer.durations:
    sys.exit(f'the traced test run did not run (pytest exit code {exit_code})')
  with open(LINES_SHARD.format(shard), 'w', encoding='utf-8') as f:
    json.dump({'durations': tracer.durations, 'failed': sorted(tracer.failed),
               'lines': {k: sorted(v) for k, v in tracer.lines.items()},
               'import_tests': sorted(t for t in tracer.durations
                                      if t.partition('::')[0] in import_files)}, f)


def load_json(path: str):
  """The JSON value in file `path`."""
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def merge_line_maps(shares: list[dict]) -> dict:
  """The traced run's line map from its shares: durations, the failing tests left out, per line
  the tests (that did not fail) executing it, and the import tests (that did not fail). A test
  that fails without a mutant would "kill" every mutant it reaches."""
  failed = set().union(*(share['failed'] for share in shares))
  lines = collections.defaultdict(set)
  for share in shares:
    for key, tests in share['lines'].items():
      lines[key].update(tests)
  return {'durations': {t: d for share in shares for t, d in share['durations'].items()},
          'left_out': sorted(failed),
          'lines': {k: sorted(v - failed) for k, v in sorted(lines.items())},
          'import_tests': sorted(set().union(*(share['import_tests'] for share in shares))
                                 - failed)}


def mark_not_executed(session: str, line_map: dict) -> None:
  """Records the mutants on lines no test executes as survivors, without a run."""
  from cosmic_ray.mutating import mutate_code
  from cosmic_ray.plugins import get_operator
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult
  if line_map['left_out']:
    print(f'LEFT OUT, failing on the unmutated code: {", ".join(line_map["left_out"])}')
  with use_db(session, WorkDB.Mode.open) as db:
    items = list(db.pending_work_items)
    not_executed = 0
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
  """The diff of a mutant, with one line of context."""
  return ''.join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                      f'a/{path}', f'b/{path}', n=1))


def not_python(paths: list[str]) -> str:
  """'' if every file of `paths` compiles, else the first SyntaxError, in one line."""
  for path in paths:
    with open(path, encoding='utf-8') as f:
      source = f.read()
    try:
      compile(source, path, 'exec')
    except SyntaxError as error:
      return f'{path}:{error.lineno}: SyntaxError: {error.msg}'
  return ''


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

  invalid = not_python([path.rpartition(':')[0] for path in changed])
  if invalid:  # e.g. `{**batch}` -> `{*batch}`: not a program, so no test can judge it
    print(f'{INCOMPETENT_MARK}: {invalid}')
    log('incompetent')
    return 1
  watchdog = threading.Timer(limit, stop)
  watchdog.daemon = True
  watchdog.start()
  print(f'mutated {changed}; {len(tests)} tests', flush=True)
  exit_code = pytest.main(['-x', '-q', '-p', 'no:cacheprovider', '--tb=line',
                           '-W', 'ignore::pytest.PytestAssertRewriteWarning', *tests])
  imported = getattr(sys.modules.get('robust_jax'), '__file__', os.getcwd())
  # Exit code 4 on valid code: a test module that cannot be collected with the mutant (e.g. a
  # removed registration decorator fails a parametrisation), which pytest reports as a usage
  # error after the collection error: the suite caught the mutant.
  if exit_code in (3, 5) or not imported.startswith(os.getcwd()):  # not the mutant's doing
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


test_mutant.__test__ = False  # not a pytest test, whoever imports this module


def classify(test_outcome: str | None, output: str) -> str:
  """The report's kind (one of KINDS) of a mutant that was not skipped, from cosmic-ray's test
  outcome ('survived', 'killed', 'incompetent' or None) and the test command's output."""
  if test_outcome == 'survived':
    return 'not executed' if output == NOT_EXECUTED else 'survived'
  if INCOMPETENT_MARK in output:
    return 'incompetent'
  if test_outcome == 'killed':
    return 'timeout' if output == 'timeout' or TIMEOUT_MARK in output else 'killed'
  return 'incompetent'


def killing_test_files(output: str) -> list[str]:
  """The test files named by pytest's FAILED and ERROR summary lines in `output`."""
  return [line.split()[1].split('::')[0] for line in output.splitlines()
          if line.startswith(('FAILED ', 'ERROR '))]


def format_report(status: dict[str, collections.Counter], survivors: list[tuple],
                  killers: collections.Counter, pending: int, exec_seconds: float,
                  timings: list[dict], line_map: dict, when: str) -> str:
  """The report's text.

  status: file -> Counter of KINDS; survivors: (file, row, operator, kind, diff) per surviving
  mutant; killers: test file -> mutants it killed; pending: mutants not run; exec_seconds: the
  time of `cosmic-ray exec`; timings: {'wall', 'cpu'} seconds per mutant run; line_map: the
  traced run's (LINES_JSON); when: the date and time to print.
  """
  total = sum(status.values(), collections.Counter())
  dead = total['killed'] + total['timeout']
  judged = dead + total['survived'] + total['not executed']
  ran = judged + total['incompetent'] - total['not executed']
  left_out, durations = line_map['left_out'], line_map['durations']
  lines = [
      f'robust_jax mutation testing (cosmic-ray), {when}',
      *([f'WARNING: {len(left_out)} tests failed on the unmutated code and were left out: '
         + ', '.join(left_out)] if left_out else []),
      f'kill rate: {dead} / {judged} = {100 * dead / max(judged, 1):.1f} % '
      '(killed + timeout) / (killed + timeout + survived + not executed)',
      f'mutants: {judged + total["incompetent"]}; ' + ', '.join(f'{k} {total[k]}' for k in KINDS)
      + (f'; still pending {pending}' if pending else ''),
      f'cosmic-ray exec: {exec_seconds:.0f} s for {ran} mutants run '
      f'({exec_seconds / max(ran, 1):.1f} s each); their test processes: '
      f'{sum(t["wall"] for t in timings):.0f} s wall, {sum(t["cpu"] for t in timings):.0f} s CPU'
      ' (Python start-up excluded)', '',
      f'{"file":48s}' + ''.join(f'{k:>13s}' for k in KINDS)]
  for path in sorted(status):
    lines.append(f'{path:48s}' + ''.join(f'{status[path][k]:13d}' for k in KINDS))
  lines += ['', 'Mutants killed per test file (the first failing test of each):']
  lines += [f'{n:6d}  {path}' for path, n in killers.most_common()]
  slowest = sorted(durations.items(), key=lambda item: -item[1])[:5]
  lines += ['', f'Traced run: {len(durations)} tests in {sum(durations.values()):.0f} s; slowest:']
  lines += [f'{seconds:6.1f} s  {test}' for test, seconds in slowest]
  lines += ['', f'Surviving mutants ({len(survivors)}):']
  for path, row, operator, kind, diff in sorted(survivors):
    lines += ['', f'{path}:{row}  {operator.removeprefix("core/")}  [{kind}]',
              *[d for d in diff.splitlines() if not d.startswith(('---', '+++'))]]
  return '\n'.join(lines) + '\n'


def report(session: str, out: str | None, exec_seconds: float) -> None:
  """Writes the report (kill rate and surviving mutants) to `out`, if given, and prints it."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkerOutcome
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
      kind = classify(result.test_outcome, output)
      if kind in ('survived', 'not executed'):
        survivors.append((str(m.module_path), m.start_pos[0], m.operator_name, kind,
                          result.diff or ''))
      elif kind in ('killed', 'timeout'):
        killers.update(killing_test_files(output))
      status[str(m.module_path)][kind] += 1
  timings = []
  if os.path.exists(TIMINGS):
    with open(TIMINGS, encoding='utf-8') as f:
      timings = [json.loads(line) for line in f]
  with open(LINES_JSON, encoding='utf-8') as f:
    line_map = json.load(f)
  text = format_report(status, survivors, killers, pending, exec_seconds, timings, line_map,
                       time.strftime('%Y-%m-%d %H:%M'))
  if out is not None:
    with open(out, 'w', encoding='utf-8') as f:
      f.write(text)
  print(text, end='')


def main(argv: list[str] | None = None) -> int:
  """Runs the command line `argv` (default: sys.argv[1:]); returns the exit code."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.test_mutant:
    return test_mutant()
  if args.stage == 'map':
    shard, shards = map(int, args.shard.split('/'))
    trace_share(SESSION_DB, SESSION_TOML, shard, shards)
    return 0
  if args.stage == 'serve':
    serve()
    return 0
  return drive(args.report, args.modules, args.tests, args.count, args.jobs)


if __name__ == '__main__':
  sys.exit(main())

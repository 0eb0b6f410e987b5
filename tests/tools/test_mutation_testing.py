"""The mutation-testing driver's pure parts (`tools/mutation_testing.py`): the command line, module
selection, which mutants are skipped and which tests a mutant gets, the report's format, and
mutation.toml's paths. No mutation run (cosmic-ray is not needed, except by the last test)."""
from __future__ import annotations

import collections
import glob
import importlib.util
import os
import subprocess
import sys
import tomllib

import pytest

from tools import mutation_testing as mt
from tests.helpers import REPO_ROOT

HAS_COSMIC_RAY = importlib.util.find_spec('cosmic_ray') is not None


# --- The command line and module selection -------------------------------------------------------

def test_report_then_files_as_in_the_bash_version(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'out').mkdir()
  args = mt.parse_args(['out/report.txt', 'robust_jax/methods/amp.py', 'robust_jax/attacks'])
  assert args.report == str(tmp_path / 'out' / 'report.txt')  # from the current folder
  assert args.modules == ['robust_jax/methods/amp.py', 'robust_jax/attacks']
  assert not args.count and not args.test_mutant and args.stage is None


def test_count_takes_every_positional_argument_as_a_file():
  args = mt.parse_args(['--count', 'robust_jax/methods/erm.py'])
  assert args.count and args.report is None
  assert args.modules == ['robust_jax/methods/erm.py']
  assert mt.parse_args(['--count']).modules == []  # the whole scope


def test_module_alone_runs_one_part_and_prints_the_report_only():
  args = mt.parse_args(['--module', 'robust_jax/methods/amp.py',
                        '--module', 'robust_jax/methods/amp.py', '--module', 'robust_jax/methods/'])
  assert args.report is None and not args.count
  assert args.modules == ['robust_jax/methods/amp.py', 'robust_jax/methods']  # normalised, once


def test_positional_files_come_before_modules(tmp_path):
  args = mt.parse_args([str(tmp_path / 'r.txt'), 'robust_jax/methods/erm.py',
                        '--module', 'robust_jax/training/step.py'])
  assert args.report == str(tmp_path / 'r.txt')
  assert args.modules == ['robust_jax/methods/erm.py', 'robust_jax/training/step.py']


def test_absolute_path_inside_the_repository_becomes_relative():
  args = mt.parse_args(['--count', os.path.join(REPO_ROOT, 'robust_jax', 'methods', 'erm.py')])
  assert args.modules == ['robust_jax/methods/erm.py']  # else cosmic-ray mutates the tree itself


@pytest.mark.parametrize('argv, message', [
    ([], 'usage:'),
    (['--module', 'robust_jax/methods/amp.py', 'robust_jax/methods/erm.py'], 'is a Python file'),
    (['robust_jax/methods', 'robust_jax/methods/erm.py'], 'is a Python file or a folder'),
    (['--count', 'robust_jax/methods/no_such_method.py'], 'no such file or folder'),
    (['no_such_folder/report.txt', 'robust_jax/methods/erm.py'], 'its folder does not exist'),
    (['--count', '/tmp'], 'not a file or folder inside the repository'),
    (['--count', '.'], 'not a file or folder inside the repository'),
    (['--count', 'README.md'], 'not a Python file'),
    (['--module', 'robust_jax/losses.py', '--test-mutant'], '--test-mutant'),
    (['--bogus'], 'unrecognized arguments'),
    (['--part', 'no_such_part'], 'mutation.toml has the parts lfm_dropattack, methods, attacks'),
    (['--part', 'fab', '--module', 'robust_jax/attacks/fab.py'], '--part takes no FILE_OR_FOLDER'),
    (['--part', 'fab', '--stage', 'map'], '--stage take no other argument'),
    (['--part', 'fab', '--jobs', '0'], '--jobs 0: give 1 or more'),
    (['--module', 'robust_jax/models/cnn.py'], 'no part of mutation.toml holds'),
])
def test_bad_command_lines_exit_2(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    mt.parse_args(argv)
  assert exit_info.value.code == 2
  captured = capsys.readouterr()
  assert message in captured.out + captured.err


def test_no_argument_prints_the_help(capsys):
  with pytest.raises(SystemExit):
    mt.parse_args([])
  assert 'python3 tools/mutation_testing.py --count' in capsys.readouterr().out


def test_test_mutant_and_hidden_stages():
  assert mt.parse_args(['--test-mutant']).test_mutant
  assert mt.parse_args(['--stage', 'serve']).stage == 'serve'
  with pytest.raises(SystemExit):
    mt.parse_args(['--stage', 'report'])


def test_a_part_mutates_its_modules_and_meets_its_tests_only():
  parts = mt.load_parts()
  args = mt.parse_args(['--part', 'fab', '--jobs', '3'])
  assert args.modules == parts['fab']['modules'] == ['robust_jax/attacks/fab.py']
  assert args.tests == (parts['fab']['tests'], parts['fab']['import-tests'])
  assert args.jobs == 3 and args.report is None
  assert 'tests/test_step_reference.py' not in args.tests[0]


def test_files_or_folders_meet_the_tests_of_every_part_holding_them():
  parts = {'a': {'modules': ['pkg/a', 'pkg/s.py'], 'tests': ['t/a.py', 't/common.py'],
                 'import-tests': ['t/a.py']},
           'b': {'modules': ['pkg/b/x.py'], 'tests': ['t/b.py', 't/common.py'],
                 'import-tests': []}}
  assert mt.part_tests(parts, ['pkg/s.py']) == (['t/a.py', 't/common.py'], ['t/a.py'])
  assert mt.part_tests(parts, ['pkg/a/deep/f.py'])[0] == ['t/a.py', 't/common.py']  # in a part
  assert mt.part_tests(parts, ['pkg/b']) == (['t/b.py', 't/common.py'], [])  # holds a part's file
  assert mt.part_tests(parts, ['pkg']) == mt.part_tests(parts, []) == (
      ['t/a.py', 't/common.py', 't/b.py'], ['t/a.py'])
  assert mt.part_tests(parts, ['pkg/s']) == ([], [])  # a prefix of a name is not a folder
  methods = mt.load_parts()['methods']
  assert mt.parse_args(['--module', 'robust_jax/training/step.py']).tests == (
      methods['tests'], methods['import-tests'])


def test_session_config_replaces_the_module_paths_only_when_given_and_sets_the_tests():
  data = {'cosmic-ray': {'module-path': ['robust_jax/methods'], 'timeout': 1200.0},
          'robust-jax-mutation': {'parts': {'p': {'modules': [], 'tests': ['tests/x.py']}}}}
  session = mt.session_data(data, [], (['tests/x.py'], []))
  assert session['cosmic-ray'] == data['cosmic-ray']
  assert session['robust-jax-mutation'] == {'tests': ['tests/x.py'], 'import-tests': []}
  session = mt.session_data(data, ['robust_jax/methods/amp.py'], (['tests/y.py'], ['tests/z.py']))
  assert session['cosmic-ray'] == {'module-path': ['robust_jax/methods/amp.py'], 'timeout': 1200.0}
  assert session['robust-jax-mutation'] == {'tests': ['tests/y.py'], 'import-tests': ['tests/z.py']}
  assert data['cosmic-ray']['module-path'] == ['robust_jax/methods']  # not changed in place


def test_traced_shares_split_the_tests_and_merge_leaving_out_the_failing():
  items = list(range(7))
  shares = []
  for shard in range(3):
    tracer = mt.LineTracer(set(), shard, 3)
    kept = list(items)
    tracer.pytest_collection_modifyitems(kept)
    shares.append(kept)
  assert sorted(sum(shares, [])) == items and shares[0] == [0, 3, 6]  # each test once
  merged = mt.merge_line_maps([
      {'durations': {'t1': 1.0, 't2': 2.0}, 'failed': [],
       'lines': {'a.py:3': ['t1', 't2'], 'a.py:4': ['t2']}, 'import_tests': ['t2']},
      {'durations': {'t3': 3.0, 't4': 0.5}, 'failed': ['t2'], 'lines': {'a.py:3': ['t3']},
       'import_tests': ['t4']}])
  assert merged == {'durations': {'t1': 1.0, 't2': 2.0, 't3': 3.0, 't4': 0.5}, 'left_out': ['t2'],
                    'lines': {'a.py:3': ['t1', 't3'], 'a.py:4': []}, 'import_tests': ['t4']}


def test_environment_keeps_a_chosen_platform_and_caches_in_the_scratch_folder():
  env = mt.mutation_env({}, '/scratch')
  assert env['JAX_PLATFORMS'] == 'cpu' and env['PYTHONDONTWRITEBYTECODE'] == '1'
  assert env['JAX_COMPILATION_CACHE_DIR'] == '/scratch/.mutation/jax_cache'
  assert env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] == '0'
  assert mt.mutation_env({'JAX_PLATFORMS': 'cuda'}, '/s')['JAX_PLATFORMS'] == 'cuda'
  assert mt.mutation_env({'JAX_PLATFORMS': ''}, '/s')['JAX_PLATFORMS'] == 'cpu'


def test_scratch_copy_has_tracked_and_untracked_files_not_ignored_or_deleted_ones(tmp_path):
  repo, scratch = tmp_path / 'repo', tmp_path / 'scratch'
  (repo / 'pkg').mkdir(parents=True)
  for name, text in {'pkg/a.py': 'a = 1\n', 'pkg/gone.py': '', '.gitignore': '*.log\n'}.items():
    (repo / name).write_text(text)
  git = ['git', '-c', 'user.name=t', '-c', 'user.email=t@t', '-C', str(repo)]
  subprocess.run([*git, 'init', '-q'], check=True)
  subprocess.run([*git, 'add', '.'], check=True)
  subprocess.run([*git, 'commit', '-qm', 'x'], check=True)
  (repo / 'pkg' / 'gone.py').unlink()
  (repo / 'pkg' / 'new.py').write_text('b = 2\n')
  (repo / 'run.log').write_text('ignored')
  files = mt.tree_files(str(repo))
  assert sorted(files) == ['.gitignore', 'pkg/a.py', 'pkg/new.py']
  scratch.mkdir()
  mt.copy_tree(str(repo), str(scratch), files)
  assert (scratch / 'pkg' / 'new.py').read_text() == 'b = 2\n'
  assert not (scratch / 'run.log').exists() and not (scratch / 'pkg' / 'gone.py').exists()


# --- mutation.toml ------------------------------------------------------------------------------

def test_mutation_toml_names_existing_modules_tests_and_this_driver():
  with open(os.path.join(REPO_ROOT, 'mutation.toml'), 'rb') as f:
    config = tomllib.load(f)
  for path in config['cosmic-ray']['module-path']:
    assert os.path.exists(os.path.join(REPO_ROOT, path)), path
  assert config['cosmic-ray']['test-command'] == 'python3 tools/mutation_testing.py --test-mutant'
  parts = config['robust-jax-mutation']['parts']
  cwd = os.getcwd()
  try:
    os.chdir(REPO_ROOT)
    for name, part in parts.items():
      for pattern in part['tests']:  # a stale glob silently drops tests
        assert glob.glob(pattern), f'{name}: {pattern} matches no file'
      files = mt.test_files(part['tests'])
      assert len(files) == len(set(files))
      assert set(mt.test_files(part['import-tests'])) <= set(files), name
      for path in part['modules']:
        assert os.path.exists(path), f'{name}: {path}'
    # The parts cover the scope's Python files, each file once.
    scope = sorted(f for root in config['cosmic-ray']['module-path']
                   for f in ([root] if root.endswith('.py') else
                             glob.glob(f'{root}/**/*.py', recursive=True)))
    covered = sorted(f for part in parts.values() for root in part['modules']
                     for f in ([root] if root.endswith('.py') else
                               glob.glob(f'{root}/**/*.py', recursive=True)))
  finally:
    os.chdir(cwd)
  assert covered == scope
  assert 'tests/attacks/test_attack_schedules.py' in mt.test_files(parts['attacks']['tests'])


# --- Which mutants run, and which tests they get ------------------------------------------------

SOURCE = '''\
from __future__ import annotations

LIMIT: int = 3 * 2


@register('x', size=4 - 1)
def f(a: int, *, b=2 + 1) -> int:
  """Doc."""
  if a > LIMIT:
    return a - b
  return a + b


@dataclasses.dataclass
class Settings:
  steps: int = 100

  def method(self, c=5):
    return c * 2
'''


@pytest.mark.parametrize('row, span, at_import', [
    (3, range(3, 4), True),    # module level
    (6, range(6, 7), True),    # a decorator (outside the def's rows since Python 3.8)
    (7, range(7, 8), True),    # the def line of a top-level function
    (9, range(9, 10), False),  # an if header, not its body
    (10, range(10, 11), False),
    (11, range(11, 12), False),
    (14, range(14, 15), True),  # a class decorator
    (16, range(16, 17), True),  # a class body: a dataclass field's default
    (18, range(18, 19), True),  # a method's def line (its defaults)
    (19, range(19, 20), False),  # a method's body
])
def test_statement_rows(row, span, at_import):
  assert mt.statement_rows(SOURCE, row) == (span, at_import)


@pytest.mark.parametrize('row, text, expected', [
    (3, 'int', True),         # an annotation
    (3, '*', False),          # the value of an annotated assignment
    (7, '*', True),           # the bare * of a signature
    (7, '+', False),          # inside a default value
    (7, '-> int', True),      # the return annotation
    (6, '-', False),          # the decorator's argument
    (10, '-', False),         # the body
])
def test_in_signature(row, text, expected):
  col = SOURCE.splitlines()[row - 1].index(text)
  assert mt.in_signature(SOURCE, row, col) is expected


def test_skip_reason_keeps_n_plus_1_and_drops_signatures():
  body = (10, SOURCE.splitlines()[9].index('-'))
  assert mt.skip_reason('core/NumberReplacer', 0, SOURCE, body) is None
  assert mt.skip_reason('core/NumberReplacer', 1, SOURCE, body) == 'NumberReplacer n - 1'
  star = (7, SOURCE.splitlines()[6].index('*'))
  assert mt.skip_reason('core/ReplaceBinaryOperator_Mul_Div', 0, SOURCE, star) == (
      'annotation or signature')
  assert mt.skip_reason('core/ReplaceBinaryOperator_Sub_Add', 1, SOURCE, body) is None


def test_tests_for_a_body_line_and_for_import_time_code(tmp_path):
  (tmp_path / 'pkg').mkdir()
  (tmp_path / 'pkg' / 'm.py').write_text(SOURCE)
  line_map = {'durations': {'slow': 9.0, 'fast': 1.0, 'other': 2.0, 'header': 3.0},
              'lines': {'pkg/m.py:10': ['slow', 'fast'], 'pkg/m.py:9': ['header'],
                        'pkg/m.py:11': ['other'], 'pkg/other.py:1': ['elsewhere']}}
  assert mt.tests_for('pkg/m.py', [10], line_map, str(tmp_path)) == ['fast', 'slow']
  assert mt.tests_for('pkg/m.py', [10, 11], line_map, str(tmp_path)) == ['fast', 'other', 'slow']
  assert mt.tests_for('pkg/m.py', [9], line_map, str(tmp_path)) == ['header']  # not its body
  # Import-time code (module level, def lines): every test that reached the file.
  assert mt.tests_for('pkg/m.py', [7], line_map, str(tmp_path)) == [
      'fast', 'other', 'header', 'slow']
  assert mt.tests_for('pkg/m.py', [6], line_map, str(tmp_path)) == [
      'fast', 'other', 'header', 'slow']  # a decorator
  assert mt.tests_for('pkg/m.py', [11], {'durations': {}, 'lines': {}}, str(tmp_path)) == []
  # ... and the import tests, which read module-level values without running a line of the file.
  line_map['durations']['reads'] = 0.5
  line_map['import_tests'] = ['reads']
  assert mt.tests_for('pkg/m.py', [3], line_map, str(tmp_path)) == [
      'reads', 'fast', 'other', 'header', 'slow']
  assert mt.tests_for('pkg/m.py', [10], line_map, str(tmp_path)) == ['fast', 'slow']  # a body


# --- The report ---------------------------------------------------------------------------------

@pytest.mark.parametrize('outcome, output, kind', [
    ('survived', '', 'survived'),
    ('survived', mt.NOT_EXECUTED, 'not executed'),
    ('killed', 'FAILED tests/a.py::t - x', 'killed'),
    ('killed', 'timeout', 'timeout'),
    ('killed', f'{mt.TIMEOUT_MARK} after 70 s', 'timeout'),
    ('killed', f'{mt.INCOMPETENT_MARK}: pytest exit code 4', 'incompetent'),
    ('incompetent', '', 'incompetent'),
    (None, '', 'incompetent'),
])
def test_classify(outcome, output, kind):
  assert mt.classify(outcome, output) == kind


def test_killing_test_files_reads_the_summary_lines():
  output = ('mutated [...]; 3 tests\n.F\nFAILED tests/methods/test_methods.py::test_a[x] - Assert\n'
            'ERROR tests/test_properties.py::test_b\nFAILED: not a summary line\n')
  assert mt.killing_test_files(output) == ['tests/methods/test_methods.py',
                                           'tests/test_properties.py']


def test_format_count():
  assert mt.format_count(['b.py', 'a.py', 'b.py']) == (
      '     1  a.py\n     2  b.py\n     3  mutants to run\n')
  assert mt.format_count([]) == '     0  mutants to run\n'


DIFF = '''--- a/robust_jax/methods/erm.py
+++ b/robust_jax/methods/erm.py
@@ -40,1 +40,1 @@
-  return (1.0 - smoothing) * x
+  return (1.0 + smoothing) * x
'''


def test_format_report():
  status = {'robust_jax/methods/erm.py': collections.Counter(killed=6, survived=1, timeout=1),
            'robust_jax/attacks/pgd.py': collections.Counter({'killed': 2, 'not executed': 1,
                                                              'incompetent': 1})}
  survivors = [('robust_jax/methods/erm.py', 40, 'core/ReplaceBinaryOperator_Sub_Add', 'survived',
                DIFF),
               ('robust_jax/attacks/pgd.py', 7, 'core/NumberReplacer', 'not executed', '')]
  killers = collections.Counter({'tests/test_properties.py': 2, 'tests/methods/test_methods.py': 6})
  line_map = {'left_out': ['tests/x.py::broken'],
              'durations': {f't{i}': float(i) for i in range(7)}}
  text = mt.format_report(status, survivors, killers, 3, 100.0,
                          [{'wall': 10.4, 'cpu': 4.0}, {'wall': 20.0, 'cpu': 5.2}], line_map,
                          '2026-12-06 12:00')
  lines = text.splitlines()
  assert text.endswith('\n')
  assert lines[:5] == [
      'robust_jax mutation testing (cosmic-ray), 2026-12-06 12:00',
      'WARNING: 1 tests failed on the unmutated code and were left out: tests/x.py::broken',
      'kill rate: 9 / 11 = 81.8 % (killed + timeout) / (killed + timeout + survived + not '
      'executed)',
      'mutants: 12; killed 8, timeout 1, survived 1, not executed 1, incompetent 1; still '
      'pending 3',
      'cosmic-ray exec: 100 s for 11 mutants run (9.1 s each); their test processes: 30 s wall, '
      '9 s CPU (Python start-up excluded)']
  assert lines[5] == ''
  assert lines[6] == f'{"file":48s}' + ''.join(f'{k:>13s}' for k in mt.KINDS)
  assert lines[7] == f'{"robust_jax/attacks/pgd.py":48s}' + ''.join(
      f'{n:13d}' for n in (2, 0, 0, 1, 1))  # files sorted
  assert lines[8] == f'{"robust_jax/methods/erm.py":48s}' + ''.join(
      f'{n:13d}' for n in (6, 1, 1, 0, 0))
  assert lines[9:13] == ['', 'Mutants killed per test file (the first failing test of each):',
                         '     6  tests/methods/test_methods.py',
                         '     2  tests/test_properties.py']
  assert lines[13:20] == ['', 'Traced run: 7 tests in 21 s; slowest:', '   6.0 s  t6',
                          '   5.0 s  t5', '   4.0 s  t4', '   3.0 s  t3', '   2.0 s  t2']
  assert lines[20:] == [
      '', 'Surviving mutants (2):',
      '', 'robust_jax/attacks/pgd.py:7  NumberReplacer  [not executed]',
      '', 'robust_jax/methods/erm.py:40  ReplaceBinaryOperator_Sub_Add  [survived]',
      '@@ -40,1 +40,1 @@', '-  return (1.0 - smoothing) * x', '+  return (1.0 + smoothing) * x']


def test_format_report_of_an_empty_run_has_no_warning_and_no_pending():
  text = mt.format_report({}, [], collections.Counter(), 0, 0.0, [],
                          {'left_out': [], 'durations': {}}, 'now')
  lines = text.splitlines()
  assert lines[1] == 'kill rate: 0 / 0 = 0.0 % (killed + timeout) / (killed + timeout + survived' \
                     ' + not executed)'
  assert lines[2] == ('mutants: 0; killed 0, timeout 0, survived 0, not executed 0, incompetent 0')
  assert lines[-1] == 'Surviving mutants (0):'


def test_follow_prints_every_appended_line(tmp_path, capsys):
  import threading
  path = tmp_path / 'progress.log'
  path.write_text('')
  stop = threading.Event()
  follower = threading.Thread(target=mt.follow, args=(str(path), stop))
  follower.start()
  with open(path, 'a', encoding='utf-8') as f:
    f.write('a.py:3: killed (2 tests, 1.0 s, 0.5 s CPU)\n')
    f.flush()
    f.write('a.py:4: surv')
    f.flush()
    f.write('ived (1 tests, 1.0 s, 0.5 s CPU)\n')
  stop.set()
  follower.join(timeout=10)
  assert not follower.is_alive()
  assert capsys.readouterr().out == ('a.py:3: killed (2 tests, 1.0 s, 0.5 s CPU)\n'
                                     'a.py:4: survived (1 tests, 1.0 s, 0.5 s CPU)\n')


# --- With cosmic-ray installed: counting, end to end but running no mutant ----------------------

@pytest.mark.skipif(not HAS_COSMIC_RAY, reason='cosmic-ray is not installed')
def test_count_of_one_module(tmp_path):
  completed = subprocess.run(
      [sys.executable, 'tools/mutation_testing.py', '--count', 'robust_jax/methods/erm.py'],
      cwd=REPO_ROOT, env=dict(os.environ, TMPDIR=str(tmp_path)), capture_output=True, text=True,
      timeout=300, check=False)
  assert completed.returncode == 0, completed.stdout + completed.stderr
  lines = completed.stdout.splitlines()
  assert lines[-2].endswith('  robust_jax/methods/erm.py') and lines[-1].endswith('mutants to run')
  assert int(lines[-2].split()[0]) == int(lines[-1].split()[0]) > 0
  assert not os.listdir(tmp_path)  # the scratch copy is removed


def test_a_mutant_that_is_not_python_is_named_as_such(tmp_path):
  (tmp_path / 'good.py').write_text('batch = {**{}, "image": 1}\n')
  (tmp_path / 'bad.py').write_text('batch = {*{}, "image": 1}\n')  # `**` -> `*` in a dict display
  assert mt.not_python([str(tmp_path / 'good.py')]) == ''
  assert mt.not_python([str(tmp_path / 'good.py'), str(tmp_path / 'bad.py')]).startswith(
      f'{tmp_path / "bad.py"}:1: SyntaxError')

"""Every config README.md names loads and validates, with the overrides its commands give."""
import itertools
import os
import re
import shlex

import pytest

from robust_jax.config import overrides as config_overrides, validation
from robust_jax.config.files import load_config_file
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as _f:
  README = _f.read()


def brace_expand(text: str) -> list[str]:
  """Shell brace expansion: 'a{b,c}d{e,f}' -> ['abde', 'abdf', 'acde', 'acdf']."""
  parts = re.split(r'\{([^{}]*)\}', text)  # literal, choices, literal, choices, ..., literal
  choices = [[part] if i % 2 == 0 else part.split(',') for i, part in enumerate(parts)]
  return [''.join(pieces) for pieces in itertools.product(*choices)]


def config_specs() -> list[str]:
  """Every 'configs/x.py:variant' named by a --config= in README.md, braces expanded, and the ERM
  and AMP configs of every `experiments/amp_table_row.py --row=ROW`."""
  named = re.findall(r'--config=([^\s`|]+)', README)
  rows = re.findall(r'amp_table_row\.py --row=([a-z0-9_]+)', README)
  return sorted({spec for text in named for spec in brace_expand(text)}
                | {f'configs/{method}.py:{row}' for row in rows for method in ('erm', 'amp')})


def bash_commands() -> list[list[str]]:
  """The argv of every `robust_jax.main` command in the README's bash blocks."""
  commands = []
  for block in re.findall(r'```bash\n(.*?)```', README, re.DOTALL):
    for line in block.replace('\\\n', ' ').splitlines():
      for command in line.split('&&'):
        argv = shlex.split(command)
        if 'robust_jax.main' in argv:
          commands.append(argv)
  return commands


def test_brace_expand():
  assert brace_expand('c/{a,b}.py:x_{1,2}') == ['c/a.py:x_1', 'c/a.py:x_2', 'c/b.py:x_1',
                                                'c/b.py:x_2']
  assert brace_expand('plain') == ['plain']


def test_the_readme_names_the_cifar_configs():
  specs = config_specs()
  assert 'configs/erm.py:cifar10_preact_resnet18' in specs
  assert 'configs/cifar_adversarial.py:cifar100_trades' in specs and len(specs) >= 20


@pytest.mark.parametrize('spec', config_specs())
def test_every_config_in_the_readme_loads_and_validates(spec):
  validation.validate_config(load_config_file(os.path.join(ROOT, spec)))


def test_readme_main_commands_apply_and_validate():
  commands = bash_commands()
  assert len(commands) >= 3  # the offline default, the overrides example, the TFDS run
  for argv in commands:
    argv, overrides = config_overrides.split_argv(argv)
    [spec] = [arg.split('=', 1)[1] for arg in argv if arg.startswith('--config=')]
    config = load_config_file(os.path.join(ROOT, spec))
    validation.validate_config(config_overrides.apply_overrides(config, overrides))

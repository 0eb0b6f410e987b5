"""examples/functional_api.py runs with a few steps, and what it trains works on held-out images."""
import importlib.util
import os

import pytest
from tests.helpers import REPO_ROOT

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
EXAMPLE = os.path.join(REPO_ROOT, 'examples', 'functional_api.py')


def _load_example():
  spec = importlib.util.spec_from_file_location('functional_api_example', EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason='dataset-fashion-mnist missing')
@pytest.mark.parametrize('model', ['mlp', 'cnn'])
def test_functional_api_example_trains_models_that_beat_chance_and_trades_resists_pgd(model):
  results = _load_example().main([f'--data={FASHION_MNIST_DIR}', f'--models={model}',
                                  '--steps=20', '--train_examples=2000', '--test_examples=300'])
  by_objective = {r['objective']: r for r in results}
  assert sorted(by_objective) == ['AMP', 'ERM', 'MDL', 'TRADES']
  for r in results:
    assert r['clean'] > 0.5, r  # 10 classes: chance is 0.1
    assert r['pgd'] < r['clean'] - 0.2, r  # the attack lowers accuracy
  assert by_objective['TRADES']['pgd'] > by_objective['ERM']['pgd'], results

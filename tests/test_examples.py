"""examples/functional_api.py runs with a few steps, and what it trains works on held-out images;
examples/replicas.py's R seeds in one jit(vmap) are the separate runs of those seeds."""
import importlib.util
import os

import chex
import jax
import jax.numpy as jnp
import pytest
import robust_jax as rj
from robust_jax.data import idx
from tests.helpers import REPO_ROOT

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
EXAMPLE = os.path.join(REPO_ROOT, 'examples', 'functional_api.py')
REPLICAS_EXAMPLE = os.path.join(REPO_ROOT, 'examples', 'replicas.py')


def _load_example(path=EXAMPLE, name='functional_api_example'):
  spec = importlib.util.spec_from_file_location(name, path)
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


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason='dataset-fashion-mnist missing')
def test_replicas_example_trains_each_seed_as_its_separate_run_and_the_seeds_differ():
  example = _load_example(REPLICAS_EXAMPLE, 'replicas_example')
  splits = idx.load_idx_folder(FASHION_MNIST_DIR).checked(rj.data.SPECS['fashion_mnist'])
  data = (splits.train.images[:256], splits.train.labels[:256],  # 1 epoch = 4 steps
          jnp.asarray(splits.test.images[:100], jnp.float32) / 255,
          jnp.asarray(splits.test.labels[:100]))
  seeds = (5, 0, 2)  # not 0, 1, 2: replica r must follow its seed, not its index
  replicas, _ = example.train(seeds, 5, *data, batch_size=64)  # one jit(vmap(train_step))
  separate, _ = example.train(seeds, 5, *data, batch_size=64, separate=True)  # jit(train_step)
  for r, seed in enumerate(seeds):
    # Tolerance measured on CPU: largest |replica - separate| after these 5 steps 3.5e-6 for these
    # seeds, at most 7.9e-6 over 9 seeds: the float rounding of grouped convolutions and batched
    # matmuls, which Adam's normalisation and training amplify; 5e-5 is a 6x margin over the worst.
    # The replicas differ from each other by ~1.2.
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[r], replicas),
                                jax.tree.map(lambda x: x[r], separate), atol=5e-5, rtol=0,
                                custom_message=f'replica {r} is not the separate run of seed {seed}')
  for r in range(1, len(seeds)):
    largest = max(float(jnp.max(jnp.abs(x[r] - x[0]))) for x in jax.tree.leaves(replicas))
    assert largest > 0.1, (r, largest)  # init, data order and step keys come from the seed

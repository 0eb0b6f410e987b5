"""experiments/class_similarity_margins.py's measurements against hand computations.

The script defines absl flags that other experiment scripts also define, so it is imported in a
child process, which asserts and exits non-zero on a mismatch.
"""
import subprocess
import sys

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
CHECKS = r'''
import jax.numpy as jnp
import ml_collections
import numpy as np
from configs import class_similarity as config_file
from experiments import class_similarity_margins as script

# Margins z_y - max_{j != y} z_j, negative where misclassified.
np.testing.assert_allclose(script.margins(np.array([[3., 1., 2.], [0., 5., 1.]]), np.array([0, 2])),
                           [1., -4.])

# On a linear model the linearised distance is exact: (z_y - z_o) / ||w_y - w_o||_1.
rng = np.random.default_rng(0)
weights, bias = rng.normal(size=(6, 4)), rng.normal(size=4)
images = rng.uniform(size=(5, 6))
labels, others = np.array([0, 1, 2, 3, 0]), np.array([1, 2, 3, 0, 3])
logits_fn = lambda x: x @ jnp.asarray(weights, jnp.float32) + jnp.asarray(bias, jnp.float32)
expected = (((images @ weights + bias)[np.arange(5), labels] - (images @ weights + bias)[
    np.arange(5), others]) / np.abs(weights[:, labels] - weights[:, others]).sum(0))
got = script.linear_distance(logits_fn, jnp.asarray(images, jnp.float32), jnp.asarray(labels),
                             jnp.asarray(others))
np.testing.assert_allclose(got, expected, rtol=1e-4)

# The targets' margin: S = 0.9 I + 0.1 S~, so log(0.9 / (0.1 max_j S~[y, j])).
similarity = np.load(config_file.FASHION_MNIST_MATRIX)
config = ml_collections.ConfigDict(dict(targets=dict(
    name='class_similarity', matrix_path=config_file.FASHION_MNIST_MATRIX, alpha=0.1)))
np.testing.assert_allclose(script.target_margins(config, 10),
                           np.log(0.9 / (0.1 * similarity.max(1))), rtol=1e-6)
assert script.target_margins(ml_collections.ConfigDict(dict(targets=dict(name='one_hot'))),
                             10) is None
print('ok')
'''


def test_margins_distances_and_target_margins_match_hand_computations():
  result = subprocess.run([sys.executable, '-c', CHECKS], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('ok')

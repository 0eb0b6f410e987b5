"""experiments/autoattack_peer.py runs both AutoAttacks on the same weights (optional torch extra).

On a tiny untrained CNN, 16 images and tiny budgets: the script's comparison runs end to end, both
sides report the same sequence of attacks, and their clean accuracies agree exactly (the twin
holds robust_jax's weights). Skipped without torch and torchattacks.
"""
import jax
import numpy as np
import pytest

pytest.importorskip('torch')
pytest.importorskip('torchattacks')

from experiments import autoattack_peer  # noqa: E402
from robust_jax import attacks, data  # noqa: E402
from robust_jax.models import build_model  # noqa: E402
from robust_jax.config.files import load_config_file  # noqa: E402
from tests import helpers  # noqa: E402


def test_peer_comparison_runs_and_both_sides_agree_on_clean_accuracy():
  config = load_config_file('configs/fashion_mnist_cnn.py')
  config.model.update(widths=(4, 8), hidden_size=16)
  model = build_model(config.model, data.SPECS['fashion_mnist'])
  params, model_state = model.init(jax.random.key(0), (28, 28, 1))
  images = helpers.quadrant_images(16, seed=3)[0].astype(np.float32) / 255
  # Labels = robust_jax's predictions but for 4 examples: a clean accuracy of 12 / 16 to match.
  predicted = np.asarray(model.apply(params, model_state, images, train=False)[0].argmax(-1))
  labels = np.where(np.arange(16) < 4, (predicted + 1) % 10, predicted).astype(np.int32)
  report = autoattack_peer.compare(
      config, params, model_state, images, labels, epsilon=0.1,
      settings=attacks.AutoAttackSettings(apgd_steps=2, num_target_classes=2, fab_steps=2,
                                          square_queries=4), batch_size=16)
  ours, peer = report['robust_jax'], report['torchattacks']
  names = ['clean', 'apgd-ce', 'apgd-t', 'fab-t', 'square']
  assert list(ours['accuracy']) == list(peer['accuracy']) == names
  assert ours['accuracy']['clean'] == peer['accuracy']['clean'] == 12 / 16
  for side in (ours, peer):
    after = list(side['accuracy'].values())
    assert after == sorted(after, reverse=True)
    assert list(side['seconds']) == names[1:] and side['seconds_per_example'] >= 0
  assert report['num_examples'] == 16 and report['settings']['square_queries'] == 4

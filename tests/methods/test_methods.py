"""Tests that check several methods at once, so belong to no one tests/methods/test_<method>.py:
the registered defaults of DropAttack, TRADES and LFM, which the shipped Fashion-MNIST configs use
(`config_defaults.registered`), pinned to the recipes' values (one parametrised test; each case
kills a mutant of its module's defaults)."""
import pytest

from robust_jax import objectives


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1 (experiments/results/mutation_survivors.md,
# where they were tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
# The shipped configs are built from these defaults, so the values are pinned here.
@pytest.mark.parametrize('registry, name, expected', [
    (objectives.WEIGHT_PERTURBATIONS, 'dropattack', dict(
        attack_probability=0.5, num_steps=1, attack_input=True, input_epsilon=1.0,
        input_norm='per_example', attack_weights=True, weight_paths=('Conv_0/kernel',),
        weight_epsilon=0.05, weight_epsilon_relative=True)),
    (objectives.LOSSES, 'trades', dict(beta=6.0, epsilon=0.1, step_size=0.025, num_steps=10,
                                       norm='linf', model_mode='eval')),
    (objectives.FEATURE_MASKS, 'lfm', dict(
        sites=('conv1',), probability=0.15, channel_fraction=0.5, area_range=(0.02, 0.4),
        aspect_range=(0.3, 1 / 0.3), fill='uniform', mode='paper', official_code_samples=8)),
])
def test_registered_method_defaults_are_the_fashion_mnist_recipes(registry, name, expected):
  """`--config.<section>.name=<name>` and the shipped configs take these defaults."""
  assert registry.default_section('', name) == dict(name=name, **expected)

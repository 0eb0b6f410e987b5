"""The attacks' defaults, pinned to the reference implementation's (fra31/auto-attack: APGD's
n_iter, rho and momentum; FAB's n_iter, alpha_max, eta, beta and its default ε per norm, used as
the restart radius; Square's n_queries, p_init and p schedule; AutoAttack's versions, budgets
and n_target_classes).

Nothing else reads a default as a number: a test of an attack passes its own budgets. So a moved
default would go unseen (mutation.toml runs this file for mutants of code run at import).
"""
import importlib
import inspect

from robust_jax import attacks
from robust_jax.attacks.sequence import run_sequence

# The modules, not the functions of the same names that robust_jax.attacks exports.
FAB_MODULE = importlib.import_module('robust_jax.attacks.fab')
SQUARE_MODULE = importlib.import_module('robust_jax.attacks.square')

REFERENCE_DEFAULTS = {
    'apgd': dict(num_steps=100, norm='linf', loss='ce', restarts=1, rho=0.75, momentum=0.75,
                 targeted=False, start='sphere', eot_samples=None),
    'apgd_targeted': dict(num_steps=100, norm='linf', num_target_classes=None,
                          target_class_rank=None, target_labels=None, restarts=1, rho=0.75,
                          momentum=0.75, start='sphere', eot_samples=None),
    'fab': dict(key=None, epsilon=None, norm='linf', num_steps=100, restarts=1, alpha_max=0.1,
                eta=1.05, beta=0.9, targeted=False, target_class_rank=None, num_target_classes=9),
    'square': dict(norm='linf', num_queries=5000, p_init=0.8, restarts=1, targeted=False,
                   target_labels=None, rescale_schedule=False),
    'pgd': dict(norm='linf', random_start=True, restarts=1, loss='ce', targeted=False),
    'fgsm': dict(key=None, norm='linf', random_start=False, step_size=None, loss='ce',
                 targeted=False),
    'autoattack': dict(norm='linf', version='standard', settings=attacks.AutoAttackSettings(),
                       batch_size=500, sharding=None),
}


def _defaults(function):
  return {name: p.default for name, p in inspect.signature(function).parameters.items()
          if p.default is not inspect.Parameter.empty}


def test_attack_keyword_defaults_are_the_references():
  for name, expected in REFERENCE_DEFAULTS.items():
    assert _defaults(getattr(attacks, name)) == expected, name
  assert _defaults(attacks.autoattack_sequence) == REFERENCE_DEFAULTS['autoattack']
  # Not the reference's (its bs is 250): ours, shared, as the chunking decides the random draws.
  assert _defaults(run_sequence) == dict(batch_size=500, sharding=None)


def test_autoattack_budgets_and_versions_are_the_references():
  settings = attacks.AutoAttackSettings()
  assert (settings.apgd_steps, settings.apgd_restarts, settings.num_target_classes,
          settings.fab_steps, settings.fab_restarts, settings.square_queries,
          settings.eot_samples) == (100, None, 9, 100, None, 5000, 20)
  assert attacks.AUTOATTACK_VERSIONS == {
      'standard': ('apgd-ce', 'apgd-t', 'fab-t', 'square'),
      'plus': ('apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t'),
      'rand': ('apgd-ce', 'apgd-dlr')}


def test_square_schedule_and_fab_restart_radius_are_the_references():
  # square.py's p_selection halves p at these query counts (rescaled by n_queries / 10000 only
  # with rescale_schedule); fab's DEFAULT_EPS_DICT_BY_NORM = {'Linf': .3, 'L2': 1.}.
  assert SQUARE_MODULE.P_BREAKPOINTS == (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
  assert _defaults(SQUARE_MODULE.p_schedule) == dict(p_init=0.8, rescale_schedule=False)
  # Rescaled, query i counts as iteration int(i / n_queries * 10000): with 10,001 queries, query
  # 8,001 is iteration 8,000 (not past the last breakpoint), query 8,002 iteration 8,001.
  rescaled = SQUARE_MODULE.p_schedule(10_001, rescale_schedule=True)
  assert (rescaled[8001], rescaled[8002]) == (0.8 / 2 ** 8, 0.8 / 2 ** 9)
  assert FAB_MODULE._RESTART_RADIUS == {'linf': 0.3, 'l2': 1.0}  # pylint: disable=protected-access

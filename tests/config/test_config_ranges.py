"""Every numeric config key has a meaningful range, and the cross-key checks that follow from it
(issue #23, no silent failure): each bad value below was accepted before and trained or evaluated
something meaningless; now it is one line naming the key, the value and why."""
import os

import pytest

from robust_jax.config import defaults as config_defaults, overrides as config_overrides, validation
from robust_jax.config.files import load_config_file
from robust_jax.config.schema import ConfigError
from robust_jax.training import loop as train, optim, workdir
from tests import helpers
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
CIFAR = 'erm.py:cifar10_preact_resnet18'
TEXT = 'text.py:offline_ag_news_gru_erm'
TEXT_DA = 'text.py:offline_ag_news_gru_dropattack'
TEXTCNN = 'text.py:imdb_textcnn_erm'
FGM = 'text.py:offline_ag_news_gru_fgm'
PGD = 'fashion_mnist_adversarial.py:pgd'
FGSM = 'fashion_mnist_adversarial.py:fgsm'
TRADES = 'fashion_mnist_adversarial.py:trades'
AMP = 'amp.py:fashion_mnist'
DA = 'dropattack.py:fashion_mnist'
LFM = 'lfm.py:fashion_mnist'
MDL = 'mdl.py:fashion_mnist'
CS = 'class_similarity.py:fashion_mnist'


def _config(base, changes):
  """The shipped config `base` (None: the defaults) with `changes` {'section.key' or 'key': value}
  set as a config file would set them."""
  config = (config_defaults.default_config() if base is None
            else load_config_file(os.path.join(ROOT, 'configs', base)))
  for key, value in changes.items():
    section, _, name = key.rpartition('.')
    if section:
      config[section][name] = value
    else:
      config[name] = value
  return config


# (id, base config, changes, the exact one-line error)
BAD_CONFIGS = [
    ('dropout_rate_1', None, {'model.dropout_rate': 1.0, 'model.dropout_sites': ('classifier',)},
     'config.model.dropout_rate=1.0: must be >= 0.0 and < 1.0 (a rate of 1 drops every unit: the '
     'model trains at chance)'),
    ('dropout_without_site', None, {'model.dropout_rate': 0.5},
     'config.model.dropout_rate=0.5: drops nothing with config.model.dropout_sites=(); cnn has '
     'dropout sites features, classifier (or use rate 0.0)'),
    ('dropout_site_twice', None,
     {'model.dropout_rate': 0.5, 'model.dropout_sites': ('classifier', 'classifier')},
     "config.model.dropout_sites=('classifier', 'classifier'): must not repeat 'classifier'"),
    ('textcnn_width_twice', TEXTCNN, {'model.filter_widths': (3, 3, 4)},
     'config.model.filter_widths=(3, 3, 4): must not repeat 3'),
    ('cutout_longer_than_image', None, {'dataset.cutout_length': 40},
     'config.dataset.cutout_length=40: must be <= 28, the side of fashion_mnist images (28×28); '
     'a longer square blanks whole images'),
    ('cutout_longer_than_cifar', CIFAR, {'dataset.cutout_length': 33},
     'config.dataset.cutout_length=33: must be <= 32, the side of cifar10 images (32×32); a '
     'longer square blanks whole images'),
    ('cutout_1', CIFAR, {'dataset.cutout_length': 1},
     'config.dataset.cutout_length=1: must be 0 (off) or >= 2 (Cutout zeroes a square of side '
     '2·(length // 2): length 1 zeroes nothing)'),
    ('crop_without_padding', None, {'dataset.augmentation': 'crop', 'dataset.crop_padding': 0},
     "config.dataset.crop_padding=0: augmentation 'crop' without padding leaves every image as "
     "it is; use crop_padding >= 1 or augmentation 'none'"),
    ('csv_source_for_images', None, {'dataset.source': 'csv'},
     "config.dataset.source='csv': fashion_mnist is image data; use one of idx, tfds, npz"),
    ('idx_source_for_text', TEXT, {'dataset.source': 'idx'},
     "config.dataset.source='idx': ag_news is text data; use one of csv, tfds"),
    ('text_autoaugment', TEXT, {'dataset.autoaugment': 'cifar10'},
     "config.dataset.autoaugment='cifar10': ag_news is text, which has no augmentation; use "
     "'none'"),
    ('text_cutout', TEXT, {'dataset.cutout_length': 16},
     'config.dataset.cutout_length=16: ag_news is text, which has no augmentation; use 0'),
    ('text_crop', TEXT, {'dataset.augmentation': 'crop_flip'},
     "config.dataset.augmentation='crop_flip': ag_news is text; use 'default' or 'none'"),
    ('vocab_size_2', TEXT, {'dataset.vocab_size': 2},
     'config.dataset.vocab_size=2: must be >= 3 (<pad> and <unk> take 2 ids: vocab_size 2 makes '
     'every word <unk>)'),
    ('csv_files_same', TEXT, {'dataset.csv_files': ('train.csv', 'train.csv')},
     "config.dataset.csv_files=('train.csv', 'train.csv'): must not repeat 'train.csv' (testing "
     'on the training file measures nothing)'),
    ('csv_files_three', TEXT, {'dataset.csv_files': ('a.csv', 'b.csv', 'c.csv')},
     "config.dataset.csv_files=('a.csv', 'b.csv', 'c.csv'): must be two file names, (train file, "
     'test file)'),
    ('boundaries_unsorted', CIFAR, {'optimizer.boundaries_epochs': (150.0, 100.0)},
     'config.optimizer.boundaries_epochs=(150.0, 100.0): must be strictly increasing (each '
     'boundary multiplies the learning rate by decay_factor once, in order)'),
    ('boundaries_repeated', CIFAR, {'optimizer.boundaries_epochs': (100.0, 100.0)},
     'config.optimizer.boundaries_epochs=(100.0, 100.0): must be strictly increasing (each '
     'boundary multiplies the learning rate by decay_factor once, in order)'),
    ('boundaries_without_piecewise', None, {'optimizer.boundaries_epochs': (1.0, 2.0)},
     "config.optimizer.boundaries_epochs=(1.0, 2.0): only schedule 'piecewise' reads them, and "
     "config.optimizer.schedule='cosine'; use boundaries_epochs=() or schedule piecewise"),
    ('piecewise_without_boundaries', None, {'optimizer.schedule': 'piecewise'},
     "config.optimizer.boundaries_epochs=(): schedule 'piecewise' needs at least one boundary "
     "(without one the learning rate is constant: use schedule 'constant')"),
    ('warmup_longer_than_run', None, {'optimizer.warmup_epochs': 3.0},
     'config.optimizer.warmup_epochs=3.0: must be < config.train.num_epochs=3 (the learning rate '
     'would still be rising when the run ends)'),
    ('warmup_with_piecewise', CIFAR, {'optimizer.warmup_epochs': 5.0},
     "config.optimizer.warmup_epochs=5.0: schedule 'piecewise' has no warm-up (only constant and "
     'cosine do); use warmup_epochs=0.0'),
    ('warmup_with_onecycle', None,
     {'optimizer.schedule': 'onecycle', 'optimizer.warmup_epochs': 1.0},
     "config.optimizer.warmup_epochs=1.0: schedule 'onecycle' has no warm-up (only constant and "
     'cosine do); use warmup_epochs=0.0'),
    ('decay_factor_above_1', CIFAR, {'optimizer.decay_factor': 2.0},
     'config.optimizer.decay_factor=2.0: must be > 0.0 and <= 1.0 (each boundary multiplies the '
     'learning rate by it: 0 stops learning, above 1 raises the rate)'),
    ('decay_factor_0', CIFAR, {'optimizer.decay_factor': 0.0},
     'config.optimizer.decay_factor=0.0: must be > 0.0 and <= 1.0 (each boundary multiplies the '
     'learning rate by it: 0 stops learning, above 1 raises the rate)'),
    ('momentum_1', CIFAR, {'optimizer.momentum': 1.0},
     'config.optimizer.momentum=1.0: must be >= 0.0 and < 1.0 (momentum 1 never forgets a '
     'gradient: the steps grow without bound)'),
    ('nesterov_without_momentum', CIFAR, {'optimizer.momentum': 0.0},
     'config.optimizer.nesterov=True: Nesterov momentum needs config.optimizer.momentum > 0, got '
     '0.0'),
    ('nesterov_with_adam', None, {'optimizer.nesterov': True},
     'config.optimizer.nesterov=True: only optimizer sgd has Nesterov momentum, and '
     "config.optimizer.name='adam'"),
    ('seed_2_32', None, {'seed': 2**32},
     'config.seed=4294967296: must be >= 0 and <= 4294967295 (jax.random.key keeps 32 bits: seed '
     '2**32 draws the same numbers as seed 0)'),
    ('robustness_seed_2_32', None, {'robustness.seed': 2**32},
     'config.robustness.seed=4294967296: must be >= 0 and <= 4294967295 (jax.random.key keeps 32 '
     'bits: seed 2**32 draws the same numbers as seed 0)'),
    ('epsilon_overflows', None, {'robustness.epsilons': ('0', '1e400')},
     "config.robustness.epsilons=('0', '1e400'): '1e400' must be a finite number (a float would "
     'be inf)'),
    ('epsilon_underflows', None, {'robustness.epsilons': ('0', '1e-400')},
     "config.robustness.epsilons=('0', '1e-400'): '1e-400' must be 0 or a number a float holds "
     '(this one would be 0.0)'),
    ('epsilon_float32_zero', None, {'robustness.epsilons': ('0', '1e-300')},
     "config.robustness.epsilons=('0', '1e-300'): '1e-300' must be 0 or a number float32 holds "
     '(float32 makes it 0.0; the smallest nonzero float32 is 1.4e-45)'),
    ('epsilon_negative', None, {'robustness.epsilons': ('0', '-8/255')},
     "config.robustness.epsilons=('0', '-8/255'): '-8/255' must be >= 0"),
    ('epsilon_inf', None, {'robustness.epsilons': ('inf',)},
     "config.robustness.epsilons=('inf',): 'inf' must be a finite number as text, e.g. '8/255' "
     "or '0.1'"),
    ('epsilon_not_text', None, {'robustness.epsilons': (0.1,)},
     "config.robustness.epsilons=(0.1,): 0.1 must be text, e.g. '0.1' or '8/255' (each ε is "
     'reported as written)'),
    ('epsilon_repeated', None, {'robustness.epsilons': ('0', '0.1', '1/10')},
     "config.robustness.epsilons=('0', '0.1', '1/10'): '1/10' repeats the ε of '0.1'; give each "
     'ε once'),
    ('epsilons_empty', None, {'robustness.epsilons': ()},
     "config.robustness.epsilons=(): must hold at least one ε as text, e.g. ('0', '8/255')"),
    ('large_epsilon_0', None, {'robustness.large_epsilon': '0'},
     "config.robustness.large_epsilon='0': must be > 0 (the sanity check that a large ε drives "
     'accuracy to chance needs an ε > 0)'),
    ('large_epsilon_overflows', None, {'robustness.large_epsilon': '1e400'},
     "config.robustness.large_epsilon='1e400': must be a finite number (a float would be inf)"),
    ('attack_repeated', None, {'robustness.attacks': ('pgd', 'pgd')},
     "config.robustness.attacks=('pgd', 'pgd'): must not repeat 'pgd'"),
    ('smoothing_1', None, {'targets': {'name': 'label_smoothing', 'smoothing': 1.0}},
     'config.targets.smoothing=1.0: must be >= 0.0 and < 1.0 (smoothing 1 makes every target '
     'uniform: nothing to learn)'),
    ('class_similarity_alpha_1', CS, {'targets.alpha': 1.0},
     'config.targets.alpha=1.0: must be >= 0.0 and < 1.0 (α = 1 gives the true class target 0: '
     'the model learns to avoid it)'),
    ('pgd_epsilon_0', PGD, {'adversary.epsilon': 0.0},
     'config.adversary.epsilon=0.0: must be > 0.0 (ε = 0 leaves the images clean: use adversary '
     "'none')"),
    ('pgd_epsilon_in_255_units', PGD, {'adversary.epsilon': 8.0},
     'config.adversary.epsilon=8.0: must be < 1 for norm linf on fashion_mnist (28×28×1 pixels '
     'in [0, 1]): a ball that large holds every image (ε is in [0, 1] pixel units: 8/255 is '
     '0.0314)'),
    ('pgd_l2_epsilon_reaches_every_image', PGD, {'adversary.norm': 'l2', 'adversary.epsilon': 28.0},
     'config.adversary.epsilon=28.0: must be < 28 for norm l2 on fashion_mnist (28×28×1 pixels '
     'in [0, 1]): a ball that large holds every image (ε is in [0, 1] pixel units: 8/255 is '
     '0.0314)'),
    ('fgsm_epsilon_0', FGSM, {'adversary.epsilon': 0},
     'config.adversary.epsilon=0.0: must be > 0.0 (ε = 0 leaves the images clean: use adversary '
     "'none')"),
    ('trades_epsilon_0', TRADES, {'loss.epsilon': 0.0},
     'config.loss.epsilon=0.0: must be > 0.0 (ε = 0 makes the robust term 0: use loss '
     "'cross_entropy')"),
    ('trades_beta_0', TRADES, {'loss.beta': 0.0},
     'config.loss.beta=0.0: must be > 0.0 (β = 0 drops the robust term: use loss '
     "'cross_entropy')"),
    ('trades_epsilon_1', TRADES, {'loss.epsilon': 1.0},
     'config.loss.epsilon=1.0: must be < 1 for norm linf on fashion_mnist (28×28×1 pixels in [0, '
     '1]): a ball that large holds every image (ε is in [0, 1] pixel units: 8/255 is 0.0314)'),
    ('amp_epsilon_0', AMP, {'weight_perturbation.epsilon': 0.0},
     'config.weight_perturbation.epsilon=0.0: must be > 0.0 (ε = 0 leaves the weights '
     "unperturbed: use weight_perturbation 'none')"),
    ('amp_inner_lr_0', AMP, {'weight_perturbation.inner_lr': 0.0},
     'config.weight_perturbation.inner_lr=0.0: must be > 0.0 (ζ = 0 never moves the perturbation '
     "from 0: use weight_perturbation 'none')"),
    ('dropattack_probability_0', DA, {'weight_perturbation.attack_probability': 0.0},
     'config.weight_perturbation.attack_probability=0.0: must be > 0.0 and <= 1.0 (probability 0 '
     'attacks no coordinate)'),
    ('dropattack_input_epsilon_0', DA, {'weight_perturbation.input_epsilon': 0.0},
     'config.weight_perturbation.input_epsilon=0.0: must be > 0 with attack_input=True (ε = 0 '
     'repeats the clean loss); or set attack_input=False'),
    ('dropattack_weight_epsilon_0', DA, {'weight_perturbation.weight_epsilon': 0.0},
     'config.weight_perturbation.weight_epsilon=0.0: must be > 0 with attack_weights=True (ε = 0 '
     'repeats the clean loss); or set attack_weights=False'),
    ('dropattack_no_weight_paths', DA, {'weight_perturbation.weight_paths': ()},
     'config.weight_perturbation.weight_paths=(): attack_weights=True needs at least one '
     "parameter path, e.g. ('Conv_0/kernel',); or set attack_weights=False"),
    ('dropattack_weight_path_twice', DA,
     {'weight_perturbation.weight_paths': ('Conv_0/kernel', 'Conv_0/kernel')},
     "config.weight_perturbation.weight_paths=('Conv_0/kernel', 'Conv_0/kernel'): must not "
     "repeat 'Conv_0/kernel'"),
    ('dropattack_embedding_input_epsilon_0', TEXT_DA, {'weight_perturbation.input_epsilon': 0.0},
     'config.weight_perturbation.input_epsilon=0.0: must be > 0 with attack_input=True (ε = 0 '
     'repeats the clean loss); or set attack_input=False'),
    ('embedding_fgm_epsilon_0', FGM, {'adversary.epsilon': 0.0},
     'config.adversary.epsilon=0.0: must be > 0.0 (ε = 0 leaves the embeddings clean: use '
     "adversary 'none')"),
    ('lfm_probability_0', LFM, {'feature_mask.probability': 0.0},
     'config.feature_mask.probability=0.0: must be > 0.0 and <= 1.0 (probability 0 never masks: '
     "use feature_mask 'none')"),
    ('lfm_channel_fraction_0', LFM, {'feature_mask.channel_fraction': 0.0},
     'config.feature_mask.channel_fraction=0.0: must be > 0.0 and <= 1.0 (fraction 0 masks no '
     "channel: use feature_mask 'none')"),
    ('lfm_area_range_reversed', LFM, {'feature_mask.area_range': (0.4, 0.02)},
     'config.feature_mask.area_range=(0.4, 0.02): must be (low, high) with low <= high'),
    ('lfm_area_range_0', LFM, {'feature_mask.area_range': (0.0, 0.4)},
     'config.feature_mask.area_range=(0.0, 0.4): a sequence of exactly 2 items, each must be > '
     '0.0 and <= 1.0 (finite)'),
    ('lfm_area_range_three', LFM, {'feature_mask.area_range': (0.02, 0.2, 0.4)},
     'config.feature_mask.area_range=(0.02, 0.2, 0.4): a sequence of exactly 2 items, each must '
     'be > 0.0 and <= 1.0 (finite)'),
    ('lfm_aspect_range_reversed', LFM, {'feature_mask.aspect_range': (3.3, 0.3)},
     'config.feature_mask.aspect_range=(3.3, 0.3): must be (low, high) with low <= high'),
    ('lfm_site_twice', LFM, {'feature_mask.sites': ('conv1', 'conv1')},
     "config.feature_mask.sites=('conv1', 'conv1'): must not repeat 'conv1'"),
    ('no_feature_mask_with_sites', None, {'feature_mask.sites': ('conv1',)},
     "config.feature_mask.sites=('conv1',): feature_mask 'none' masks no site; use sites=() or a "
     'mask, e.g. --config.feature_mask.name=lfm'),
    ('mdl_one_subnetwork', MDL, {'loss.num_subnetworks': 1},
     'config.loss.num_subnetworks=1: must be >= 2 (orthogonality compares K >= 2 sub-networks)'),
    ('process_id_not_below_count', None,
     {'distributed.initialize': True, 'distributed.coordinator_address': '10.0.0.1:1234',
      'distributed.num_processes': 2, 'distributed.process_id': 2},
     'config.distributed.process_id=2: must be < config.distributed.num_processes=2 (processes '
     'are numbered from 0)'),

    ('dropattack_embedding_input_path_twice', TEXT_DA,
     {'weight_perturbation.input_paths': ('embedding/embedding', 'embedding/embedding')},
     "config.weight_perturbation.input_paths=('embedding/embedding', 'embedding/embedding'): must "
     "not repeat 'embedding/embedding'"),
    ('lfm_aspect_range_0', LFM, {'feature_mask.aspect_range': (0.0, 3.3)},
     'config.feature_mask.aspect_range=(0.0, 3.3): a sequence of exactly 2 items, each must be > '
     '0.0 (finite)'),
    ('multihost_without_initialize', None, {'distributed.num_processes': 2},
     'config.distributed.num_processes=2: read only with config.distributed.initialize=True '
     '(without it each process trains alone, on its own devices)'),
    ('coordinator_without_initialize', None, {'distributed.coordinator_address': '10.0.0.1:1234'},
     "config.distributed.coordinator_address='10.0.0.1:1234': read only with "
     'config.distributed.initialize=True (without it each process trains alone, on its own '
     'devices)'),
    ('process_id_without_coordinator', None,
     {'distributed.initialize': True, 'distributed.process_id': 1},
     'config.distributed.process_id=1: read only with a config.distributed.coordinator_address '
     "('' lets JAX detect the cluster, this process included)"),
]


@pytest.mark.parametrize('base,changes,expected', [case[1:] for case in BAD_CONFIGS],
                         ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_is_one_line(base, changes, expected):
  config = _config(base, changes)
  with pytest.raises(ConfigError) as error:
    validation.validate_config(config)
  assert str(error.value) == expected


def test_the_bad_configs_are_all_different_and_each_base_is_valid():
  assert len({case[0] for case in BAD_CONFIGS}) == len(BAD_CONFIGS) >= 60
  assert len({case[3] for case in BAD_CONFIGS}) >= len(BAD_CONFIGS) - 4  # a few share a message
  for base in {case[1] for case in BAD_CONFIGS}:
    validation.validate_config(_config(base, {}))


@pytest.mark.parametrize('changes', [
    {'model.dropout_rate': 0.999, 'model.dropout_sites': ('classifier',)},
    {'model.dropout_sites': ('classifier',)},  # rate 0 turns dropout off, sites or not
    {'dataset.cutout_length': 28}, {'dataset.cutout_length': 2},
    {'dataset.augmentation': 'crop_flip', 'dataset.crop_padding': 0},  # a flip alone
    {'optimizer.schedule': 'piecewise', 'optimizer.boundaries_epochs': (1.0, 2.999)},
    {'optimizer.decay_factor': 1.0}, {'optimizer.momentum': 0.999},
    {'optimizer.warmup_epochs': 2.9}, {'seed': 2**32 - 1},
    {'robustness.epsilons': ('0', '8/255', '1e-30', '12.5')},
    {'robustness.large_epsilon': '1/255'},
    {'targets': {'name': 'label_smoothing', 'smoothing': 0.999}},
    {'distributed.initialize': True, 'distributed.coordinator_address': '10.0.0.1:1234',
     'distributed.num_processes': 2, 'distributed.process_id': 1},
    {'distributed.initialize': True},  # JAX detects the cluster
    # a warm-up or boundaries in epochs are checked in steps once the data are loaded
    {'train.num_steps': 10, 'optimizer.warmup_epochs': 5.0},
])
def test_values_at_the_edge_of_the_ranges_are_valid(changes):
  validation.validate_config(_config(None, changes))


def test_adversarial_epsilons_below_the_radius_that_holds_every_image_are_valid():
  validation.validate_config(_config(PGD, {'adversary.epsilon': 0.99}))
  validation.validate_config(_config(PGD, {'adversary.norm': 'l2', 'adversary.epsilon': 27.9}))
  validation.validate_config(_config(CIFAR, {}))  # L∞ robustness evaluation up to 64/255
  # A PGD step larger than ε is a legitimate recipe (e.g. FGSM-AT's α = 1.25 ε): not refused.
  validation.validate_config(_config(PGD, {'adversary.step_size': 0.5}))


# ------------------------------------------------------------------- the schedule in steps
RUN_LENGTH = [
    # (optimizer changes, steps per epoch, total steps, the exact error)
    ({'schedule': 'piecewise', 'boundaries_epochs': (0.04,)}, 10, 100,
     'config.optimizer.boundaries_epochs=(0.04,): 0.04 epochs is step 0 at 10 steps per epoch, '
     'so its decay applies from the start; use a later boundary'),
    ({'schedule': 'piecewise', 'boundaries_epochs': (1.0, 1.04)}, 10, 100,
     'config.optimizer.boundaries_epochs=(1.0, 1.04): 1.04 epochs is step 10 at 10 steps per '
     'epoch, as is 1.0, so their decays apply once; use boundaries at least one step apart'),
    ({'warmup_epochs': 0.01}, 10, 100,
     'config.optimizer.warmup_epochs=0.01: rounds to 0 steps at 10 steps per epoch, so there is '
     'no warm-up; use 0.0 or a longer warm-up'),
    ({'warmup_epochs': 5.0}, 10, 50,
     "config.optimizer.warmup_epochs=5.0: 50 steps, must be fewer than the run's 50 steps (the "
     'learning rate would still be rising when the run ends)'),
]


@pytest.mark.parametrize('changes,steps_per_epoch,total_steps,expected', RUN_LENGTH)
def test_warmup_and_boundaries_must_fall_inside_the_run_in_steps(changes, steps_per_epoch,
                                                                  total_steps, expected):
  config = config_defaults.default_config()
  config.optimizer.update(changes)
  with pytest.raises(ConfigError) as error:
    optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps)
  assert str(error.value) == expected
  optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps, validate_steps=False)


def test_boundaries_after_the_end_of_a_shortened_recipe_are_allowed_and_named():
  """A recipe run for fewer epochs or steps than its schedule (a quick look, a smoke test) keeps
  its boundaries; `unused_boundaries` names those whose decay never applies, the trainer prints
  them, and the schedule is the recipe's up to the end."""
  for changes in ({'train.num_epochs': 1}, {'train.num_steps': 1000}, {'train.num_epochs': 120}):
    validation.validate_config(_config(CIFAR, changes))
  config = _config(CIFAR, {'train.num_epochs': 120})
  _, schedule = optim.make_optimizer(config.optimizer, 390, 120 * 390)
  assert optim.unused_boundaries(config.optimizer, 390, 120 * 390) == (150.0,)
  assert optim.unused_boundaries(config.optimizer, 390, 200 * 390) == ()
  assert optim.unused_boundaries(config.optimizer, 390, 100 * 390) == (100.0, 150.0)
  assert [float(schedule(s)) for s in (100 * 390 - 1, 100 * 390, 120 * 390 - 1)] == pytest.approx(
      [0.1, 0.01, 0.01])


# ------------------------------------------------------------------- overrides
BAD_OVERRIDES = [
    ('model.widths="(8,16)"', 'config.model.widths=\'"(8,16)"\': read as the one string '
     '\'(8,16)\'; write a tuple in double quotes, --config.model.widths="(8, 16)"'),
    ('model.widths=8;16', 'config.model.widths=\'8;16\': must be a tuple of numbers, like its '
     'current value (32, 64); e.g. --config.model.widths="(32, 64)"'),
    ('robustness.epsilons=0,8/255', "config.robustness.epsilons='0,8/255': read as the one "
     'string \'0,8/255\'; write a tuple in double quotes, '
     '--config.robustness.epsilons="(\'0\', \'8/255\')"'),
    ('robustness.epsilons=(0, 8/255)', "config.robustness.epsilons='(0, 8/255)': read as the "
     'one string \'(0, 8/255)\'; write a tuple in double quotes, '
     '--config.robustness.epsilons="(\'0\', \'8/255\')"'),
    ('model.dropout_sites=features,classifier', "config.model.dropout_sites='features,"
     "classifier': read as the one string 'features,classifier'; write a tuple in double quotes, "
     '--config.model.dropout_sites="(\'features\', \'classifier\')"'),
    ('model.dropout_sites=(classifier)', "config.model.dropout_sites='(classifier)': read as the "
     'one string \'(classifier)\'; write a tuple in double quotes, '
     '--config.model.dropout_sites="(\'classifier\',)"'),
]


@pytest.mark.parametrize('override,expected', BAD_OVERRIDES)
def test_a_sequence_read_as_one_string_is_refused(override, expected):
  with pytest.raises(ConfigError) as error:
    config_overrides.apply_overrides(config_defaults.default_config(), [override])
  assert str(error.value) == expected


@pytest.mark.parametrize('override,expected', [
    ('model.widths=8,16', (8, 16)), ('model.widths=(8, 16)', (8, 16)),
    ('optimizer.boundaries_epochs=100,150', (100, 150)),
    ('model.dropout_sites=classifier', ('classifier',)),  # a bare word is a 1-tuple
    ('robustness.epsilons=8/255', ('8/255',)),
    ("robustness.epsilons=('0', '8/255')", ('0', '8/255')),
])
def test_sequences_written_as_documented_still_parse(override, expected):
  config = config_overrides.apply_overrides(config_defaults.default_config(), [override])
  section, key = override.partition('=')[0].split('.')
  assert tuple(config[section][key]) == expected


# ------------------------------------------------------------------- resuming a shorter run
def test_allow_config_change_refuses_num_steps_below_the_step_reached(finished_run, eight_devices):
  config, path = finished_run
  config = config.copy_and_resolve_references()
  config.train.num_steps = 5  # the newest checkpoint is at step 8
  before = helpers.snapshot(path)
  with pytest.raises(workdir.WorkdirError) as error:
    train.train_and_evaluate(config, path, devices=eight_devices[:1], allow_config_change=True)
  assert str(error.value) == (
      f'workdir {path}: config.train.num_steps=5 ends before step 8, its newest checkpoint, so '
      'the weights there would not be the run the config describes; use a new --workdir, or a '
      'run of at least 8 steps')
  assert helpers.snapshot(path) == before  # nothing written


def test_allow_config_change_refuses_epochs_below_the_step_reached(finished_run):
  """Given the steps per epoch, `claim` refuses num_epochs × steps per epoch below the newest
  checkpoint's step too (here 4 steps per epoch, as if the batch had doubled); a run that reaches
  it is accepted."""
  config, path = finished_run
  config = config.copy_and_resolve_references()
  config.optimizer.learning_rate = 0.003
  before = helpers.snapshot(path)
  with pytest.raises(workdir.WorkdirError) as error:
    workdir.claim(path, config, checkpoint_step=8, allow_config_change=True, steps_per_epoch=4)
  assert str(error.value) == (
      f'workdir {path}: config.train.num_epochs=1 (4 steps at 4 per epoch) ends before step 8, '
      'its newest checkpoint, so the weights there would not be the run the config describes; '
      'use a new --workdir, or a run of at least 8 steps')
  assert helpers.snapshot(path) == before
  config.train.num_steps = 8  # ends at the checkpoint: nothing left to train, but consistent
  workdir._check_resume(path, config, True, 8, 4)  # pylint: disable=protected-access


@pytest.mark.parametrize('override, expected', [
    ('optimizer.learning_rate=1e-300',
     'config.optimizer.learning_rate=1e-300: must be 0 or a number float32 holds (float32 makes '
     'it 0.0; the smallest nonzero float32 is 1.4e-45)'),
    ('optimizer.weight_decay=1e300',
     'config.optimizer.weight_decay=1e+300: must be a number float32 holds (float32 makes it inf; '
     'the largest float32 is 3.4e+38)'),
])
def test_a_real_value_that_float32_cannot_hold_is_refused(override, expected):
  config = config_overrides.apply_overrides(config_defaults.default_config(), [override])
  with pytest.raises(ConfigError) as error:
    validation.validate_config(config)
  assert str(error.value) == expected

"""Validates a whole experiment config before anything is compiled.

`validate_config(config)` raises `ConfigError` with one line naming the first bad key, its value and
what is allowed. Sections resolved in a registry are validated against the schema the chosen
component declares, then each chosen component cross-checks the rest of the config.
"""
from __future__ import annotations

from robust_jax import data, models, objectives
from robust_jax.config import schema as cs
from robust_jax.evaluation import robustness
from robust_jax.training import optim, replicas
from robust_jax import methods  # noqa: F401  (registers every method)

__all__ = ['DISTRIBUTED_SCHEMA', 'EVAL_SCHEMA', 'PLAIN_SECTIONS', 'TOP_LEVEL', 'TRAIN_SCHEMA',
           'validate_config']

TRAIN_SCHEMA: cs.Schema = {
    'batch_size': cs.integer(1),  # global batch, split over the devices the run uses
    'num_epochs': cs.integer(1),
    'num_steps': cs.integer(0),  # > 0: train exactly this many steps instead of num_epochs
    'log_every_steps': cs.integer(1),
    'eval_every_epochs': cs.integer(1),
    'checkpoint_every_steps': cs.integer(1),
    'checkpoint_every_minutes': cs.real(0.0),  # also checkpoint by wall time; 0 disables
    'max_checkpoints_to_keep': cs.integer(1),
    # log ‖∇θ‖ every step: one more pass over the gradients, about 3 % of a small CNN's step on
    # CPU (measured with experiments/benchmark.py), so off unless asked for.
    'log_grad_norm': cs.boolean(),
    # what convolutions and hidden matmuls compute in; parameters, optimizer state, batch-norm
    # statistics, logits, losses and attacks stay float32 (`robust_jax.models.base`).
    'compute_dtype': cs.one_of(*models.COMPUTE_DTYPES, note='float16 would need loss scaling, '
                               'which robust_jax does not do'),
    # the first N devices of each process (0 = all); at most the process's device count
    # (`sharding.select_devices`). Changes how the batch is split, not what a step computes.
    'num_devices': cs.integer(0),
    # refuse to train when every device is a CPU (`sharding.require_accelerator`): True in the
    # paper-scale recipes.
    'require_accelerator': cs.boolean(),
    # the metric that picks the best checkpoint (W/best): 'clean' or 'robust' accuracy, on the
    # validation split when dataset.validation_examples > 0, else on the test set
    # (`training.periodic_evaluation`)
    'select_by': cs.one_of('clean', 'robust'),
    # replicas (`robust_jax.training.replicas`): the seeds of R runs trained in one program
    # (() = the config's seed alone), config keys swept across them and one value per key per
    # point, and how the step maps over them
    'seeds': cs.sequence_of(cs.seed(), unique=True),
    'sweep': cs.sequence_of(cs.text(), unique=True),
    'sweep_values': cs.sequence_of(cs.Field((int, float, tuple, list), allowed='a number, or a '
                                            'tuple of one number per swept key')),
    'replica_batching': cs.one_of(*replicas.BATCHINGS),
}
EVAL_SCHEMA: cs.Schema = {
    'batch_size': cs.integer(1),
    'num_examples': cs.integer(0),  # clean evaluation on the first N test examples; 0 = all
    # > 0: robust accuracy during training (the robustness section's PGD at its largest ε) on
    # the first N validation and test examples; 0 = off
    'robust_examples': cs.integer(0),
}
DISTRIBUTED_SCHEMA: cs.Schema = {
    'initialize': cs.boolean(),  # call jax.distributed.initialize()
    'coordinator_address': cs.text(),  # '' = let JAX detect the cluster
    'num_processes': cs.integer(1),
    'process_id': cs.integer(0),  # < num_processes (`validate_config`)
}
PLAIN_SECTIONS: dict[str, cs.Schema] = {
    'dataset': data.SCHEMA, 'optimizer': optim.SCHEMA, 'train': TRAIN_SCHEMA,
    'eval': EVAL_SCHEMA, 'distributed': DISTRIBUTED_SCHEMA, 'robustness': robustness.SCHEMA,
}
TOP_LEVEL = ('seed', 'model', *PLAIN_SECTIONS, *objectives.SECTIONS)


def validate_config(config) -> None:
  unknown = sorted(set(config.keys()) - set(TOP_LEVEL))
  if unknown:
    raise cs.ConfigError(f'config.{unknown[0]}: unknown section; known: {", ".join(TOP_LEVEL)}')
  missing = [key for key in TOP_LEVEL if key not in config]
  if missing:
    raise cs.ConfigError(f'config.{missing[0]}: missing required section')
  cs.seed().check('config.seed', config.seed)
  for name, schema in PLAIN_SECTIONS.items():
    cs.check_section(f'config.{name}', config[name], schema)
  _check_distributed(config.distributed)
  _check_dataset(config.dataset)
  _check_selection(config)
  optim.check(config)
  models.validate(config.model)
  models.check_dataset(config.model, data.spec_for(config.dataset))
  entries = [registry.validate(f'config.{name}', config[name])
             for name, registry in objectives.SECTIONS.items()]
  _, feature_sites = models.model_sites(config.model)
  for site in config.feature_mask.sites:
    if site not in feature_sites:
      raise cs.ConfigError(
          f'config.feature_mask.sites={tuple(config.feature_mask.sites)!r}: {config.model.name} '
          f'has feature sites {", ".join(feature_sites) or "none"}')
  for entry in entries:
    if entry.check is not None:
      entry.check(config)
  models.check_dropout(config.model)  # after the components: MDL explains its own need of dropout
  for replica in replicas.replica_specs(config):
    try:
      validate_config(replica.config)
    except cs.ConfigError as error:
      raise cs.ConfigError(f'replica {replica.name}: {error}') from None


_DISTRIBUTED_DEFAULTS = {'coordinator_address': '', 'num_processes': 1, 'process_id': 0}


def _refuse_set_keys(distributed, keys: tuple[str, ...], read_only_with: str) -> None:
  """ConfigError for the first of `keys` set away from its default: it is read only with
  `read_only_with`."""
  for key in keys:
    if distributed[key] != _DISTRIBUTED_DEFAULTS[key]:
      raise cs.ConfigError(f'config.distributed.{key}={distributed[key]!r}: read only with '
                           f'{read_only_with}')


def _check_distributed(distributed) -> None:
  if not distributed.initialize:
    _refuse_set_keys(distributed, ('coordinator_address', 'num_processes', 'process_id'),
                     'config.distributed.initialize=True (without it each process trains alone, '
                     'on its own devices)')
  elif not distributed.coordinator_address:
    _refuse_set_keys(distributed, ('num_processes', 'process_id'),
                     "a config.distributed.coordinator_address ('' lets JAX detect the cluster, "
                     'this process included)')
  if distributed.process_id >= distributed.num_processes:
    raise cs.ConfigError(
        f'config.distributed.process_id={distributed.process_id}: must be < '
        f'config.distributed.num_processes={distributed.num_processes} (processes are numbered '
        'from 0)')


def _check_selection(config) -> None:
  """train.select_by and eval.robust_examples against each other and the data's modality."""
  if config.train.select_by == 'robust' and not config.eval.robust_examples:
    raise cs.ConfigError("config.train.select_by='robust': needs config.eval.robust_examples > 0 "
                         '(how many validation or test examples the PGD check attacks)')
  if config.eval.robust_examples and data.spec_for(config.dataset).modality == 'text':
    raise cs.ConfigError(f'config.eval.robust_examples={config.eval.robust_examples}: '
                         f'{config.dataset.name} is text (token ids), which the pixel PGD check '
                         'cannot attack; use 0')


def _check_dataset(dataset) -> None:
  """The dataset keys against the dataset's modality and image size (`data.spec_for`)."""
  spec = data.spec_for(dataset)
  allowed = data.TEXT_SOURCES if spec.modality == 'text' else data.IMAGE_SOURCES
  if dataset.source not in allowed:
    raise cs.ConfigError(f'config.dataset.source={dataset.source!r}: {spec.name} is '
                         f'{spec.modality} data; use one of {", ".join(allowed)}')
  if spec.modality == 'text':  # text has no augmentation: refuse what would be ignored
    if dataset.augmentation not in ('default', 'none'):
      raise cs.ConfigError(f'config.dataset.augmentation={dataset.augmentation!r}: '
                           f"{spec.name} is text; use 'default' or 'none'")
    if dataset.autoaugment != 'none':
      raise cs.ConfigError(f'config.dataset.autoaugment={dataset.autoaugment!r}: {spec.name} is '
                           "text, which has no augmentation; use 'none'")
    if dataset.cutout_length:
      raise cs.ConfigError(f'config.dataset.cutout_length={dataset.cutout_length}: {spec.name} '
                           'is text, which has no augmentation; use 0')
    return
  height, width = spec.image_shape[:2]
  if dataset.cutout_length == 1:
    raise cs.ConfigError('config.dataset.cutout_length=1: must be 0 (off) or >= 2 (Cutout '
                         'zeroes a square of side 2·(length // 2): length 1 zeroes nothing)')
  if dataset.cutout_length > min(height, width):
    raise cs.ConfigError(
        f'config.dataset.cutout_length={dataset.cutout_length}: must be <= {min(height, width)}, '
        f'the side of {spec.name} images ({height}×{width}); a longer square blanks whole images')
  if data.augmentation_for(dataset) == 'crop' and dataset.crop_padding == 0:
    raise cs.ConfigError("config.dataset.crop_padding=0: augmentation 'crop' without padding "
                         "leaves every image as it is; use crop_padding >= 1 or augmentation "
                         "'none'")

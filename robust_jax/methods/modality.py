"""Which data a method's config section needs: the one place that reads `DatasetSpec.modality`.

Pixel attacks (adversary 'pgd' / 'fgsm', loss 'trades', DropAttack's input attack) perturb images
in [0, 1]; the embedding attacks ('embedding_fgm' / 'embedding_pgd', 'dropattack_embedding')
perturb a text model's embeddings. Each adapter's config check states its modality as data:

    modality.require(config, 'image', "config.loss.name='trades': attacks pixels",
                     "use loss 'cross_entropy' with adversary 'embedding_pgd'")
"""
from __future__ import annotations

from robust_jax.config import schema as cs
from robust_jax.data.specs import SPECS

__all__ = ['DESCRIPTIONS', 'require']

# How an error names each modality's data.
DESCRIPTIONS = {'image': 'image data', 'text': 'text (token ids)'}


def require(config, modality: str, setting: str, remedy: str) -> None:
  """Unless `config.dataset` is `modality` data ('image' or 'text'), raises the one-line
  ConfigError '<setting>, but <dataset> is <its data>; <remedy>'."""
  spec = SPECS[config.dataset.name]
  if spec.modality != modality:
    raise cs.ConfigError(f'{setting}, but {spec.name} is {DESCRIPTIONS[spec.modality]}; {remedy}')

r"""Text classification: DropAttack's and AMP's own settings (papers.md 1.3, 2.2, 2.3).

    python -m robust_jax.main --config=configs/text.py:offline_ag_news_gru_dropattack --workdir=W

Variants DATASET_MODEL_METHOD:
  ag_news_gru_{erm,dropattack,fgm}   TFDS ag_news_subset (120,000 / 7,600), 2-layer BiGRU 300
  imdb_lstm_{erm,dropattack}         TFDS imdb_reviews (25,000 / 25,000), 1-layer LSTM 300
  imdb_textcnn_{erm,amp}             TFDS imdb_reviews, TextCNN 3/4/5 × 100, dropout 0.5
  offline_ag_news_gru_{erm,dropattack,fgm,amp}   the CSV files in ../shared/data/ag_news: train on
      val_ag1.csv (10,000 texts), test on test_ag1.csv (the standard 7,600); `config.dataset.path`
      defaults to that folder beside this checkout (a missing file is a one-line error naming it).

As the notebooks: lowercased words, English stop words removed, length 256, a vocabulary from the
training split (no GloVe: random N(0, 1) embeddings), Adam 1e-3 at a constant rate, batch 128,
5 epochs (AG News) or 10 (IMDB), test accuracy after every epoch (results.json keeps the best, as
the notebooks' best checkpoint, and the last). DropAttack-K ('dropattack_embedding'): ε = 5 on the
embedding table and on the first layer's forward input kernel ('forward_0/input_kernel' =
weight_ih_l0); AG News p = 0.7, K = 1; IMDB p = 0.5, K = 3. The notebooks' single runs (papers.md
2.3; GloVe, ~110,000 AG News texts): AG News 93.25 %, IMDB 90.76 % test accuracy.
AMP on TextCNN (the AMP README): ε = 1, ζ = 0.1, N = 1, per-tensor ball, Adam 1e-3; the official
trainer's batch 50 and gradient clipping at 50 for ERM and AMP alike; 10 epochs (PROPOSAL: the
text epochs are not recorded). FGM (PROPOSAL, `methods/embedding_adversary.py`): ε = 5 on each
example's embedded sequence, clean + adversarial loss. The offline table's AMP row uses the
TextCNN setting (ε = 1, ζ = 0.1, inner clip 50) on the BiGRU (PROPOSAL); every offline variant
shares everything but the method.
The TFDS variants are paper-scale and refuse to train on CPUs
(`--config.train.require_accelerator=False` trains there anyway); the offline ones run on a CPU.
Vocabulary: 100,000 words at most on TFDS data; offline 32,000 (the 31,359 distinct words of the
10,000 training texts, plus <pad> and <unk>). AG News texts have at most 134 tokens here, so
`--config.dataset.max_length=136` gives the same numbers (the models ignore padding) in about
half the CPU time of 256.
"""
import os

from robust_jax.config import defaults as config_defaults

SHARED_AG_NEWS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                                               '..', 'shared', 'data', 'ag_news'))
OFFLINE_METHODS = ('erm', 'dropattack', 'fgm', 'amp')
VARIANTS = (tuple(f'ag_news_gru_{m}' for m in ('erm', 'dropattack', 'fgm'))
            + ('imdb_lstm_erm', 'imdb_lstm_dropattack', 'imdb_textcnn_erm', 'imdb_textcnn_amp')
            + tuple(f'offline_ag_news_gru_{m}' for m in OFFLINE_METHODS))

# The models' registered sections are the papers' sizes (robust_jax/models/__init__.py).
MODELS = {name: config_defaults.registered('model', name) for name in ('gru', 'lstm', 'textcnn')}
# DropAttack-K's registered section is the AG News notebook's (ε = 5 on the embedding table and
# on weight_ih_l0, p = 0.7, K = 1); IMDB's differs in p and K.
DROPATTACK = {'ag_news': config_defaults.registered('weight_perturbation', 'dropattack_embedding'),
              'imdb': config_defaults.registered('weight_perturbation', 'dropattack_embedding',
                                                 attack_probability=0.5, num_steps=3)}
AMP_SECTION = config_defaults.registered('weight_perturbation', 'amp', epsilon=1.0, inner_lr=0.1,
                                         inner_grad_clip=50.0)
FGM_SECTION = config_defaults.registered('adversary', 'embedding_fgm')


def get_config(arg=None):
  variant = config_defaults.parse_variant(arg, VARIANTS, 'offline_ag_news_gru_erm')
  offline = variant.startswith('offline_')
  dataset, model, method = variant.removeprefix('offline_').rsplit('_', 2)
  config = config_defaults.default_config()
  config.dataset.update(name=dataset, source='csv' if offline else 'tfds',
                        path=SHARED_AG_NEWS if offline else '', augmentation='default',
                        max_length=256, vocab_size=32_000 if offline else 100_000,
                        remove_stop_words=True, csv_files=('val_ag1.csv', 'test_ag1.csv'))
  config.model = MODELS[model]
  config.optimizer.update(name='adam', learning_rate=1e-3, schedule='constant')
  config.train.update(batch_size=128, num_epochs=5 if dataset == 'ag_news' else 10,
                      log_every_steps=20, eval_every_epochs=1,
                      require_accelerator=not offline)  # the TFDS sets are paper-scale
  if model == 'textcnn':  # the AMP trainer's batch and clipping, ERM included
    config.train.batch_size = 50
    config.optimizer.grad_clip_norm = 50.0
  if method == 'dropattack':
    config.weight_perturbation = dict(DROPATTACK[dataset])
  elif method == 'amp':
    config.weight_perturbation = dict(AMP_SECTION)
  elif method == 'fgm':
    config.adversary = dict(FGM_SECTION)
  return config

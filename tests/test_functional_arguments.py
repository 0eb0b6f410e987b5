"""Bad calls to the functional API (methods, losses, models) fail with a one-line error.

Every row of BAD_CALLS was a silent wrong answer or an unrelated error before the checks. Good calls
still jit and vmap; under `jax.jit` values are not read but shapes are still checked, and the checks
add nothing to the traced computation (same jaxpr with every check replaced by a no-op).
"""
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import robust_jax as rj
from robust_jax import arguments, data
from robust_jax.methods import embedding_adversary
from robust_jax.models import PerturbedTokens, build_model

B, C = 3, 3
KEY = jax.random.key(0)
_rng = np.random.default_rng(0)
LOGITS = jnp.asarray(_rng.normal(size=(B, C)), jnp.float32)
LOGITS_K = jnp.asarray(_rng.normal(size=(2, B, C)), jnp.float32)
LABELS = jnp.array([0, 2, 1], jnp.int32)
TARGETS = jax.nn.one_hot(LABELS, C)
SIMILARITY = np.array([[0.0, 0.75, 0.25], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
FEATURES = jnp.asarray(_rng.normal(size=(2, 6, 6, 4)), jnp.float32)
IMAGES = jnp.asarray(_rng.uniform(0.1, 0.9, size=(B, 4, 4, 1)), jnp.float32)
PARAMS = {'w1': jnp.asarray(_rng.normal(size=(16, 5)), jnp.float32),
          'w2': jnp.asarray(_rng.normal(size=(5, C)), jnp.float32)}


def apply_fn(params, images):
  hidden = jnp.tanh(images.reshape(images.shape[0], -1) @ params['w1'])
  return hidden @ params['w2']


def params_loss(params):
  return jnp.mean(rj.losses.cross_entropy(apply_fn(params, IMAGES), LABELS))


def dropattack_loss(params, inputs, key):
  del key
  return jnp.mean(rj.losses.cross_entropy(apply_fn(params, inputs), LABELS))


# ----------------------------------------------------------------------------- calls with overrides
def mdl_loss(**overrides):
  kwargs = dict(logits_k=LOGITS_K, labels=LABELS, weight=1.0) | overrides
  return rj.mdl.loss(**kwargs)


def similarity_targets(**overrides):
  kwargs = dict(labels=LABELS, similarity=SIMILARITY, alpha=0.1) | overrides
  return rj.class_similarity.targets(**kwargs)


def lfm_mask(**overrides):
  kwargs = dict(features=FEATURES, key=KEY, probability=0.5, channel_fraction=0.5) | overrides
  return rj.lfm.mask(**kwargs)


def amp_perturbation(**overrides):
  kwargs = dict(loss_fn=params_loss, params=PARAMS, epsilon=0.1, inner_lr=1.0,
                inner_steps=1) | overrides
  return rj.amp.perturbation(**kwargs)


def dropattack_gradient(**overrides):
  kwargs = dict(loss_fn=dropattack_loss, params=PARAMS, inputs=IMAGES, key=KEY,
                attack_probability=0.5, num_steps=1, input_epsilon=1.0, weight_paths=('w1',),
                weight_epsilon=0.05) | overrides
  return rj.dropattack.gradient(**kwargs)


def trades_loss(**overrides):
  kwargs = dict(apply_fn=apply_fn, params=PARAMS, images=IMAGES, labels=LABELS, key=KEY, beta=6.0,
                epsilon=0.1, step_size=0.025, num_steps=2) | overrides
  return rj.trades.loss(**kwargs)


def embedding_perturbation(**overrides):
  kwargs = dict(loss_fn=lambda delta, t: jnp.sum(delta ** 2), shape=(2, 5, 4), epsilon=1.0,
                step_size=1.0, num_steps=1) | overrides
  return embedding_adversary.perturbation(**kwargs)


def _spec_model(name, **section):
  spec = data.SPECS['ag_news' if name in ('lstm', 'gru', 'textcnn') else 'fashion_mnist']
  config = ml_collections.ConfigDict(dict(rj.models.MODELS.lookup('', name).defaults, name=name,
                                          **section))
  return build_model(config, spec), spec


_MODELS = {}


def image_model_logits(images, name='cnn'):
  """Logits of a small library image model (built once) on `images` (B, 28, 28, 1)."""
  if name not in _MODELS:
    section = dict(widths=(2, 4), hidden_size=8) if name == 'cnn' else dict(hidden_sizes=(8,))
    model, spec = _spec_model(name, **section)
    _MODELS[name] = model, model.init(jax.random.key(0), spec.image_shape)
  model, (params, state) = _MODELS[name]
  return model.apply(params, state, images, train=False)[0]


def text_model_logits(tokens):
  """Logits of a small TextCNN (vocab_size 100) on token ids (B, L)."""
  if 'textcnn' not in _MODELS:
    model, _ = _spec_model('textcnn', embedding_size=4, num_filters=2, filter_widths=(2,))
    model = rj.models.ModelFns(model.module.clone(vocab_size=100))
    _MODELS['textcnn'] = model, model.init(jax.random.key(0), (6,))
  model, (params, state) = _MODELS['textcnn']
  return model.apply(params, state, tokens, train=False)[0]


FASHION = jnp.asarray(_rng.uniform(0.0, 1.0, size=(2, 28, 28, 1)), jnp.float32)
TOKENS = jnp.array([[5, 7, 2, 0, 0, 0], [9, 1, 3, 4, 0, 0]], jnp.int32)
BAD_LABEL = jnp.array([0, 3, 1], jnp.int32)  # 3 == C
NEGATIVE_LABEL = jnp.array([0, -1, 1], jnp.int32)
RANGE = r'must be a finite number in \[0, 1\]$'
MODEL_PIXELS = (r'must be pixel values in \[0, 1\] \(e\.g\. uint8 images / 255\), perturbed by at '
                r'most 0\.5$')
KEY_HINT = r'needs a PRNG key \(e\.g\. jax\.random\.key\(0\)\)$'

# (id, call, exception type, regex its one-line message must match from the start)
BAD_CALLS = [
    # losses
    ('cross_entropy label == C', lambda: rj.losses.cross_entropy(LOGITS, BAD_LABEL), ValueError,
     r'^labels: values range over \[0, 3\]; must be class indices in \[0, 2\] '
     r'\(logits have C = 3\)$'),
    ('cross_entropy label -1', lambda: rj.losses.cross_entropy(LOGITS, NEGATIVE_LABEL), ValueError,
     r'^labels: values range over \[-1, 1\]; must be class indices in \[0, 2\]'),
    ('cross_entropy float labels', lambda: rj.losses.cross_entropy(LOGITS, TARGETS), TypeError,
     r'^labels\.dtype=float32: must be an integer type \(class indices\)$'),
    ('cross_entropy labels (B, 1)', lambda: rj.losses.cross_entropy(LOGITS, LABELS[:, None]),
     ValueError, r'^labels\.shape=\(3, 1\): must be \(B,\) = \(3,\), one class index per image$'),
    ('cross_entropy one example', lambda: rj.losses.cross_entropy(LOGITS[0], LABELS[0]),
     ValueError, r'^logits\.shape=\(3,\): must be \(B, C\), the logits of a batch$'),
    ('cross_entropy integer logits',
     lambda: rj.losses.cross_entropy(LOGITS.astype(jnp.int32), LABELS), TypeError,
     r'^logits\.dtype=int32: must be floating point \(logits\)$'),
    ('cross_entropy NaN logits',
     lambda: rj.losses.cross_entropy(LOGITS.at[0, 0].set(jnp.nan), LABELS), ValueError,
     r'^logits: values range over \[nan, nan\]; must be finite$'),
    ('soft_cross_entropy rows not summing to 1',
     lambda: rj.losses.soft_cross_entropy(LOGITS, 2 * TARGETS), ValueError,
     r'^target_probs: smallest entry 0, rows sum to \[2, 2\]; must be target distributions '
     r'\(entries >= 0, each row over the last axis summing to 1\)$'),
    ('soft_cross_entropy negative target',
     lambda: rj.losses.soft_cross_entropy(LOGITS, TARGETS.at[0].set(jnp.array([1.5, -0.5, 0.0]))),
     ValueError, r'^target_probs: smallest entry -0\.5, rows sum to \[1, 1\]'),
    ('soft_cross_entropy labels as targets', lambda: rj.losses.soft_cross_entropy(LOGITS, LABELS),
     TypeError, r'^target_probs\.dtype=int32: must be floating point \(target distributions\)$'),
    ('soft_cross_entropy targets (B, C + 1)',
     lambda: rj.losses.soft_cross_entropy(LOGITS, jax.nn.one_hot(LABELS, C + 1)), ValueError,
     r'^target_probs\.shape=\(3, 4\): must be \(B, C\) = \(3, 3\), one target distribution per '
     r'example, like the logits$'),
    ('kl_divergence shapes differ', lambda: rj.losses.kl_divergence(LOGITS, LOGITS[:2]),
     ValueError, r'^logits\.shape=\(2, 3\): must be \(B, C\) = \(3, 3\), like reference_logits$'),
    # MDL
    ('mdl weight nan', lambda: mdl_loss(weight=float('nan')), ValueError,
     r'^weight=nan: must be a finite number >= 0$'),
    ('mdl negative weight', lambda: mdl_loss(weight=-1.0), ValueError,
     r'^weight=-1\.0: must be a finite number >= 0$'),
    ('mdl weight string', lambda: mdl_loss(weight='1'), TypeError,
     r"^weight='1': must be a real number$"),
    ('mdl weight inf in float32', lambda: mdl_loss(weight=1e300), ValueError,
     r'^weight=1e\+300: must be a number float32 holds \(float32 makes it inf; the largest '
     r'float32 is 3\.4e\+38\)$'),
    ('mdl weight 0 in float32', lambda: mdl_loss(weight=1e-300), ValueError,
     r'^weight=1e-300: must be 0 or a number float32 holds \(float32 makes it 0\.0; the smallest '
     r'nonzero float32 is 1\.4e-45\)$'),
    ('mdl empty batch', lambda: mdl_loss(logits_k=LOGITS_K[:, :0], labels=LABELS[:0]),
     ValueError, r'^logits_k\.shape=\(2, 0, 3\): no examples \(B = 0\), whose mean loss is NaN; '
     r'skip the call when the batch is empty$'),
    ('mdl label == C', lambda: mdl_loss(labels=BAD_LABEL), ValueError,
     r'^labels: values range over \[0, 3\]; must be class indices in \[0, 2\] '
     r'\(logits_k has C = 3\)$'),
    ('mdl label -1', lambda: mdl_loss(labels=NEGATIVE_LABEL), ValueError,
     r'^labels: values range over \[-1, 1\]'),
    ('mdl labels of another batch', lambda: mdl_loss(labels=jnp.array([0, 1, 2, 0])), ValueError,
     r'^labels\.shape=\(4,\): must be \(B,\) = \(3,\), one class index per image$'),
    ('mdl float labels', lambda: mdl_loss(labels=TARGETS), TypeError,
     r'^labels\.dtype=float32: must be an integer type'),
    ('mdl targets of another shape', lambda: mdl_loss(targets=jax.nn.one_hot(LABELS, 4)),
     ValueError, r'^targets\.shape=\(3, 4\): must be \(B, C\) = \(3, 3\)'),
    ('mdl integer logits', lambda: mdl_loss(logits_k=LOGITS_K.astype(jnp.int32)), TypeError,
     r'^logits_k\.dtype=int32: must be floating point \(logits\)$'),
    ('mdl orthogonality of logits', lambda: rj.mdl.orthogonality(LOGITS_K, LABELS), ValueError,
     r'^probs: smallest entry -?\d[\d.e-]*, rows sum to .*; must be probabilities, e\.g\. the '
     r'softmax of logits \(entries >= 0'),
    # class similarity
    ('class_similarity label == C', lambda: similarity_targets(labels=BAD_LABEL), ValueError,
     r'^labels: values range over \[0, 3\]; must be class indices in \[0, 2\] '
     r'\(similarity has C = 3\)$'),
    ('class_similarity float labels', lambda: similarity_targets(labels=TARGETS[:, 0]), TypeError,
     r'^labels\.dtype=float32: must be an integer type \(class indices\)$'),
    ('class_similarity labels (B, 1)', lambda: similarity_targets(labels=LABELS[:, None]),
     ValueError, r'^labels\.shape=\(3, 1\): must be \(B,\), one class index per example$'),
    ('class_similarity rows not summing to 1',
     lambda: similarity_targets(similarity=2 * SIMILARITY), ValueError, r'^similarity: row 0 sums to 2; every row must sum to 1 \(a distribution over '
     r'the other classes\)$'),
    ('class_similarity negative entry', lambda: similarity_targets(similarity=np.array(
        [[0.0, 1.5, -0.5], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])), ValueError,
     r'^similarity: smallest entry -0\.5; must be non-negative'),
    ('class_similarity nonzero diagonal', lambda: similarity_targets(similarity=np.eye(3)),
     ValueError, r'^similarity: diagonal entry \[0, 0\] is 1; must be 0 \(the true class gets '
     r'1 - alpha through S = \(1 - alpha\) I \+ alpha S̃\)$'),
    ('class_similarity boolean matrix',
     lambda: similarity_targets(similarity=SIMILARITY > 0), TypeError,
     r'^similarity\.dtype=bool: must be a real \(C, C\) matrix'),
    ('similarity_targets_matrix alpha 1.5',
     lambda: rj.class_similarity.similarity_targets_matrix(SIMILARITY, 1.5), ValueError,
     r'^alpha=1\.5: ' + RANGE),
    ('similarity_targets_matrix not square',
     lambda: rj.class_similarity.similarity_targets_matrix(SIMILARITY[:2], 0.1), ValueError,
     r'^similarity\.shape=\(2, 3\): must be \(C, C\), one row per class$'),
    # LFM
    ('lfm probability 1.5', lambda: lfm_mask(probability=1.5), ValueError,
     r'^probability=1\.5: ' + RANGE),
    ('lfm probability nan', lambda: lfm_mask(probability=float('nan')), ValueError,
     r'^probability=nan: ' + RANGE),
    ('lfm channel_fraction -0.1', lambda: lfm_mask(channel_fraction=-0.1), ValueError,
     r'^channel_fraction=-0\.1: ' + RANGE),
    ('lfm paper channel_fraction 1.5', lambda: lfm_mask(channel_fraction=1.5), ValueError,
     r'^channel_fraction=1\.5: ' + RANGE),
    ('lfm traced channel_fraction', lambda: jax.jit(lambda f: lfm_mask(channel_fraction=f))(0.5),
     TypeError, r'^channel_fraction: must be a static Python number'),
    ('lfm area_range reversed', lambda: lfm_mask(area_range=(0.5, 0.2)), ValueError,
     r'^area_range=\(0\.5, 0\.2\): must be \(low, high\) with low <= high$'),
    ('lfm area_range above 1', lambda: lfm_mask(area_range=(0.1, 2.0)), ValueError,
     r'^area_range\[1\]=2\.0: ' + RANGE),
    ('lfm aspect_range 0', lambda: lfm_mask(aspect_range=(0.0, 1.0)), ValueError,
     r'^aspect_range\[0\]=0\.0: must be a finite number > 0$'),
    ('lfm area_range a number', lambda: lfm_mask(area_range=0.4), TypeError,
     r'^area_range=0\.4: must be a pair \(low, high\)$'),
    ('lfm key None', lambda: lfm_mask(key=None), ValueError,
     r'^key=None: this call draws the masks and ' + KEY_HINT),
    ('lfm key an int', lambda: lfm_mask(key=0), TypeError,
     r'^key=0: must be a PRNG key \(e\.g\. jax\.random\.key\(0\)\)$'),
    ('lfm a batch of keys', lambda: lfm_mask(key=jax.random.split(KEY, 2)), ValueError,
     r'^key\.shape=\(2,\): must be one PRNG key \(shape \(\)\); for a batch of keys use jax\.vmap$'),
    ('lfm official_code_samples 0', lambda: lfm_mask(mode='official_code', official_code_samples=0),
     ValueError, r'^official_code_samples=0: must be an int >= 1$'),
    ('lfm local_feature_mask fill', lambda: rj.lfm.local_feature_mask(
        FEATURES, KEY, probability=0.5, channel_fraction=0.5, fill='random'), ValueError,
     r"^fill='random': must be one of 'uniform', 'zero'$"),
    ('lfm features (H, W, C)', lambda: rj.lfm.local_feature_mask(
        FEATURES[0], KEY, probability=0.5, channel_fraction=0.5), ValueError,
     r'^features\.shape=\(6, 6, 4\): must be \(B, H, W, C\), a batch of feature maps$'),
    ('lfm integer features', lambda: lfm_mask(features=FEATURES.astype(jnp.int32)),
     TypeError,
     r'^features\.dtype=int32: must be floating point \(a batch of feature maps\)$'),
    ('lfm 1 x 1 feature maps', lambda: lfm_mask(features=FEATURES[:, :1, :1]), ValueError,
     r'^features\.shape=\(2, 1, 1, 4\): H and W must be >= 2'),
    ('lfm 1-row feature maps', lambda: lfm_mask(features=FEATURES[:, :1]), ValueError,
     r'^features\.shape=\(2, 1, 6, 4\): H and W must be >= 2'),
    ('lfm official_code_boxes height a float',
     lambda: rj.lfm.official_code_boxes(KEY, (4,), 2.0, 8), TypeError,
     r'^height=2\.0: must be an int >= 2 \(a static Python int\)$'),
    ('lfm official_code_stripes height 1',
     lambda: rj.lfm.official_code_stripes(KEY, (4,), 1, 8), ValueError,
     r'^height=1: must be an int >= 2 \(a box spans at most height - 1 rows\)$'),
    ('lfm official_code_boxes tries 0',
     lambda: rj.lfm.official_code_boxes(KEY, (4,), 8, 8, tries=0), ValueError,
     r'^tries=0: must be an int >= 1$'),
    # AMP
    ('amp loss_fn not callable', lambda: amp_perturbation(loss_fn=1.0), TypeError,
     r'^loss_fn=float: must be a function params -> loss$'),
    ('amp key an int', lambda: amp_perturbation(key=1), TypeError, r'^key=1: must be a PRNG key'),
    ('amp has_aux a string', lambda: amp_perturbation(has_aux='yes'), TypeError,
     r"^has_aux='yes': must be True or False$"),
    ('amp integer parameter', lambda: amp_perturbation(
        params={**PARAMS, 'step': jnp.int32(0)}, loss_fn=lambda p: params_loss(p)), TypeError,
     r"^params\['step'\]\.dtype=int32: must be floating point \(every leaf is perturbed\)$"),
    ('amp empty params', lambda: amp_perturbation(params={}, loss_fn=lambda p: 0.0), ValueError,
     r'^params: an empty pytree; must hold the float arrays to perturb$'),
    ('amp traced inner_grad_clip',
     lambda: jax.jit(lambda clip: amp_perturbation(inner_grad_clip=clip).norm)(1.0), TypeError,
     r'^inner_grad_clip: must be a static Python number'),
    ('amp project negative epsilon', lambda: rj.amp.project(PARAMS, -1.0, 'global'), ValueError,
     r'^epsilon=-1\.0: must be a finite number >= 0$'),
    ('amp project nan epsilon', lambda: rj.amp.project(PARAMS, float('nan'), 'per_tensor'),
     ValueError, r'^epsilon=nan: must be a finite number >= 0$'),
    # DropAttack
    ('dropattack attack_probability above 1', lambda: dropattack_gradient(attack_probability=1.5),
     ValueError, r'^attack_probability=1\.5: must be a finite number in \[0, 1\]$'),
    ('dropattack integer inputs with the input attack',
     lambda: dropattack_gradient(inputs=IMAGES.astype(jnp.int32)), ValueError,
     r'^inputs\.dtype=int32: the input attack perturbs float inputs; for token ids name the '
     r'embedding table in input_paths$'),
    ('dropattack negative input_epsilon', lambda: dropattack_gradient(input_epsilon=-1.0),
     ValueError, r'^input_epsilon=-1\.0: must be a finite number >= 0$'),
    ('dropattack nan weight_epsilon', lambda: dropattack_gradient(weight_epsilon=float('nan')),
     ValueError, r'^weight_epsilon=nan: must be a finite number >= 0$'),
    ('dropattack weight_paths a string', lambda: dropattack_gradient(weight_paths='w1'), TypeError,
     r"^weight_paths='w1': must be a sequence of '/'-joined parameter paths, "
     r"e\.g\. \('Dense_0/kernel',\)$"),
    ('dropattack key None', lambda: dropattack_gradient(key=None), ValueError,
     r'^key=None: this call draws the attack masks and ' + KEY_HINT),
    ('dropattack weight_epsilon_relative a string',
     lambda: dropattack_gradient(weight_epsilon_relative='yes'), TypeError,
     r"^weight_epsilon_relative='yes': must be True or False$"),
    ('dropattack params a list', lambda: dropattack_gradient(params=[PARAMS['w1']]), TypeError,
     r"^params=list: must be a \(nested\) dict of arrays"),
    ('dropattack integer tensor attacked', lambda: dropattack_gradient(
        params={**PARAMS, 'step': jnp.int32(0)}, weight_paths=('step',)), TypeError,
     r"^weight_paths=\('step',\): 'step' is int32; only floating-point tensors can be perturbed$"),
    ('dropattack loss_fn not callable', lambda: dropattack_gradient(loss_fn=None), TypeError,
     r'^loss_fn=NoneType: must be a function \(params, inputs, key\) -> loss$'),
    # TRADES
    ('trades apply_fn not callable', lambda: trades_loss(apply_fn=PARAMS), TypeError,
     r'^apply_fn=dict: must be a function \(params, images\) -> logits$'),
    ('trades terms targets not distributions',
     lambda: rj.trades.terms(LOGITS, LOGITS, 3 * TARGETS), ValueError,
     r'^targets: smallest entry 0, rows sum to \[3, 3\]; must be target distributions'),
    ('trades terms shapes differ', lambda: rj.trades.terms(LOGITS, LOGITS_K, TARGETS), ValueError,
     r'^adversarial_logits\.shape=\(2, 3, 3\): must be \(B, C\), the logits of a batch$'),
    ('trades targets of another shape',
     lambda: trades_loss(targets=jax.nn.one_hot(LABELS, 4)), ValueError,
     r'^targets\.shape=\(3, 4\): must be \(B, C\) = \(3, 3\)'),
    # adversarial training, embedding adversary
    ('attack_logits_fn model_mode', lambda: rj.adversarial_training.attack_logits_fn(
        _spec_model('mlp', hidden_sizes=(4,))[0], {}, {}, 'training', KEY), ValueError,
     r"^model_mode='training': must be one of 'eval', 'train'$"),
    ('attack_logits_fn train mode without key', lambda: rj.adversarial_training.attack_logits_fn(
        _spec_model('mlp', hidden_sizes=(4,))[0], {}, {}, 'train', None), ValueError,
     r"^key=None: this call draws the model's dropout in 'train' mode and " + KEY_HINT),
    ('embedding perturbation shape (B,)', lambda: embedding_perturbation(shape=(2,)), TypeError,
     r'^shape=\(2,\): must be \(B, \.\.\.\), a tuple of at least 2 Python ints >= 1'),
    ('embedding perturbation loss_fn', lambda: embedding_perturbation(loss_fn='ce'), TypeError,
     r'^loss_fn=str: must be a function \(delta, step\) -> loss$'),
    # models
    ('cnn uint8-range float images', lambda: image_model_logits(FASHION * 255), ValueError,
     r'^images: values range over \[\d[\d.e+-]*, \d[\d.e+-]*\]; ' + MODEL_PIXELS),
    ('cnn uint8 images', lambda: image_model_logits((FASHION * 255).astype(jnp.uint8)), TypeError,
     r'^images\.dtype=uint8: must be floating point with pixel values in \[0, 1\]'),
    ('cnn images already normalised', lambda: image_model_logits((FASHION - 0.5) / 0.5),
     ValueError, r'^images: values range over \[-\d[\d.e+-]*, \d[\d.e+-]*\]; ' + MODEL_PIXELS),
    ('mlp NaN image', lambda: image_model_logits(FASHION.at[0, 0, 0, 0].set(jnp.nan), 'mlp'),
     ValueError, r'^images: values range over \[nan, nan\]; ' + MODEL_PIXELS),
    ('text model id == vocab_size', lambda: text_model_logits(TOKENS.at[0, 0].set(100)),
     ValueError, r'^tokens: values range over \[0, 100\]; must be token ids in \[0, 99\] '
     r'\(vocab_size = 100\)$'),
    ('text model negative id', lambda: text_model_logits(TOKENS.at[0, 0].set(-1)), ValueError,
     r'^tokens: values range over \[-1, 9\]; must be token ids in \[0, 99\]'),
    ('text model one sequence', lambda: text_model_logits(TOKENS[0]), ValueError,
     r'^tokens\.shape=\(6,\): must be \(B, L\), a batch of token id sequences$'),
    ('text model perturbation of another shape', lambda: text_model_logits(
        PerturbedTokens(TOKENS, jnp.zeros((2, 6, 5)))), ValueError,
     r'^embedding_perturbation\.shape=\(2, 6, 5\): must be \(B, L, embedding_size\) = '
     r'\(2, 6, 4\), like the tokens$'),
]


@pytest.mark.parametrize('call, error, message', [c[1:] for c in BAD_CALLS],
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_call_is_a_one_line_error(call, error, message):
  with pytest.raises(error) as raised:
    call()
  text = str(raised.value)
  assert '\n' not in text
  assert re.search(message, text), text


# ----------------------------------------------------------------------------- traced arguments
def test_traced_values_are_not_read_but_shapes_are_still_checked():
  # Under jit, weight, labels and images are tracers: the out-of-range label is not seen (the
  # checks cannot read it) and the call compiles; a wrong shape is still refused at trace time.
  loss = jax.jit(lambda logits, labels, weight: rj.mdl.loss(logits, labels, weight=weight))
  assert np.isfinite(float(loss(LOGITS_K, LABELS, 1.0)))
  loss(LOGITS_K, BAD_LABEL, -1.0)  # traced: accepted unchecked
  with pytest.raises(ValueError, match=r'^labels\.shape=\(3, 1\): must be \(B,\) = \(3,\)'):
    loss(LOGITS_K, LABELS[:, None], 1.0)
  with pytest.raises(ValueError, match=r'^weight\.shape=\(3,\): must be a scalar'):
    loss(LOGITS_K, LABELS, jnp.ones(3))
  # A concrete argument closed over by a jitted function is still checked while tracing.
  with pytest.raises(ValueError, match=r'^labels: values range over \[0, 3\]'):
    jax.jit(lambda logits: rj.mdl.loss(logits, BAD_LABEL, weight=1.0))(LOGITS_K)
  # Perturbed, unclipped inputs (DropAttack's input term) are accepted by the models.
  assert image_model_logits(jnp.clip(FASHION, 0.02, 0.98) + 0.03 * jnp.sign(FASHION - 0.5)).shape \
      == (2, 10)
  cnn = jax.jit(image_model_logits)
  assert cnn(FASHION * 255).shape == (2, 10)  # traced images: not read
  with pytest.raises(TypeError, match=r'^images\.dtype=uint8'):
    cnn(FASHION.astype(jnp.uint8))
  tokens = jax.jit(text_model_logits)
  assert tokens(TOKENS).shape[0] == 2
  with pytest.raises(TypeError, match=r'^tokens\.dtype=float32: a text model takes integer'):
    tokens(TOKENS.astype(jnp.float32))


def test_good_calls_jit_and_vmap():
  targets = jax.vmap(lambda y: similarity_targets(labels=y))(LABELS)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  masked = jax.jit(jax.vmap(lambda k: lfm_mask(key=k)))(jax.random.split(KEY, 2))
  assert masked.shape == (2, *FEATURES.shape)
  legacy = lfm_mask(key=jax.random.PRNGKey(0))  # a raw uint32 key is a PRNG key too
  assert legacy.shape == FEATURES.shape
  # The released code draws channels with replacement: a fraction above 1 is meaningful there.
  assert lfm_mask(mode='official_code', channel_fraction=2.0).shape == FEATURES.shape
  result = jax.jit(lambda p, x, k: dropattack_gradient(params=p, inputs=x, key=k))(
      PARAMS, IMAGES, KEY)
  assert np.isfinite(float(result.loss))


# ----------------------------------------------------------------------------- nothing per step
def _no_checks(monkeypatch):
  """Every check of robust_jax.arguments replaced by a no-op that returns what the check does."""
  returns = {'check_similarity_matrix': lambda name, value: value.shape[0],
             'check_paths': lambda name, value: tuple(value)}
  for name in arguments.__all__:
    if name.startswith('check_'):
      monkeypatch.setattr(arguments, name, returns.get(
          name, lambda name, value=None, *args, **kwargs: value))


JITTED_CALLS = {
    # Concrete labels, similarity, images and tokens are closed over: their values are checked
    # while tracing, on the host, and nothing of it is staged into the computation.
    'cross_entropy': (lambda logits: rj.losses.cross_entropy(logits, LABELS), LOGITS),
    'mdl_loss': (lambda logits: mdl_loss(logits_k=logits, targets=TARGETS), LOGITS_K),
    'class_similarity': (lambda logits: rj.losses.soft_cross_entropy(
        logits, similarity_targets()), LOGITS),
    'lfm_official_code': (lambda f: lfm_mask(features=f, mode='official_code'), FEATURES),
    'amp': (lambda p: amp_perturbation(loss_fn=lambda q, k: params_loss(q), params=p,
                                       key=KEY).delta, PARAMS),
    'dropattack': (lambda p: dropattack_gradient(params=p).grads, PARAMS),
    'trades': (lambda p: trades_loss(params=p), PARAMS),
    'cnn': (lambda x: image_model_logits(x) + image_model_logits(FASHION), FASHION),
    'textcnn': (lambda t: text_model_logits(t) + text_model_logits(TOKENS), TOKENS),
}


@pytest.mark.parametrize('name', JITTED_CALLS)
def test_checks_add_nothing_to_the_computation(name, monkeypatch):
  fn, argument = JITTED_CALLS[name]
  checked = str(jax.make_jaxpr(fn)(argument))
  assert 'callback' not in checked
  with monkeypatch.context() as patch:
    _no_checks(patch)
    unchecked = str(jax.make_jaxpr(fn)(argument))
  assert checked == unchecked


def test_shared_checks_live_outside_the_attacks_package():
  from robust_jax.attacks import arguments as attack_arguments
  for name in ('check_number', 'check_count', 'check_choice', 'check_flag', 'check_key',
               'check_class_indices', 'check_int_range', 'is_concrete'):
    assert getattr(attack_arguments, name) is getattr(arguments, name)

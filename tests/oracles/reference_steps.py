"""Hand-written JAX train steps: the independent reference that the tests check robust_jax's step
against, number for number, and that `benchmark.py` times it against.

Each is what a researcher would write by hand for one objective: the Flax module itself (feature
hooks such as LFM included), inline attacks and loops, no robust_jax registries, objectives, losses
or attack code. They follow robust_jax's documented randomness contract, so that the library's step
and these give the same numbers with the same keys:

  train step     key = fold_in(seed key, step); split -> (augmentation key, objective key)
  model pass     key split -> (dropout key, feature-mask key)
  adversary      objective key split 3 -> (attack's model key, random-start key, loss key)
  TRADES         split 4 -> (attack's model key, random-start key, clean pass key, adversarial key)
  AMP            split 2 -> (inner key, outer key); inner pass n uses fold_in(inner key, n)
  DropAttack     split 5 -> (clean, input mask, input pass, weight mask, weight pass); pass t uses
                 fold_in(pass key, t); example b's input mask fold_in(input mask key, b); the i-th
                 attacked tensor's mask fold_in(weight mask key, i)
  MDL            split K -> one key per sub-network
  embedding FGM / PGD (text)  objective key split 3 -> (attack pass, clean pass, adversarial
                 pass); attack step t uses fold_in(attack pass key, t)
  DropAttack on text  the input term perturbs the embedding table like a weight tensor: its mask
                 fold_in(input mask key, i) for the i-th table, passes fold_in(input pass key, t)

`objective(config, module, num_classes)` returns
    loss_and_grads(params, model_state, images, labels, key) -> (loss, grads, new_model_state)
for float images (B, H, W, C) in [0, 1] or token ids (B, L); `train_step(...)` wraps it into
    step(params, model_state, opt_state, images_uint8, labels, key)
        -> (params, model_state, opt_state, loss)
Supported: every objective section combination the shipped configs use, L∞ attacks only; on
text ERM, AMP, 'dropattack_embedding' and the embedding FGM / PGD adversaries.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from robust_jax.models import PerturbedTokens  # a text model's input type, no computation


def _forward(module, params, model_state, x, key, train=True):
  """(logits, new model state); train mode draws dropout and feature masks from `key`."""
  if not train:
    return module.apply({'params': params, **model_state}, x, train=False), model_state
  dropout_key, feature_key = jax.random.split(key)
  logits, new_state = module.apply({'params': params, **model_state}, x, train=True,
                                   rngs={'dropout': dropout_key, 'feature_mask': feature_key},
                                   mutable=list(model_state))
  return logits, {**model_state, **new_state}


def _target_matrix(targets, num_classes):
  """(C, C) matrix whose row y is the target distribution of label y."""
  eye = np.eye(num_classes)
  if targets.name == 'one_hot':
    return jnp.asarray(eye, jnp.float32)
  if targets.name == 'label_smoothing':
    return jnp.asarray((1 - targets.smoothing) * eye + targets.smoothing / num_classes, jnp.float32)
  if targets.name == 'class_similarity':
    similarity = np.load(targets.matrix_path)
    return jnp.asarray((1 - targets.alpha) * eye + targets.alpha * similarity, jnp.float32)
  raise NotImplementedError(f'no reference for targets {targets.name!r}')


def _soft_ce(logits, targets):
  return optax.softmax_cross_entropy(logits, targets).mean()


def _kl(reference_logits, logits):
  """Per-example KL(softmax(reference) || softmax(logits))."""
  p = jax.nn.softmax(reference_logits)
  return jnp.sum(p * (jax.nn.log_softmax(reference_logits) - jax.nn.log_softmax(logits)), -1)


def _linf_pgd(loss_sum, x, key, epsilon, step_size, num_steps, random_start):
  """L∞ PGD maximising `loss_sum(x')`, projected onto the ε-box around x and [0, 1]."""
  x_adv = x
  if random_start:
    x_adv = jnp.clip(x + jax.random.uniform(key, x.shape, minval=-epsilon, maxval=epsilon), 0, 1)

  def body(_, x_adv):
    x_adv = x_adv + step_size * jnp.sign(jax.grad(loss_sum)(x_adv))
    return jnp.clip(jnp.clip(x_adv, x - epsilon, x + epsilon), 0, 1)

  return jax.lax.stop_gradient(jax.lax.fori_loop(0, num_steps, body, x_adv))


def _check_linf(section):
  if section.norm != 'linf':
    raise NotImplementedError('the reference steps implement L∞ attacks only')


# Data losses: loss(params, model_state, images, labels, key) -> (scalar, new model state).
def _cross_entropy(module, targets):
  def loss(params, model_state, x, labels, key):
    logits, model_state = _forward(module, params, model_state, x, key)
    return _soft_ce(logits, targets[labels]), model_state
  return loss


def _mdl(module, targets, section):
  """K dropout passes; CE mean + λ · mean pairwise cosine of true-class-masked probabilities."""
  k = section.num_subnetworks

  def loss(params, model_state, x, labels, key):
    logits, states = jax.vmap(lambda sub_key: _forward(module, params, model_state, x, sub_key))(
        jax.random.split(key, k))
    cross_entropy = jnp.mean(jax.vmap(lambda z: _soft_ce(z, targets[labels]))(logits))
    masked = jax.nn.softmax(logits) * (1 - jax.nn.one_hot(labels, logits.shape[-1]))
    unit = masked / (jnp.linalg.norm(masked, axis=-1, keepdims=True) + 1e-12)
    cosines = [jnp.sum(unit[i] * unit[j], -1) for i in range(k) for j in range(i + 1, k)]
    new_state = jax.tree.map(lambda s: jnp.mean(s, 0), states)
    return cross_entropy + section.orthogonality_weight * jnp.mean(jnp.stack(cosines)), new_state
  return loss


def _trades(module, targets, section):
  _check_linf(section)

  def loss(params, model_state, x, labels, key):
    model_key, start_key, clean_key, adversarial_key = jax.random.split(key, 4)
    frozen = jax.lax.stop_gradient(params)
    attack_logits = lambda z: _forward(module, frozen, model_state, z, model_key,
                                       section.model_mode == 'train')[0]
    clean_reference = jax.lax.stop_gradient(attack_logits(x))
    x_adv = _linf_pgd(lambda z: _kl(clean_reference, attack_logits(z)).sum(), x, start_key,
                      section.epsilon, section.step_size, section.num_steps, True)
    clean, model_state = _forward(module, params, model_state, x, clean_key)
    adversarial, model_state = _forward(module, params, model_state, x_adv, adversarial_key)
    return (_soft_ce(clean, targets[labels]) + section.beta * _kl(clean, adversarial).mean(),
            model_state)
  return loss


def _adversarial(module, data_loss, section):
  """PGD-AT / FGSM-AT: the data loss on L∞ PGD (FGSM: one step) examples of frozen parameters."""
  _check_linf(section)
  num_steps = section.num_steps if section.name == 'pgd' else 1

  def loss(params, model_state, x, labels, key):
    model_key, start_key, loss_key = jax.random.split(key, 3)
    frozen = jax.lax.stop_gradient(params)

    def ce_sum(z):
      logits = _forward(module, frozen, model_state, z, model_key,
                        section.model_mode == 'train')[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    x_adv = _linf_pgd(ce_sum, x, start_key, section.epsilon, section.step_size, num_steps,
                      section.random_start)
    return data_loss(params, model_state, x_adv, labels, loss_key)
  return loss


# Objectives: loss_and_grads(params, model_state, images, labels, key) -> (loss, grads, state).
def _plain(data_loss):
  def loss_and_grads(params, model_state, x, labels, key):
    (loss, model_state), grads = jax.value_and_grad(data_loss, has_aux=True)(
        params, model_state, x, labels, key)
    return loss, grads, model_state
  return loss_and_grads


def _amp(data_loss, section):
  """N projected ascent steps Δ ← Π_ε(Δ + ζ clip(∇L(θ + Δ))), then the gradient at θ + Δ."""
  add = lambda a, b: jax.tree.map(jnp.add, a, b)

  def project(delta):
    if section.ball == 'global':
      norm = jnp.sqrt(sum(jnp.sum(d * d) for d in jax.tree.leaves(delta)))
      return jax.tree.map(lambda d: d * jnp.minimum(1.0, section.epsilon / (norm + 1e-12)), delta)
    return jax.tree.map(
        lambda d: d * jnp.minimum(1.0, section.epsilon / (jnp.sqrt(jnp.sum(d * d)) + 1e-12)),
        delta)

  def loss_and_grads(params, model_state, x, labels, key):
    inner_key, outer_key = jax.random.split(key)
    frozen = jax.lax.stop_gradient(params)
    delta = jax.tree.map(jnp.zeros_like, params)
    for n in range(section.inner_steps):
      grads, new_state = jax.grad(data_loss, has_aux=True)(
          add(frozen, delta), model_state, x, labels, jax.random.fold_in(inner_key, n))
      if section.update_bn_on_inner_passes:
        model_state = new_state
      if section.inner_grad_clip > 0:
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, section.inner_grad_clip / norm), grads)
      delta = project(jax.tree.map(lambda d, g: d + section.inner_lr * g, delta, grads))
    delta = jax.lax.stop_gradient(delta)
    (loss, model_state), grads = jax.value_and_grad(
        lambda p: data_loss(add(p, delta), model_state, x, labels, outer_key), has_aux=True)(params)
    return loss, grads, model_state
  return loss_and_grads


def _unit(direction, axes=None):
  norm = jnp.sqrt(jnp.sum(direction * direction, axis=axes, keepdims=axes is not None))
  return jnp.where(norm > 0, direction / jnp.where(norm > 0, norm, 1.0), 0.0)


def _dropattack(data_loss, section, input_paths=()):
  """Clean term + K masked input-attack terms / K + K masked weight-attack terms / K
  (papers.md 2.5). With `input_paths` (text, 'dropattack_embedding') the input term perturbs
  those parameter tensors (the embedding table) like weight tensors, with ε = input_epsilon,
  instead of the inputs.
  """
  k = section.num_steps
  perturbs_inputs = section.attack_input and not input_paths

  def loss_and_grads(params, model_state, x, labels, key):
    clean_key, input_mask_key, input_pass_key, weight_mask_key, weight_pass_key = (
        jax.random.split(key, 5))
    both = jax.value_and_grad(lambda p, z, s, pass_key: data_loss(p, s, z, labels, pass_key),
                              argnums=(0, 1), has_aux=True)
    params_only = jax.value_and_grad(lambda p, s, pass_key: data_loss(p, s, x, labels, pass_key),
                                     has_aux=True)
    add_scaled = lambda a, b: jax.tree.map(lambda u, v: u + v / k, a, b)
    if perturbs_inputs:
      (loss, model_state), (clean_grads, input_grad) = both(params, x, model_state, clean_key)
    else:
      (loss, model_state), clean_grads = params_only(params, model_state, clean_key)
    total_loss, total_grads = loss, clean_grads
    if perturbs_inputs:
      mask = jnp.stack([jax.random.bernoulli(jax.random.fold_in(input_mask_key, b),
                                             section.attack_probability, x.shape[1:])
                        for b in range(x.shape[0])])
      axes = tuple(range(1, x.ndim)) if section.input_norm == 'per_example' else None
      perturbation, direction = jnp.zeros_like(x), input_grad
      for t in range(k):
        perturbation = perturbation + section.input_epsilon * mask * _unit(direction, axes)
        (loss, model_state), (grads, step_input_grad) = both(
            params, x + perturbation, model_state, jax.random.fold_in(input_pass_key, t))
        direction = direction + step_input_grad / k
        total_loss, total_grads = total_loss + loss / k, add_scaled(total_grads, grads)

    def tensor_term(paths, epsilon, relative, mask_key, pass_key, total_loss, total_grads,
                    model_state):
      flat = traverse_util.flatten_dict(params, sep='/')
      flat_clean = traverse_util.flatten_dict(clean_grads, sep='/')
      masks = {p: jax.random.bernoulli(jax.random.fold_in(mask_key, i),
                                       section.attack_probability, flat[p].shape)
               for i, p in enumerate(paths)}
      epsilons = {p: epsilon * (jnp.sqrt(jnp.sum(flat[p] ** 2)) if relative else 1.0)
                  for p in paths}
      perturbations = {p: jnp.zeros_like(flat[p]) for p in paths}
      directions = {p: flat_clean[p] for p in paths}
      for t in range(k):
        perturbations = {p: perturbations[p] + epsilons[p] * masks[p] * _unit(directions[p])
                         for p in paths}
        perturbed = traverse_util.unflatten_dict(
            {**flat, **{p: flat[p] + perturbations[p] for p in paths}}, sep='/')
        (loss, model_state), grads = params_only(perturbed, model_state,
                                                 jax.random.fold_in(pass_key, t))
        flat_grads = traverse_util.flatten_dict(grads, sep='/')
        directions = {p: directions[p] + flat_grads[p] / k for p in paths}
        total_loss, total_grads = total_loss + loss / k, add_scaled(total_grads, grads)
      return total_loss, total_grads, model_state

    if section.attack_input and input_paths:
      total_loss, total_grads, model_state = tensor_term(
          input_paths, section.input_epsilon, False, input_mask_key, input_pass_key, total_loss,
          total_grads, model_state)
    if section.attack_weights:
      total_loss, total_grads, model_state = tensor_term(
          section.weight_paths, section.weight_epsilon, section.weight_epsilon_relative,
          weight_mask_key, weight_pass_key, total_loss, total_grads, model_state)
    return total_loss, total_grads, model_state
  return loss_and_grads


def _embedding_adversary(module, data_loss, section, step_size, num_steps):
  """Text FGM (one step of ε) / L2 PGD on each example's embedded sequence from δ = 0, then the
  data loss at e(x) + δ (+ the clean loss)."""

  def loss(params, model_state, tokens, labels, key):
    attack_key, clean_key, adversarial_key = jax.random.split(key, 3)
    frozen = jax.lax.stop_gradient(params)
    per_example = lambda v: jnp.sqrt(jnp.sum(v * v, axis=(1, 2), keepdims=True))

    def attack_loss(delta, t):
      return data_loss(frozen, model_state, PerturbedTokens(tokens, delta), labels,
                       jax.random.fold_in(attack_key, t))[0]

    delta = jnp.zeros((*tokens.shape, module.embedding_size))
    for t in range(num_steps):
      gradient = jax.grad(attack_loss)(delta, t)
      delta = delta + step_size * gradient / (per_example(gradient) + 1e-12)
      delta = delta * jnp.minimum(1.0, section.epsilon / (per_example(delta) + 1e-12))
    perturbed = PerturbedTokens(tokens, jax.lax.stop_gradient(delta))
    if not section.include_clean:
      return data_loss(params, model_state, perturbed, labels, adversarial_key)
    clean_loss, model_state = data_loss(params, model_state, tokens, labels, clean_key)
    adversarial_loss, model_state = data_loss(params, model_state, perturbed, labels,
                                              adversarial_key)
    return clean_loss + adversarial_loss, model_state
  return loss


def objective(config, module, num_classes: int):
  """`loss_and_grads` of `config`'s objective, written by hand (see the module docstring)."""
  targets = _target_matrix(config.targets, num_classes)
  if config.loss.name == 'cross_entropy':
    data_loss = _cross_entropy(module, targets)
  elif config.loss.name == 'mdl':
    data_loss = _mdl(module, targets, config.loss)
  elif config.loss.name == 'trades':
    data_loss = _trades(module, targets, config.loss)
  else:
    raise NotImplementedError(f'no reference for loss {config.loss.name!r}')
  adversary = config.adversary
  if adversary.name == 'embedding_fgm':
    data_loss = _embedding_adversary(module, data_loss, adversary, adversary.epsilon, 1)
  elif adversary.name == 'embedding_pgd':
    data_loss = _embedding_adversary(module, data_loss, adversary, adversary.step_size,
                                     adversary.num_steps)
  elif adversary.name != 'none':
    data_loss = _adversarial(module, data_loss, adversary)
  perturbation = config.weight_perturbation.name
  if perturbation == 'amp':
    return _amp(data_loss, config.weight_perturbation)
  if perturbation == 'dropattack':
    return _dropattack(data_loss, config.weight_perturbation)
  if perturbation == 'dropattack_embedding':
    return _dropattack(data_loss, config.weight_perturbation,
                       tuple(config.weight_perturbation.input_paths))
  if perturbation != 'none':
    raise NotImplementedError(f'no reference for weight perturbation {perturbation!r}')
  return _plain(data_loss)


def train_step(config, module, num_classes: int, optimizer: optax.GradientTransformation,
               augment_fn):
  """The hand-written step of `config`'s objective (signature in the module docstring)."""
  loss_and_grads = objective(config, module, num_classes)

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, loss_key = jax.random.split(key)
    loss, grads, model_state = loss_and_grads(params, model_state, augment_fn(images, augment_key),
                                              labels, loss_key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), model_state, opt_state, loss

  return step

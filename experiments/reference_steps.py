"""Minimal hand-written JAX train steps, the baselines `benchmark.py` compares the library's step to.

Each is what a researcher would write by hand for one objective: the same Flax module (feature
hooks such as LFM included), optimizer and data augmentation, inline loops, no registries, no
metrics beyond the loss. Signature of every returned step:

    step(params, model_state, opt_state, images_uint8, labels, key)
        -> (params, model_state, opt_state, loss)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util


def _forward(module, params, model_state, x, key, train=True):
  if not train:
    return module.apply({'params': params, **model_state}, x, train=False), model_state
  logits, new_state = module.apply({'params': params, **model_state}, x, train=True,
                                   rngs={'dropout': key, 'feature_mask': key},
                                   mutable=list(model_state))
  return logits, {**model_state, **new_state}


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _finish(optimizer, grads, opt_state, params, model_state, loss):
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), model_state, opt_state, loss


def erm(module, optimizer, augment_fn, config, targets=None):
  """Cross-entropy (one-hot, or rows of a `targets` matrix) in training mode."""
  del config

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, dropout_key = jax.random.split(key)
    x = augment_fn(images, augment_key)

    def loss_fn(p):
      logits, new_state = _forward(module, p, model_state, x, dropout_key)
      if targets is None:
        return _ce(logits, labels), new_state
      return optax.softmax_cross_entropy(logits, targets[labels]).mean(), new_state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return _finish(optimizer, grads, opt_state, params, new_state, loss)

  return step


def class_similarity(module, optimizer, augment_fn, config):
  alpha = config.targets.alpha
  similarity = np.load(config.targets.matrix_path)
  matrix = jnp.asarray((1 - alpha) * np.eye(len(similarity)) + alpha * similarity, jnp.float32)
  return erm(module, optimizer, augment_fn, config, targets=matrix)


def _pgd(module, params, model_state, x, labels, key, eps, step_size, steps, random_start,
         train_mode, loss='ce', clean_logits=None):
  """Inline L∞ PGD on frozen parameters."""
  params = jax.lax.stop_gradient(params)

  def attack_loss(x_adv):
    logits = _forward(module, params, model_state, x_adv, key, train_mode)[0]
    if loss == 'kl':
      p = jax.nn.softmax(clean_logits)
      return jnp.sum(p * (jax.nn.log_softmax(clean_logits) - jax.nn.log_softmax(logits)))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

  x_adv = x
  if random_start:
    x_adv = jnp.clip(x + jax.random.uniform(key, x.shape, minval=-eps, maxval=eps), 0, 1)

  def body(_, x_adv):
    x_adv = x_adv + step_size * jnp.sign(jax.grad(attack_loss)(x_adv))
    return jnp.clip(jnp.clip(x_adv, x - eps, x + eps), 0, 1)

  return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x_adv))


def adversarial(module, optimizer, augment_fn, config):
  """PGD-AT / FGSM-AT: cross-entropy on inline-PGD examples."""
  a = config.adversary
  steps = a.get('num_steps', 1)

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, attack_key, dropout_key = jax.random.split(key, 3)
    x = augment_fn(images, augment_key)
    x_adv = _pgd(module, params, model_state, x, labels, attack_key, a.epsilon, a.step_size,
                 steps, a.random_start, a.model_mode == 'train')

    def loss_fn(p):
      logits, new_state = _forward(module, p, model_state, x_adv, dropout_key)
      return _ce(logits, labels), new_state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return _finish(optimizer, grads, opt_state, params, new_state, loss)

  return step


def trades(module, optimizer, augment_fn, config):
  c = config.loss

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, attack_key, k1, k2 = jax.random.split(key, 4)
    x = augment_fn(images, augment_key)
    frozen_logits = _forward(module, jax.lax.stop_gradient(params), model_state, x, attack_key,
                             c.model_mode == 'train')[0]
    x_adv = _pgd(module, params, model_state, x, labels, attack_key, c.epsilon, c.step_size,
                 c.num_steps, True, c.model_mode == 'train', 'kl', frozen_logits)

    def loss_fn(p):
      clean, state = _forward(module, p, model_state, x, k1)
      adv, state = _forward(module, p, state, x_adv, k2)
      kl = jnp.sum(jax.nn.softmax(clean) * (jax.nn.log_softmax(clean) - jax.nn.log_softmax(adv)),
                   -1).mean()
      return _ce(clean, labels) + c.beta * kl, state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return _finish(optimizer, grads, opt_state, params, new_state, loss)

  return step


def amp(module, optimizer, augment_fn, config):
  """AMP, per-tensor ball, N inner steps, BN statistics from every pass (papers.md 1.7)."""
  c = config.weight_perturbation

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, key = jax.random.split(key)
    x = augment_fn(images, augment_key)

    def loss_fn(p, state, k):
      logits, new_state = _forward(module, p, state, x, k)
      return _ce(logits, labels), new_state

    delta, state = jax.tree.map(jnp.zeros_like, params), model_state
    for n in range(c.inner_steps):
      g, state = jax.grad(loss_fn, has_aux=True)(
          jax.tree.map(jnp.add, params, delta), state, jax.random.fold_in(key, n))
      if c.inner_grad_clip > 0:
        g = optax.clip_by_global_norm(c.inner_grad_clip).update(g, None)[0]
      delta = jax.tree.map(lambda d, g: d + c.inner_lr * g, delta, g)
      if c.ball == 'global':
        scale = jnp.minimum(1.0, c.epsilon / (optax.tree.norm(delta) + 1e-12))
        delta = jax.tree.map(lambda d: d * scale, delta)
      else:
        delta = jax.tree.map(
            lambda d: d * jnp.minimum(1.0, c.epsilon / (jnp.linalg.norm(d) + 1e-12)), delta)
    (loss, new_state), grads = jax.value_and_grad(
        lambda p: loss_fn(jax.tree.map(jnp.add, p, delta), state,
                          jax.random.fold_in(key, c.inner_steps)),
        has_aux=True)(params)
    return _finish(optimizer, grads, opt_state, params, new_state, loss)

  return step


def dropattack(module, optimizer, augment_fn, config):
  """DropAttack (papers.md 2.5): 1 + 2K passes, one backward each for input and weight grads."""
  c = config.weight_perturbation
  k = c.num_steps

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, key = jax.random.split(key)
    x = augment_fn(images, augment_key)

    def loss_fn(p, x_in, n):
      return _ce(_forward(module, p, model_state, x_in, jax.random.fold_in(key, n))[0], labels)

    both = jax.value_and_grad(loss_fn, argnums=(0, 1))
    loss, (grads, gx) = both(params, x, 0)
    total_loss, total = loss, grads
    mask_x = jax.random.bernoulli(jax.random.fold_in(key, 100), c.attack_probability, x.shape)
    r, direction = jnp.zeros_like(x), gx
    for t in range(k):
      norm = jnp.sqrt(jnp.sum(direction ** 2, axis=(1, 2, 3), keepdims=True))
      r = r + c.input_epsilon * mask_x * direction / jnp.maximum(norm, 1e-12)
      l, (g, gx) = both(params, x + r, 1 + t)
      direction = direction + gx / k
      total_loss, total = total_loss + l / k, jax.tree.map(lambda a, b: a + b / k, total, g)
    flat = traverse_util.flatten_dict(params, sep='/')
    flat_g = traverse_util.flatten_dict(grads, sep='/')
    name = c.weight_paths[0]
    mask_w = jax.random.bernoulli(jax.random.fold_in(key, 200), c.attack_probability,
                                  flat[name].shape)
    eps_w = c.weight_epsilon * jnp.linalg.norm(flat[name])
    r_w, direction_w = jnp.zeros_like(flat[name]), flat_g[name]
    for t in range(k):
      r_w = r_w + eps_w * mask_w * direction_w / jnp.maximum(jnp.linalg.norm(direction_w), 1e-12)
      perturbed = traverse_util.unflatten_dict({**flat, name: flat[name] + r_w}, sep='/')
      l, (g, _) = both(perturbed, x, 10 + t)
      direction_w = direction_w + traverse_util.flatten_dict(g, sep='/')[name] / k
      total_loss, total = total_loss + l / k, jax.tree.map(lambda a, b: a + b / k, total, g)
    return _finish(optimizer, total, opt_state, params, model_state, total_loss)

  return step


def mdl(module, optimizer, augment_fn, config):
  c = config.loss

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, key = jax.random.split(key)
    x = augment_fn(images, augment_key)

    def loss_fn(p):
      logits = jax.vmap(lambda k: _forward(module, p, model_state, x, k)[0])(
          jax.random.split(key, c.num_subnetworks))
      ce = jnp.mean(jax.vmap(lambda z: _ce(z, labels))(logits))
      masked = jax.nn.softmax(logits) * (1 - jax.nn.one_hot(labels, logits.shape[-1]))
      unit = masked / (jnp.linalg.norm(masked, axis=-1, keepdims=True) + 1e-12)
      cosines = [jnp.sum(unit[i] * unit[j], -1) for i in range(c.num_subnetworks)
                 for j in range(i + 1, c.num_subnetworks)]
      return ce + c.orthogonality_weight * jnp.mean(jnp.stack(cosines))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    return _finish(optimizer, grads, opt_state, params, model_state, loss)

  return step


def for_config(config):
  """The reference step that matches `config`'s objective."""
  loss, adversary, perturbation = (config.loss.name, config.adversary.name,
                                   config.weight_perturbation.name)
  if (loss, adversary, perturbation) == ('cross_entropy', 'none', 'none'):
    return class_similarity if config.targets.name == 'class_similarity' else erm
  if (loss, perturbation) == ('cross_entropy', 'none') and adversary in ('pgd', 'fgsm'):
    return adversarial
  if (loss, adversary, perturbation) == ('trades', 'none', 'none'):
    return trades
  if (loss, adversary) == ('cross_entropy', 'none') and perturbation == 'amp':
    return amp
  if (loss, adversary) == ('cross_entropy', 'none') and perturbation == 'dropattack':
    return dropattack
  if (loss, adversary, perturbation) == ('mdl', 'none', 'none'):
    return mdl
  raise NotImplementedError(f'no hand-written reference step for {(loss, adversary, perturbation)}')

"""A warm start's optimizer: lr held at 0 while Adam's moments fill, and an EMA at full decay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sorax.train.state import ema_update, lr_schedule, make_optimizer
from tests.test_train import tiny


def test_hold_steps_keep_lr_zero_then_run_the_whole_schedule():
  base = tiny("--config.train.steps=100", "--config.optim.warmup_steps=10",
              "--config.optim.lr=1e-3", "--config.optim.end_lr_frac=0.1")
  held = tiny("--config.train.steps=100", "--config.optim.warmup_steps=10",
              "--config.optim.lr=1e-3", "--config.optim.end_lr_frac=0.1",
              "--config.optim.hold_steps=20")
  plain, hold = lr_schedule(base), lr_schedule(held)
  assert all(float(hold(s)) == 0.0 for s in range(21))
  # After the hold: the same warmup (shifted by 20) to the peak, and the cosine still ends
  # at lr * end_lr_frac at train.steps.
  np.testing.assert_allclose(float(hold(25)), float(plain(5)), rtol=1e-6)
  np.testing.assert_allclose(float(hold(30)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(hold(100)), 1e-4, rtol=1e-5)
  assert float(plain(30)) < 1e-3  # without a hold the peak is at step 10, decaying by 30


@pytest.mark.parametrize("hold", [-1, 100])
def test_hold_steps_out_of_range_is_one_clear_error(hold):
  cfg = tiny("--config.train.steps=100", f"--config.optim.hold_steps={hold}")
  with pytest.raises(ValueError, match="optim.hold_steps"):
    lr_schedule(cfg)


def test_held_steps_fill_adams_moments_without_moving_the_weights():
  cfg = tiny("--config.train.steps=10", "--config.optim.hold_steps=3",
             "--config.optim.warmup_steps=1", "--config.optim.lr=1e-2")
  tx = make_optimizer(cfg)
  params = {"w": jnp.ones((4, 4)), "b": jnp.zeros((4,))}  # w is weight-decayed
  state = tx.init(params)
  grads = {"w": jnp.full((4, 4), 0.5), "b": jnp.full((4,), -0.25)}
  for _ in range(4):  # the 3 held steps and the warmup's own first step (lr 0)
    updates, state = tx.update(grads, state, params)
    assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))
    params = optax.apply_updates(params, updates)
  adam = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)][0]
  assert np.all(np.asarray(adam.mu["w"]) > 0) and np.all(np.asarray(adam.nu["b"]) > 0)
  updates, state = tx.update(grads, state, params)  # step 5: lr > 0, the weights move
  assert np.all(np.asarray(updates["w"]) < 0) and np.all(np.asarray(updates["b"]) > 0)


def test_ema_without_warmup_decays_at_full_rate_from_step_zero():
  ema, params = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  ramped = ema_update(ema, params, 0.999, jnp.asarray(0))
  full = ema_update(ema, params, 0.999, jnp.asarray(0), warmup=False)
  np.testing.assert_allclose(np.asarray(ramped["w"]), 0.9, rtol=1e-6)  # (1 + 0) / (10 + 0) kept
  np.testing.assert_allclose(np.asarray(full["w"]), 0.001, rtol=1e-4)
  late = ema_update(ema, params, 0.999, jnp.asarray(100_000))  # the ramp has reached `decay`
  np.testing.assert_allclose(np.asarray(late["w"]), 0.001, rtol=1e-4)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sorax.diffusion import flow, samplers


def test_interpolation_endpoints_and_target():
  x0 = jnp.full((2, 3, 4), 2.0)
  n = jnp.full((2, 3, 4), -1.0)
  np.testing.assert_allclose(flow.interpolate(x0, n, jnp.zeros(2)), x0)
  np.testing.assert_allclose(flow.interpolate(x0, n, jnp.ones(2)), n)
  # d/dt x_t is the target velocity, for any t.
  t = jnp.array([0.3, 0.7])
  d = (flow.interpolate(x0, n, t + 1e-3) - flow.interpolate(x0, n, t - 1e-3)) / 2e-3
  np.testing.assert_allclose(d, flow.velocity_target(x0, n), atol=1e-3)


def test_loss_is_zero_for_the_true_velocity_and_masks_padding():
  k = jax.random.split(jax.random.PRNGKey(0), 3)
  x0, n = jax.random.normal(k[0], (2, 5, 3)), jax.random.normal(k[1], (2, 5, 3))
  assert float(flow.flow_loss(n - x0, x0, n)) == 0.0
  pred = (n - x0).at[:, 3:].add(7.0)
  mask = jnp.array([[True] * 3 + [False] * 2] * 2)
  assert float(flow.flow_loss(pred, x0, n, mask)) == 0.0
  assert float(flow.flow_loss(pred, x0, n)) == pytest.approx(49.0 * 2 / 5, rel=1e-5)


def test_timesteps_logit_normal_and_shift():
  t = flow.sample_timesteps(jax.random.PRNGKey(0), 20000)
  assert 0.0 < float(t.min()) and float(t.max()) < 1.0
  assert float(jnp.median(t)) == pytest.approx(0.5, abs=0.02)
  ts = flow.sample_timesteps(jax.random.PRNGKey(0), 20000, shift=3.0)
  assert float(jnp.median(ts)) == pytest.approx(0.75, abs=0.02)  # 3*.5/(1+2*.5)
  assert flow.resolution_shift(4096, 1024) == pytest.approx(2.0)
  np.testing.assert_allclose(flow.shift_time(jnp.array([0.0, 1.0]), 5.0), [0.0, 1.0])


@pytest.mark.parametrize("name", ["euler", "heun", "renoise"])
def test_samplers_reach_a_point_mass_exactly(name):
  # For data = a single point x0 the exact velocity is (x - x0) / t and the flow is a straight
  # line, so any sampler lands on x0.
  x0 = jnp.array([[1.5, -2.0, 0.25]])
  v = lambda x, t: (x - x0) / t[:, None]
  x1 = jax.random.normal(jax.random.PRNGKey(0), (1, 3))
  ts = samplers.schedule(7, shift=2.0)
  if name in samplers.STOCHASTIC:
    out = samplers.get_sampler(name)(v, x1, ts, jax.random.PRNGKey(1), 0.9)
  else:
    out = samplers.get_sampler(name)(v, x1, ts)
  np.testing.assert_allclose(out, x0, atol=1e-5)


def _gaussian_velocity(m, s):
  """Data N(m, s^2): the exact velocity (x - E[x0 | x_t]) / t with the Gaussian posterior mean."""
  def v(x, t):
    t = t[:, None]
    var = (1 - t) ** 2 * s ** 2 + t ** 2
    e_x0 = m + (1 - t) * s ** 2 * (x - (1 - t) * m) / var
    return (x - e_x0) / t
  return v


def test_renoise_with_eta_zero_is_euler():
  v = _gaussian_velocity(2.0, 0.5)
  x1 = jnp.linspace(-2, 2, 9)[:, None]
  ts = samplers.schedule(6, shift=1.5)
  np.testing.assert_allclose(samplers.renoise(v, x1, ts, jax.random.PRNGKey(0), 0.0),
                             samplers.euler(v, x1, ts), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="eta=-0.5"):
    samplers.renoise(v, x1, ts, jax.random.PRNGKey(0), -0.5)


def test_renoise_past_ddpm_narrows_towards_the_mode():
  # eta > 1 renoises more than DDPM (at 100, the clean estimate noised afresh every step): the
  # mean stays, the spread shrinks (at 64 steps eta 3 already reaches the cap).
  m, s = 2.0, 0.5
  x1 = jax.random.normal(jax.random.PRNGKey(2), (20000, 1))
  outs = [samplers.renoise(_gaussian_velocity(m, s), x1, samplers.schedule(64),
                           jax.random.PRNGKey(3), eta) for eta in (1.0, 3.0, 100.0)]
  stds = [float(o.std()) for o in outs]
  assert all(abs(float(o.mean()) - m) < 0.02 for o in outs)
  assert abs(stds[0] - s) < 0.03  # DDPM: right (up to 64 steps' discretisation)
  assert stds[1] < stds[0] - 0.05 and stds[2] <= stds[1] + 1e-3


def test_renoise_late_eta_applies_below_the_switch_only():
  v = _gaussian_velocity(2.0, 0.5)
  x1 = jax.random.normal(jax.random.PRNGKey(2), (64, 1))
  ts, key = samplers.schedule(16), jax.random.PRNGKey(3)
  plain = samplers.renoise(v, x1, ts, key, 2.0)
  # A switch at t = 0 (no step starts below it) or the same eta late: the plain sampler.
  np.testing.assert_allclose(samplers.renoise(v, x1, ts, key, 2.0, late=(0.0, 0.0)), plain)
  np.testing.assert_allclose(samplers.renoise(v, x1, ts, key, 2.0, late=(0.5, 2.0)), plain)
  # A switch above t = 1 with eta 0 everywhere is the deterministic Euler path.
  np.testing.assert_allclose(samplers.renoise(v, x1, ts, key, 2.0, late=(1.0 + 1e-6, 0.0)),
                             samplers.euler(v, x1, ts), rtol=1e-5, atol=1e-6)
  # eta 0 below t = 0.5 changes the end; the steps above are the same draws as before.
  assert float(jnp.abs(samplers.renoise(v, x1, ts, key, 2.0, late=(0.5, 0.0)) - plain).max()) > 1e-3
  with pytest.raises(ValueError, match="late"):
    samplers.renoise(v, x1, ts, key, 2.0, late=(0.5, -1.0))


def test_renoise_row_keys_make_each_row_independent_of_its_batch():
  v = _gaussian_velocity(2.0, 0.5)
  x1 = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
  ts = samplers.schedule(12)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(5), i))(jnp.arange(4))
  full = samplers.renoise(v, x1, ts, keys, 2.0)
  # Rows 1 and 3 drawn alone (with their own keys) are the same rows of the full batch.
  part = samplers.renoise(v, x1[jnp.asarray([1, 3])], ts, keys[jnp.asarray([1, 3])], 2.0)
  np.testing.assert_allclose(part, full[jnp.asarray([1, 3])], rtol=1e-6, atol=1e-6)
  # One shared key draws other noise (the rows' keys are what is used).
  assert float(jnp.abs(samplers.renoise(v, x1, ts, keys[0], 2.0) - full).max()) > 1e-3
  with pytest.raises(ValueError, match="row keys"):
    samplers.renoise(v, x1, ts, keys[:3], 2.0)


def test_renoise_scale_zero_is_euler_per_element():
  v = _gaussian_velocity(2.0, 0.5)
  x1 = jax.random.normal(jax.random.PRNGKey(2), (8, 2))
  ts, key = samplers.schedule(12), jax.random.PRNGKey(3)
  plain, euler = samplers.renoise(v, x1, ts, key, 2.0), samplers.euler(v, x1, ts)
  np.testing.assert_allclose(samplers.renoise(v, x1, ts, key, 2.0, scale=jnp.ones((1, 2))), plain)
  out = samplers.renoise(v, x1, ts, key, 2.0, scale=jnp.asarray([[0.0, 1.0]]))
  # The velocity is per element, so a column without fresh noise is exactly the Euler path.
  np.testing.assert_allclose(out[:, 0], euler[:, 0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[:, 1], plain[:, 1])


def test_renoise_samples_the_data_distribution():
  # With the exact velocity every eta in [0, 1] keeps the marginals: the samples are N(m, s^2).
  m, s = 2.0, 0.5
  x1 = jax.random.normal(jax.random.PRNGKey(2), (20000, 1))
  out = samplers.renoise(_gaussian_velocity(m, s), x1, samplers.schedule(256),
                         jax.random.PRNGKey(3), 1.0)
  assert abs(float(out.mean()) - m) < 0.02 and abs(float(out.std()) - s) < 0.03
  # ... and fresh noise changes the path: not the deterministic map m + s * x1.
  assert float(jnp.abs(out - (m + s * x1)).mean()) > 0.1


def test_heun_beats_euler_on_a_gaussian():
  # Data N(m, s^2): the exact velocity is (x - E[x0 | x_t]) / t with the Gaussian posterior
  # mean below, and the ODE maps noise x1 to m + s * x1 exactly.
  m, s = 2.0, 0.5
  v = _gaussian_velocity(m, s)
  x1 = jnp.linspace(-2, 2, 9)[:, None]
  exact = m + s * x1
  ts = samplers.schedule(8)
  err_e = float(jnp.abs(samplers.euler(v, x1, ts) - exact).max())
  err_h = float(jnp.abs(samplers.heun(v, x1, ts) - exact).max())
  assert err_h < err_e / 3 and err_h < 0.05


def test_cfg_combines_branches():
  v = samplers.guided(lambda x, t: (x * 0 + 3.0, x * 0 + 1.0), 2.5)
  np.testing.assert_allclose(v(jnp.zeros((1, 2)), jnp.ones(1)), 1.0 + 2.5 * 2.0)
  # Guidance interval: inside it the guided velocity, outside the plain conditional one.
  vi = samplers.guided(lambda x, t: (x * 0 + 3.0, x * 0 + 1.0), 2.5, (0.2, 0.7))
  out = vi(jnp.zeros((3, 2)), jnp.array([0.1, 0.5, 0.9]))
  np.testing.assert_allclose(out[:, 0], [3.0, 6.0, 3.0])
  with pytest.raises(ValueError, match="guidance interval"):
    samplers.guided(lambda x, t: (x, x), 2.0, (0.8, 0.2))
  with pytest.raises(ValueError, match="unknown sampler 'rk9'"):
    samplers.get_sampler("rk9")
  with pytest.raises(ValueError, match="at least 1 step"):
    samplers.schedule(0)


def test_x0_prediction_gives_the_true_velocity_from_the_true_x0():
  k = jax.random.split(jax.random.PRNGKey(1), 2)
  x0, n = jax.random.normal(k[0], (3, 4, 2)), jax.random.normal(k[1], (3, 4, 2))
  t = jnp.array([0.1, 0.5, 0.9])
  x_t = flow.interpolate(x0, n, t)
  np.testing.assert_allclose(flow.to_velocity(x0, x_t, t, "x0"), n - x0, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(flow.to_velocity(n - x0, x_t, t, "velocity"), n - x0)
  # Below t_min the division is clamped, so t -> 0 stays finite.
  assert jnp.isfinite(flow.to_velocity(x0, x_t, jnp.zeros(3), "x0")).all()
  with pytest.raises(ValueError, match="unknown prediction 'eps'"):
    flow.to_velocity(x0, x_t, t, "eps")


@pytest.mark.parametrize("name", ["euler", "heun", "renoise"])
def test_samplers_thread_a_state_from_call_to_call(name):
  """A stateful velocity sees the state its previous call returned; one that ignores its state
  samples exactly what the stateless form does."""
  import jax
  from sorax.diffusion import samplers
  integrate = samplers.get_sampler(name)
  ts = samplers.schedule(6)
  x = jnp.ones((2, 3))
  extra = (jax.random.PRNGKey(0), 0.5) if name == "renoise" else ()
  v = lambda x, t: -x * t[:, None]
  plain = integrate(v, x, ts, *extra)
  same = integrate(lambda x, t, s: (v(x, t), s), x, ts, *extra, state=jnp.zeros(()))
  np.testing.assert_allclose(same, plain, rtol=1e-6)
  counted = integrate(lambda x, t, s: (v(x, t) + 0 * s, s + 1), x, ts, *extra,
                      state=jnp.zeros(()))
  np.testing.assert_allclose(counted, plain, rtol=1e-6)
  # The state reaches the velocity: a velocity that reads the call count moves x differently.
  reads = integrate(lambda x, t, s: (v(x, t) + 0.01 * s, s + 1), x, ts, *extra,
                    state=jnp.zeros(()))
  assert not np.allclose(reads, plain)


def test_guided_stateful_passes_the_guided_estimate():
  """guided(stateful=True): both branches get the previous estimate; the new state is
  x - t * (guided velocity)."""
  from sorax.diffusion import samplers
  seen = []
  def both(x, t, prev):
    seen.append(prev)
    return x + prev, x
  v = samplers.guided(both, 2.0, stateful=True)
  x, t = jnp.ones((2, 3)), jnp.full((2,), 0.5)
  vel, est = v(x, t, 3.0 * jnp.ones((2, 3)))
  np.testing.assert_allclose(vel, x + 2.0 * 3.0)  # vu + 2 (vc - vu) = x + 2 * prev
  np.testing.assert_allclose(est, x - 0.5 * vel)

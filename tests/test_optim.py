import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxcxr import config_lib, losses, optim


def _cfg(**kw):
  c = config_lib.base_config()
  for k, v in kw.items():
    section, key = k.split("__")
    c[section][key] = v
  return c


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_decreases_a_quadratic(name):
  c = _cfg(
    optimizer__name=name,
    optimizer__lr=0.05,
    optimizer__weight_decay=1e-4,
    optimizer__grad_clip_norm=10.0,
  )
  tx = optim.make_optimizer(c.optimizer, optax.constant_schedule(0.05))
  params = {"w": jnp.ones((3, 3)), "b": jnp.ones((3,))}
  state = tx.init(params)
  loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  start = loss(params)
  for _ in range(20):
    g = jax.grad(loss)(params)
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  assert loss(params) < start


def test_unknown_optimizer_and_schedule_names():
  with pytest.raises(ValueError, match="lamb.*radam"):
    optim.make_optimizer(_cfg(optimizer__name="lamb").optimizer, optax.constant_schedule(1.0))
  with pytest.raises(ValueError, match="poly"):
    optim.make_schedule(_cfg(schedule__name="poly").schedule, 1.0, 10, 1)


def test_schedules():
  c = _cfg(schedule__name="cosine", schedule__warmup_steps=10)
  s = optim.make_schedule(c.schedule, 1.0, 110, 10)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0)
  assert float(s(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(s(110)) == pytest.approx(0.0, abs=1e-6)
  c = _cfg(schedule__name="step", schedule__boundaries_epochs=(2, 4), schedule__factor=0.1)
  s = optim.make_schedule(c.schedule, 1.0, 100, 10)
  assert [float(s(i)) for i in (0, 19, 21, 39, 41)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
  s = optim.make_schedule(_cfg(schedule__name="constant").schedule, 0.3, 100, 10)
  assert float(s(99)) == pytest.approx(0.3)


def test_weight_decay_skips_biases_and_norm_scales():
  c = _cfg(optimizer__name="sgd", optimizer__momentum=0.0, optimizer__weight_decay=0.5)
  tx = optim.make_optimizer(c.optimizer, optax.constant_schedule(1.0))
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.5)
  np.testing.assert_allclose(updates["bias"], 0.0)


def test_grad_clipping():
  c = _cfg(optimizer__name="sgd", optimizer__momentum=0.0, optimizer__grad_clip_norm=1.0)
  tx = optim.make_optimizer(c.optimizer, optax.constant_schedule(1.0))
  params = {"w": jnp.zeros((4,))}
  updates, _ = tx.update({"w": jnp.full((4,), 10.0)}, tx.init(params), params)
  assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)


def test_label_smoothing_loss_matches_definition():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  labels = jnp.array([0])
  c = ml_collections.ConfigDict({"name": "softmax_xent", "label_smoothing": 0.1})
  got = losses.make_loss(c, 3)(logits, labels)
  logp = jax.nn.log_softmax(logits)[0]
  target = jnp.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
  assert float(got[0]) == pytest.approx(float(-(target * logp).sum()), rel=1e-6)
  with pytest.raises(ValueError, match="focal"):
    losses.make_loss(ml_collections.ConfigDict({"name": "focal"}), 3)


def test_weight_decay_on_every_parameter_as_torch():
  c = _cfg(optimizer__name="sgd", optimizer__momentum=0.0, optimizer__weight_decay=0.5)
  c.optimizer.decay = "all"
  tx = optim.make_optimizer(c.optimizer, optax.constant_schedule(1.0))
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.5)
  np.testing.assert_allclose(updates["bias"], -0.5)
  c.optimizer.decay = "some"
  with pytest.raises(ValueError, match="decay='some'"):
    optim.make_optimizer(c.optimizer, optax.constant_schedule(1.0))


def test_onecycle_schedule_warms_up_then_anneals():
  c = _cfg(schedule__name="onecycle", schedule__pct_start=0.3, schedule__div_factor=10.0)
  s = optim.make_schedule(c.schedule, 1.0, 100, 10)
  assert float(s(0)) == pytest.approx(0.1)
  assert float(s(30)) == pytest.approx(1.0)
  assert float(s(100)) == pytest.approx(1.0 / (10.0 * 1e4), rel=1e-3)

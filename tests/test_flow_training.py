"""The normalizing-flow base model of latent EBMs (Xiao, Yan & Amit 2020): Pyro's transforms in torch,
NumPyro's twin in JAX, the training, the zoo entries and the commands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppl_ebm.nets.flows import AffineAutoregressiveFlow, flow_log_prob, flow_params
from ppl_ebm.nets.registry import NetworkConfig, build_network


def _random_flow(seed: int = 0, layers: int = 4, width: int = 16) -> AffineAutoregressiveFlow:
    """A flow whose layers do something (Pyro's MADE init keeps them near the identity)."""
    torch.manual_seed(seed)
    flow = build_network(NetworkConfig("affine_autoregressive_flow", {"layers": layers, "width": width}))
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return flow


def test_the_jax_translation_and_the_numpyro_density_match_pyro():
    """torch_to_jax(flow) is NumPyro's IAF with Pyro's weights: G(z) and log p(x) agree."""
    import jax.numpy as jnp

    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    flow = _random_flow()
    z = torch.randn(64, 2)
    with torch.no_grad():
        x = flow(z)
        log_p = flow.log_prob(x)
    function, params = torch_to_jax(flow, torch.zeros(2, 2))
    np.testing.assert_allclose(np.asarray(function(params, jnp.asarray(z.numpy()))), x.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(flow_log_prob(flow, flow_params(flow), jnp.asarray(x.numpy()))),
                               log_p.numpy(), atol=1e-4)
    assert float(x.std()) > 1.2 or float((x - z).abs().max()) > 0.5  # not the identity


def test_log_density_is_the_change_of_variables_of_a_known_affine_flow():
    """Output layers of weight 0: every layer is x = exp(s) * z + m with constant s, m, so G is an
    affine map with diagonal A = exp(sum s) and p(x) = N(x; b, A^2) exactly."""
    flow = build_network(NetworkConfig("affine_autoregressive_flow", {"layers": 3, "width": 8}))
    shift, log_scale = torch.zeros(2), torch.zeros(2)
    rng = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for transform in flow.transforms:
            last = transform.arn.layers[-1]
            last.weight.zero_()
            m, s = torch.randn(2, generator=rng), 0.5 * torch.randn(2, generator=rng)
            last.bias.copy_(torch.cat([m, s]))  # output rows: means then log scales, per coordinate
            shift, log_scale = torch.exp(s) * shift + m, log_scale + s
    x = torch.randn(100, 2) * 3
    expected = torch.distributions.Normal(shift, torch.exp(log_scale)).log_prob(x).sum(-1)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(flow(torch.zeros(1, 2))[0], shift)


def test_a_random_flow_density_integrates_to_one():
    flow = _random_flow(seed=1)
    with torch.no_grad():
        spread = flow(torch.randn(20000, 2))
        lo, hi = spread.min(0).values - 2, spread.max(0).values + 2
        n = 1000  # the random flow spreads over hundreds of units with sharp ridges
        xs = [torch.linspace(float(lo[i]), float(hi[i]), n) for i in range(2)]
        grid = torch.stack(torch.meshgrid(*xs, indexing="ij"), -1).reshape(-1, 2)
        cell = float((xs[0][1] - xs[0][0]) * (xs[1][1] - xs[1][0]))
        mass = float(torch.exp(flow.log_prob(grid)).sum()) * cell
    assert abs(mass - 1.0) < 0.02, mass


def test_flow_training_raises_the_likelihood_and_writes_the_weights_back():
    from ppl_ebm import data
    from ppl_ebm.training.flow import FlowConfig, train_flow

    config = FlowConfig("swissroll", iterations=300, layers=4, width=16, keep_best=True)
    draw = lambda n, seed: data.sample_dataset("swissroll", n, seed)  # noqa: E731
    untrained = build_network(config.generator_config())
    trained = train_flow(config, draw, progress_bar=False, pool_size=5000)
    history = trained.history["log_likelihood"]
    assert history[-1] > history[0]  # history[0] is the mean over the first 100 steps
    test = torch.as_tensor(draw(2000, 99), dtype=torch.float32)
    with torch.no_grad():
        before, after = float(untrained.log_prob(test).mean()), float(trained.flow.log_prob(test).mean())
    assert after > before + 0.3  # nats per point
    assert abs(after - history[-1]) < 0.5  # the torch module holds the trained weights
    held_out = trained.history["held_out_log_likelihood"]
    assert trained.history["best_iteration"] == [100 * (1 + int(np.argmax(held_out)))]


def test_flow_config_names_a_bad_field():
    from ppl_ebm.training.flow import FlowConfig

    with pytest.raises(ValueError, match="layers"):
        FlowConfig("swissroll", layers=0).validate()
    with pytest.raises(ValueError, match="latent_dim"):
        FlowConfig("swissroll", latent_dim=3).validate()


def test_flow_commands_at_toy_size_write_loadable_zoo_entries(tmp_path):
    """train-flow, then train-latent-ebm on it; both load by folder, in torch and in JAX."""
    from problems import train_toy_latent_ebm_on

    from ppl_ebm.cli import main
    from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax
    from ppl_ebm.zoo import load_latent_ebm, load_model

    assert main(["train-flow", "--dataset", "25gaussians", "--iterations", "100", "--layers", "2", "--width", "8",
                 "--name", "flow", "--output", str(tmp_path), "--card-samples", "200", "--no-progress"]) == 0
    base = load_latent_ebm(tmp_path / "flow")
    assert torch.all(base.log_tilt(torch.randn(5, 2)) == 0)  # the base entry is the flow itself: E = 0
    card = (tmp_path / "flow" / "MODEL_CARD.md").read_text()
    assert "Normalizing flow" in card and "| emd |" in card
    assert load_model(tmp_path / "flow").config["base_model_type"] == "flow"
    ebm = load_latent_ebm(train_toy_latent_ebm_on(tmp_path / "flow", tmp_path))
    card = (tmp_path / "ebm" / "MODEL_CARD.md").read_text()
    assert "the flow's forward map" in card and "base flow" in card
    _check_jax_twin(ebm, LatentEBMJax)


def _check_jax_twin(ebm, jax_class) -> None:
    import jax.numpy as jnp

    u = torch.randn(16, 2)
    potential, grad = ebm.potential_and_grad(u)
    jax_potential, jax_grad = jax_class.from_torch(ebm).potential_and_grad(jnp.asarray(u.numpy()))
    np.testing.assert_allclose(np.asarray(jax_potential), potential.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(jax_grad), grad.detach().numpy(), rtol=1e-3, atol=1e-3)


def _shipped_flow_entries() -> list[str]:
    import json

    from ppl_ebm import zoo

    return [name for name in zoo.list_models(kind="toy2d")
            if json.loads((zoo.model_dir(name) / "config.json").read_text()).get("base_model_type") == "flow"]


@pytest.mark.parametrize("name", _shipped_flow_entries())
def test_shipped_flow_entries_evaluate_alike_in_torch_and_jax(name):
    from ppl_ebm import zoo
    from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

    model = zoo.load_model(name)
    assert isinstance(model.generator, AffineAutoregressiveFlow)
    assert math.isfinite(model.config["generator_metrics"]["emd"])
    _check_jax_twin(zoo.load_latent_ebm(name), LatentEBMJax)

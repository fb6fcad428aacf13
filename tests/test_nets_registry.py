"""The network registry: NetworkConfig's JSON round trip, building every registered
architecture, the errors for unknown names and bad options, and registering a new one."""

from __future__ import annotations

import pytest
import torch

from ppl_ebm.nets import architectures, registry
from ppl_ebm.nets.registry import NetworkConfig, build_network, network_names, register_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: One small config per built-in architecture (conv nets at 8x8 so they build in milliseconds).
CONFIGS = {
    "mlp": NetworkConfig("mlp", {"in_features": 3, "hidden": (5, 6), "out_features": 2, "activation": "tanh"}),
    "toy_generator": NetworkConfig("toy_generator", {"latent_dim": 2, "width": 16, "depth": 2}),
    "toy_critic": NetworkConfig("toy_critic", {"data_dim": 2, "width": 16, "depth": 3, "activation": "leaky_relu"}),
    "batchnorm_generator": NetworkConfig("batchnorm_generator", {"latent_dim": 4, "width": 8, "depth": 2}),
    "conv_generator": NetworkConfig("conv_generator", {"latent_dim": 8, "channels": 3, "base_width": 4,
                                                       "image_size": 8}),
    "conv_critic": NetworkConfig("conv_critic", {"channels": 3, "base_width": 4, "image_size": 8,
                                                 "spectral_norm": True}),
    "image_classifier": NetworkConfig("image_classifier", {"channels": 1, "image_size": 8, "base_width": 4,
                                                           "feature_width": 6, "num_classes": 10}),
    # Pyro's affine autoregressive transforms (ppl_ebm.nets.flows), the flows' generator.
    "affine_autoregressive_flow": NetworkConfig("affine_autoregressive_flow", {"data_dim": 2, "layers": 2,
                                                                               "width": 8}),
}


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in module.state_dict().items()}


def test_every_builtin_architecture_is_registered():
    assert set(network_names()) == set(CONFIGS) == {*architectures.__all__, "affine_autoregressive_flow"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_round_trips_through_json_to_the_same_module(name):
    config = CONFIGS[name]
    again = NetworkConfig.from_json(config.to_json())
    assert again == config and hash(again) == hash(config)
    assert NetworkConfig.from_dict(config.to_dict()) == config
    first, second = build_network(config), build_network(again)
    assert _shapes(first) == _shapes(second) and _shapes(first)
    # The dict form builds the same module too (what a config.json holds).
    assert _shapes(build_network(config.to_dict())) == _shapes(first)


def test_built_modules_match_the_builders_and_map_the_right_shapes():
    torch.manual_seed(0)
    via_registry = build_network(CONFIGS["conv_generator"])
    torch.manual_seed(0)
    direct = architectures.conv_generator(**CONFIGS["conv_generator"].options)
    for (key, a), (key_b, b) in zip(via_registry.state_dict().items(), direct.state_dict().items()):
        assert key == key_b and torch.equal(a, b)
    with torch.no_grad():
        images = via_registry.eval()(torch.randn(4, 8))
        assert images.shape == (4, 3, 8, 8)
        assert build_network(CONFIGS["conv_critic"]).eval()(images).shape == (4, 1)
        assert build_network(CONFIGS["mlp"])(torch.zeros(4, 3)).shape == (4, 2)


def test_fourier_toy_critic_reads_x_and_sinusoids_of_a_seeded_fixed_buffer():
    config = NetworkConfig("toy_critic", {"data_dim": 2, "width": 8, "depth": 1, "fourier_features": 500,
                                          "fourier_scale": 2.0})
    torch.manual_seed(3)
    critic = build_network(config)
    torch.manual_seed(3)
    again = build_network(config)
    features = critic[0]
    assert isinstance(features, architectures.FourierFeatures) and isinstance(critic[-1], torch.nn.Linear)
    # B is a buffer (saved in the state dict, never a parameter) drawn from the seeded global stream.
    assert "0.frequencies" in critic.state_dict() and "0.frequencies" not in dict(critic.named_parameters())
    assert torch.equal(features.frequencies, again[0].frequencies) and features.frequencies.shape == (500, 2)
    assert abs(float(features.frequencies.std()) - 2.0) < 0.15
    assert critic[1].in_features == 2 + 2 * 500
    x = torch.randn(3, 2)
    projection = 2 * torch.pi * x @ features.frequencies.T
    torch.testing.assert_close(features(x), torch.cat([x, projection.sin(), projection.cos()], dim=1))
    # Without the option the network is the plain MLP it always was (same draws, same weights).
    torch.manual_seed(3)
    plain = build_network(NetworkConfig("toy_critic", {"data_dim": 2, "width": 8, "depth": 1}))
    torch.manual_seed(3)
    direct = architectures.mlp(2, [8], 1)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), direct.state_dict().values()))


def test_tuples_are_stored_as_lists():
    # JSON has no tuples: storing lists keeps config == from_json(to_json(config)).
    assert CONFIGS["mlp"].options["hidden"] == [5, 6]


@pytest.mark.parametrize(
    "config, message",
    [
        (NetworkConfig("resnet", {}),
         r"architecture must be one of \[.*'toy_critic'.*\], got 'resnet'; .*register_network"),
        (NetworkConfig("toy_critic", {"widht": 8}),
         r"options \['widht'\] are not options of architecture 'toy_critic'; its options are \[.*'width'\]"),
        (NetworkConfig("mlp", {"hidden": [4]}), r"'mlp' needs the options \['in_features', 'out_features'\]"),
        (NetworkConfig("toy_critic", {"width": "wide"}), r"option 'width' of architecture 'toy_critic' must be an int"),
        (NetworkConfig("toy_critic", {"width": 8.0}), r"option 'width' .* must be an int"),
        (NetworkConfig("toy_critic", {"depth": True}), r"option 'depth' .* must be an int"),
        (NetworkConfig("conv_critic", {"spectral_norm": 1}), r"option 'spectral_norm' .* must be a bool"),
        (NetworkConfig("toy_critic", {"activation": 1}), r"option 'activation' .* must be a string"),
        (NetworkConfig("toy_critic", {"width": 0}), r"width must be an int >= 1, got 0"),
        (NetworkConfig("toy_generator", {"depth": -1}), r"depth must be an int >= 0, got -1"),
        (NetworkConfig("toy_critic", {"activation": "gelu"}), r"activation must be one of \[.*'relu'.*\], got 'gelu'"),
        (NetworkConfig("conv_generator", {"image_size": 12}), r"image_size must be 4 \* 2\*\*k"),
        (NetworkConfig("mlp", {"in_features": 2, "out_features": 1, "hidden": [4, 0]}),
         r"hidden\[1\] must be an int >= 1"),
        (NetworkConfig("toy_critic", {"fourier_features": -1}), r"fourier_features must be an int >= 0, got -1"),
        (NetworkConfig("toy_critic", {"fourier_features": 4, "fourier_scale": 0.0}),
         r"fourier_scale must be a finite number > 0, got 0.0"),
        (NetworkConfig("toy_critic", {"fourier_scale": "wide"}), r"option 'fourier_scale' .* must be a number"),
    ],
)
def test_bad_configs_raise_value_errors_naming_the_argument(config, message):
    with pytest.raises(ValueError, match=message):
        build_network(config)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"architecture": "toy_critic", "option": {}}, r"must have the keys 'architecture' and optionally 'options'"),
        ({"options": {}}, r"must have the keys 'architecture'"),
        (["toy_critic"], r"must be a mapping"),
        ({"architecture": "toy_critic", "options": {"width": object()}}, r"options\['width'\] must be a JSON value"),
        ({"architecture": "", "options": {}}, r"architecture must be a non-empty string"),
        ({"architecture": "toy_critic", "options": [1, 2]}, r"options must be a mapping"),
    ],
)
def test_malformed_config_data_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        build_network(data)


def test_registering_a_new_architecture_is_one_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test

    @register_network("linear_critic")
    def linear_critic(data_dim: int = 2) -> torch.nn.Module:
        return torch.nn.Linear(data_dim, 1)

    assert "linear_critic" in network_names()
    module = build_network(NetworkConfig("linear_critic", {"data_dim": 5}))
    assert _shapes(module) == {"weight": (1, 5), "bias": (1,)}
    register_network("linear_critic", linear_critic)  # the same builder again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        register_network("linear_critic", lambda: torch.nn.Identity())
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        register_network("", linear_critic)


def test_training_config_builds_through_the_registry():
    from ppl_ebm.training.gan import TrainingConfig, build_networks

    config = TrainingConfig(dataset="swissroll", latent_dim=3, generator_width=8, critic_width=12, depth=2)
    generator_config, critic_config = config.network_configs(data_dim=2)
    assert generator_config == NetworkConfig("toy_generator", {"latent_dim": 3, "data_dim": 2, "width": 8,
                                                               "depth": 2, "activation": "relu"})
    generator, critic = build_networks(config)
    # The same layers the architectures give when called directly.
    assert _shapes(generator) == _shapes(architectures.toy_generator(latent_dim=3, width=8, depth=2))
    assert _shapes(critic) == _shapes(architectures.toy_critic(width=12, depth=2))

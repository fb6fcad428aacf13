"""Fine-tuning a critic by BCE against a frozen generator recovers the log density ratio.

The generator maps z ~ N(0, 1) to z - 1 (so p_g = N(-1, 1)) and the data are N(1, 1): the
BCE minimiser is ``log N(x; 1, 1) - log N(x; -1, 1) = 2 x``. A critic that starts far from it
(a constant 3) must end close to ``2 x`` where both laws have mass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppl_ebm.nets import architectures as networks
from ppl_ebm.training.critic_tuning import FineTuneConfig, fine_tune_critic

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shift_generator() -> torch.nn.Module:
    generator = torch.nn.Sequential(torch.nn.Linear(1, 1))
    with torch.no_grad():
        generator[0].weight.fill_(1.0)
        generator[0].bias.fill_(-1.0)
    return generator.eval()


def _real(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 1)) + 1.0).astype(np.float32)


def _offset_critic() -> torch.nn.Module:
    torch.manual_seed(0)
    critic = networks.toy_critic(data_dim=1, width=32, depth=2)
    with torch.no_grad():  # start at a wrong, constant-ish logit
        critic[-1].bias.fill_(3.0)
    return critic.eval()


def test_fine_tuning_recovers_the_log_ratio():
    critic = _offset_critic()
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    config = FineTuneConfig(steps=1500, learning_rate=3e-3, batch_size=512, pool_size=100_000)
    tuned = fine_tune_critic(_shift_generator(), critic, _real, latent_dim=1, config=config, progress_bar=False)
    x = torch.linspace(-1.5, 1.5, 31).reshape(-1, 1)
    with torch.no_grad():
        logit = tuned.critic(x).reshape(-1).numpy()
    # BCE's minimiser is the log ratio 2x; the residual is optimisation + Monte Carlo error,
    # which at 1500 steps of 1024 samples is well under 0.3 nats here (the start is off by 3).
    np.testing.assert_allclose(logit, 2.0 * x.reshape(-1).numpy(), atol=0.3, rtol=0.0)
    # Chance BCE is 2 log 2; the optimum here is ~0.94: the history must show the descent.
    assert tuned.history["bce"][-1] < tuned.history["bce"][0] and tuned.history["bce"][-1] < 1.0
    # The input critic is untouched; the result has its architecture (saves like the original).
    for key, value in critic.state_dict().items():
        assert torch.equal(value, before[key])
    assert tuned.critic.state_dict().keys() == critic.state_dict().keys()


def test_wide_proposal_keeps_the_log_ratio_and_reaches_the_tail():
    """Generated batches from N(0, 2.5^2), weighted back to the prior, have the same minimiser
    2 x. Without the weights it would be 2 x - log(q_g / p_g): 0.76 nats off at x = 1, which the
    0.3-nat tolerance catches. In the tail (x in [-5, -3], 2-4 std below p_g's mean) the logit must
    not lie above the log ratio: that is what keeps a DDLS target inside the prior's reach."""
    config = FineTuneConfig(steps=1500, learning_rate=3e-3, batch_size=512, pool_size=100_000, proposal_scale=2.5)
    tuned = fine_tune_critic(_shift_generator(), _offset_critic(), _real, latent_dim=1, config=config,
                             progress_bar=False)
    bulk = torch.linspace(-1.5, 1.5, 31).reshape(-1, 1)
    tail = torch.linspace(-5.0, -3.0, 21).reshape(-1, 1)
    with torch.no_grad():
        bulk_logit = tuned.critic(bulk).reshape(-1).numpy()
        tail_logit = tuned.critic(tail).reshape(-1).numpy()
    np.testing.assert_allclose(bulk_logit, 2.0 * bulk.reshape(-1).numpy(), atol=0.3, rtol=0.0)
    assert np.all(tail_logit <= 2.0 * tail.reshape(-1).numpy() + 0.5), tail_logit
    assert tuned.config.proposal_scale == 2.5


def test_extended_generator_gives_the_ratio_for_its_noisy_law():
    """DDLS Corollary 1: with ``extended_noise_scale = eps`` the fakes are ``G(z) + eps z'``. A
    generator that collapses every z to 0 has no density to form a ratio with; with eps = 1 its
    extended law is N(0, 1), and against data N(0, 2^2) the minimiser is the known
    ``log N(x; 0, 4) - log N(x; 0, 1) = -log 2 + 3 x^2 / 8``. Without the noise every fake sits at
    0, where the critic is driven down without bound, and the same check fails."""
    collapsed = torch.nn.Sequential(torch.nn.Linear(1, 1))
    with torch.no_grad():
        collapsed[0].weight.zero_()
        collapsed[0].bias.zero_()

    def wide(n, seed):
        return (2.0 * np.random.default_rng(seed).standard_normal((n, 1))).astype(np.float32)

    x = torch.linspace(-1.5, 1.5, 31).reshape(-1, 1)
    truth = -np.log(2.0) + 3.0 * x.reshape(-1).numpy() ** 2 / 8.0
    logits = {}
    for noise in (1.0, 0.0):
        config = FineTuneConfig(steps=1500, learning_rate=3e-3, batch_size=512, pool_size=100_000,
                                extended_noise_scale=noise)
        tuned = fine_tune_critic(collapsed.eval(), _offset_critic(), wide, latent_dim=1, config=config,
                                 progress_bar=False)
        with torch.no_grad():
            logits[noise] = tuned.critic(x).reshape(-1).numpy()
    np.testing.assert_allclose(logits[1.0], truth, atol=0.3, rtol=0.0)
    assert np.max(np.abs(logits[0.0] - truth)) > 1.0, logits[0.0]


def test_cosine_schedule_removes_the_last_iterates_noise():
    """A constant step leaves the result one noisy Adam iterate: its error against the known
    ratio 2 x is SGD noise (0.05-0.12 nats RMS here over seeds). With the step decayed to 0 the
    noise averages out (0.02-0.03). Same seeds, same steps: the schedule alone must halve it."""
    x = torch.linspace(-1.5, 1.5, 31).reshape(-1, 1)
    rms = {}
    for schedule in ("constant", "cosine"):
        errors = []
        for seed in (0, 1):
            config = FineTuneConfig(steps=500, learning_rate=3e-3, batch_size=512, pool_size=100_000, seed=seed,
                                    learning_rate_schedule=schedule)
            tuned = fine_tune_critic(_shift_generator(), _offset_critic(), _real, latent_dim=1, config=config,
                                     progress_bar=False)
            with torch.no_grad():
                logit = tuned.critic(x).reshape(-1).numpy()
            errors.append(float(np.sqrt(np.mean((logit - 2.0 * x.reshape(-1).numpy()) ** 2))))
        rms[schedule] = errors
    assert max(rms["cosine"]) < 0.05 and np.mean(rms["cosine"]) < 0.5 * np.mean(rms["constant"]), rms


def test_fine_tuning_accepts_an_array_of_real_samples():
    config = FineTuneConfig(steps=200, learning_rate=3e-3, batch_size=256)
    tuned = fine_tune_critic(_shift_generator(), _offset_critic(), _real(20_000, 1), latent_dim=1, config=config,
                             progress_bar=False)
    assert len(tuned.history["bce"]) == 2 and np.isfinite(tuned.history["bce"]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"config": FineTuneConfig(steps=0)}, "steps must be a positive int"),
        ({"config": FineTuneConfig(learning_rate=-1.0)}, "learning_rate must be > 0"),
        ({"config": FineTuneConfig(proposal_scale=0.5)}, "proposal_scale must be a number in"),
        ({"config": FineTuneConfig(extended_noise_scale=-0.1)}, "extended_noise_scale must be a number >= 0"),
        ({"config": FineTuneConfig(learning_rate_schedule="linear")}, "learning_rate_schedule must be one of"),
        ({"real": np.zeros((10, 3), np.float32)}, "generator makes"),
        ({"real": np.zeros(5, np.float32)}, "array shaped"),
        ({"latent_dim": 0}, "latent_dim must be a positive int"),
    ],
)
def test_fine_tuning_rejects_bad_input(kwargs, message):
    arguments = {"real": _real, "latent_dim": 1, "config": FineTuneConfig(steps=10), **kwargs}
    with pytest.raises(ValueError, match=message):
        fine_tune_critic(_shift_generator(), _offset_critic(), progress_bar=False, **arguments)

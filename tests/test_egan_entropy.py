"""The entropy estimators of Dai et al. (2017) Sec. 4 against Gaussians of known entropy and score."""

import jax.numpy as jnp
import numpy as np
import pytest

from ppl_ebm.training.entropy import gaussian_entropy, gaussian_negative_log_likelihood, knn_entropy, knn_score

COVARIANCE = np.array([[2.0, 0.6], [0.6, 1.0]])


def _gaussian(n, seed, covariance=COVARIANCE):
    return np.random.default_rng(seed).standard_normal((n, len(covariance))) @ np.linalg.cholesky(covariance).T


def test_gaussian_entropy_closed_form():
    # 0.5 log det(2 pi e Sigma): a unit Gaussian in 1-D has 0.5 log(2 pi e) = 1.4189 nats.
    assert gaussian_entropy(np.eye(1)) == pytest.approx(1.4189385, abs=1e-6)
    assert gaussian_entropy(4 * np.eye(2)) == pytest.approx(2 * 1.4189385 + np.log(4), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_knn_entropy_matches_the_gaussian_entropy(seed):
    x = _gaussian(2000, seed)
    estimate = knn_entropy(x, k=3)
    # The estimator is psi terms plus d * mean(log eps_i): its spread is that mean's standard error.
    eps = np.sort(np.linalg.norm(x[:, None] - x[None], axis=2), axis=1)[:, 3]
    standard_error = np.std(2 * np.log(eps)) / np.sqrt(len(x))
    assert abs(estimate - gaussian_entropy(COVARIANCE)) < 4 * standard_error


def test_knn_entropy_sees_a_scaled_gaussian():
    # Scaling by 3 adds d log 3 exactly, in the estimate as in the truth.
    x = _gaussian(500, 2)
    assert knn_entropy(3 * x) - knn_entropy(x) == pytest.approx(2 * np.log(3), abs=1e-9)


def test_knn_score_points_along_the_gaussian_score():
    x = _gaussian(500, 3)
    estimate = np.asarray(knn_score(jnp.asarray(x, dtype=jnp.float32), 20), dtype=np.float64)
    truth = -x @ np.linalg.inv(COVARIANCE)
    cosine = np.sum(estimate * truth, axis=1) / np.linalg.norm(estimate, axis=1) / np.linalg.norm(truth, axis=1)
    slope = np.sum(estimate * truth) / np.sum(truth * truth)
    assert np.median(cosine) > 0.8
    # The fitted neighbourhood is narrower than the Gaussian (1.44 measured at n = 500, k = 20):
    # the estimate overshoots the score but keeps its scale within a factor 2.
    assert 1.0 < slope < 2.0


def test_knn_score_needs_more_points_than_neighbours():
    with pytest.raises(ValueError, match="n > k"):
        knn_score(jnp.zeros((10, 2)), 20)


def test_knn_entropy_refuses_bad_input():
    with pytest.raises(ValueError, match="x must be finite"):
        knn_entropy(np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0], [4.0, 2.0]]))
    with pytest.raises(ValueError, match="more than k"):
        knn_entropy(np.zeros((3, 2)), k=3)
    with pytest.raises(ValueError, match="k must be"):
        knn_entropy(np.zeros((3, 2)), k=0)


def test_gaussian_negative_log_likelihood_is_the_normal_density():
    from scipy.stats import norm

    z = np.array([[0.3, -1.2]])
    mean, log_std = np.array([[0.1, 0.5]]), np.array([[0.2, -0.4]])
    expected = -np.sum(norm.logpdf(z, mean, np.exp(log_std)))
    value = float(gaussian_negative_log_likelihood(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_std))[0])
    assert value == pytest.approx(expected, rel=1e-5)


def test_variational_bound_of_eq_13_to_16_on_a_linear_gaussian_generator():
    # Eq. 13-16 with the NLL the EGAN-Ent-VI generator loss uses: z ~ N(0, I_4), x | z ~ N(Bz, s^2 I_2),
    # whose entropies are all closed form. The bound U(q) = E[-log q(z | x)] equals H(z | x) at the
    # exact posterior and exceeds it by E[KL(p(z | x) || q)] otherwise, so H(z) - U(q) + H(x | z)
    # is a lower bound on H(x), tight at the exact posterior.
    a, b, s, n = 1.5, 0.7, 0.3, 20_000
    B = np.array([[a, 0, 0, 0], [0, b, 0, 0]])
    # Orthogonal columns: the posterior covariance (I + B^T B / s^2)^-1 is diagonal, as q's is.
    post_var = 1.0 / (1.0 + np.diag(B.T @ B) / s**2)
    h_x = gaussian_entropy(B @ B.T + s**2 * np.eye(2))
    h_z, h_x_given_z, h_z_given_x = gaussian_entropy(np.eye(4)), gaussian_entropy(s**2 * np.eye(2)), \
        gaussian_entropy(np.diag(post_var))
    assert h_z - h_z_given_x + h_x_given_z == pytest.approx(h_x, abs=1e-9)  # Eq. 13

    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 4))
    x = z @ B.T + s * rng.standard_normal((n, 2))
    mean = (x @ B / s**2) * post_var

    def bound(mean, log_std):
        nll = np.asarray(gaussian_negative_log_likelihood(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_std)),
                         dtype=np.float64)
        return nll.mean(), nll.std() / np.sqrt(n)

    exact, se = bound(mean, np.broadcast_to(0.5 * np.log(post_var), (n, 4)))
    assert abs(exact - h_z_given_x) < 4 * se  # Eq. 15 is tight at the posterior
    # A q twice as wide: the bound's excess is the closed-form KL(p(z | x) || q), summed over coordinates.
    wide, se_wide = bound(mean, np.broadcast_to(0.5 * np.log(post_var) + np.log(2.0), (n, 4)))
    excess = 4 * (np.log(2.0) + 1 / 8 - 0.5)
    assert abs(wide - h_z_given_x - excess) < 4 * se_wide
    assert h_z - wide + h_x_given_z < h_x - 0.5  # a lower bound on H(x), loose by that KL

"""fastgan.models.vae: the VAE's ELBO, importance-weighted estimate and samplers against independent computations
(torch.distributions), fused and eager builds equal, the VQ-VAE's losses, and short training runs."""
import math

import pytest
import torch

from fastgan import use_backend
from fastgan.models import vae as V

pytestmark = pytest.mark.no_triton  # the torch backend only


def _x(n=3, c=3, r=16, seed=0):
    return torch.rand(n, c, r, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("likelihood", V.LIKELIHOODS)
def test_the_elbo_is_the_textbook_one(likelihood):
    torch.manual_seed(0)
    m = V.VAE(3, 16, latent=5, width=4, likelihood=likelihood, beta=2.0).double()
    if m.log_scale is not None:
        m.log_scale.data = torch.tensor([-0.5, 0.0, 0.3], dtype=torch.float64)
    x = _x()
    got = m.losses(x, generator=torch.Generator().manual_seed(1))
    mu, logvar = m.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = m.decode(mu + (0.5 * logvar).exp() * eps)
    D = torch.distributions
    q = D.Normal(mu, (0.5 * logvar).exp())
    kl = D.kl_divergence(q, D.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    if likelihood == "bernoulli":  # (continuous targets in [0, 1]: the BCE form of log p)
        t = (x + 1) / 2
        rec = (t * torch.nn.functional.logsigmoid(out) + (1 - t) * torch.nn.functional.logsigmoid(-out)).flatten(1)
        rec = rec.sum(1)
    else:
        rec = D.Normal(out, m.log_scale.exp().view(1, -1, 1, 1)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(got["elbo"], (rec - kl).mean())
    torch.testing.assert_close(got["loss"], (2.0 * kl - rec).mean())
    torch.testing.assert_close(got["bits_per_dim"], -(rec - kl).mean() / (3 * 16 * 16 * math.log(2)))


def test_the_importance_weighted_estimate_is_the_textbook_one_and_tightens():
    torch.manual_seed(0)
    m = V.VAE(1, 8, latent=3, width=4, likelihood="gaussian").double()
    x = _x(2, 1, 8)
    got = m.importance_log_likelihood(x, k=5, generator=torch.Generator().manual_seed(2))
    mu, logvar = m.encode(x)
    D = torch.distributions
    q = D.Normal(mu, (0.5 * logvar).exp())
    g = torch.Generator().manual_seed(2)
    terms = []
    with torch.no_grad():
        for _ in range(5):
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g, dtype=torch.float64)
            px = D.Normal(m.decode(z), m.log_scale.exp().view(1, -1, 1, 1)).log_prob(x).flatten(1).sum(1)
            terms.append(px + D.Normal(0.0, 1.0).log_prob(z).sum(1) - q.log_prob(z).sum(1))
    torch.testing.assert_close(got, torch.logsumexp(torch.stack(terms), 0) - math.log(5))
    with torch.no_grad():
        elbo = torch.stack([m.losses(x, torch.Generator().manual_seed(s))["elbo"] for s in range(20)]).mean()
    assert m.importance_log_likelihood(x, k=200).mean() > elbo  # a tighter bound than the ELBO


@pytest.mark.parametrize("model", ["vae", "vqvae"])
def test_fused_and_eager_builds_give_the_same_step(model):
    torch.manual_seed(0)
    make = (lambda fused: V.VAE(3, 16, latent=6, width=4, fused=fused)) if model == "vae" else (
        lambda fused: V.VQVAE(3, 16, num_codes=16, dim=8, width=4, decay=None, fused=fused))
    with use_backend("torch"):
        eager, fused = make(False), make(True)
        fused.load_state_dict(eager.state_dict())
        x = _x(2).float()
        kw = {"generator": torch.Generator().manual_seed(3)} if model == "vae" else {}
        torch.manual_seed(4)  # (the VQ-VAE's codebook starts from the batch's vectors, drawn by torch's generator)
        a = eager.losses(x, **kw)
        kw = {"generator": torch.Generator().manual_seed(3)} if model == "vae" else {}
        torch.manual_seed(4)
        b = fused.losses(x, **kw)
        a["loss"].backward()
        b["loss"].backward()
    torch.testing.assert_close(a["loss"], b["loss"])
    for (name, p), q in zip(eager.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_samples_reconstructions_and_interpolations_are_images():
    torch.manual_seed(0)
    m = V.VAE(3, 16, latent=4, width=4).eval()
    x = _x(2).float()
    for out, n in ((m.sample(5), 5), (m.reconstruct(x), 2), (m.interpolate(x[0], x[1], 6), 6)):
        assert out.shape == (n, 3, 16, 16) and out.min() >= -1 and out.max() <= 1
    inter = m.interpolate(x[0], x[1], 6)
    torch.testing.assert_close(inter[0], m.reconstruct(x[:1])[0])
    torch.testing.assert_close(inter[-1], m.reconstruct(x[1:])[0])


def test_the_vqvae_decodes_its_own_indices():
    torch.manual_seed(0)
    m = V.VQVAE(3, 16, num_codes=8, dim=4, width=4).eval()
    x = _x(2).float()
    recon, q = m(x)
    assert q.indices.shape == (2, 4, 4) and q.indices.dtype == torch.long
    torch.testing.assert_close(m.decode_indices(q.indices), recon.clamp(-1, 1))


@pytest.mark.parametrize("model", ["vae", "vqvae"])
def test_a_short_training_run_lowers_the_loss_on_the_shapes(model):
    from fastgan.data import Shapes

    data = Shapes(16, 64, seed=0)
    x = data.batch(torch.arange(64))[0]
    torch.manual_seed(0)
    m = V.VAE(3, 16, latent=8, width=8) if model == "vae" else V.VQVAE(3, 16, num_codes=32, dim=8, width=8)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    first = None
    for _ in range(40):
        loss = m.losses(x)["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert m.losses(x)["loss"].item() < 0.7 * first


def test_bad_configurations_and_inputs_are_refused():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        V.VAE(likelihood="poisson")
    with pytest.raises(ValueError, match="4 times a power of two"):
        V.VAE(resolution=24)
    with pytest.raises(ValueError, match=r"takes images \(B, 3, 32, 32\)"):
        V.VAE().encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        V.VQVAE(resolution=18)

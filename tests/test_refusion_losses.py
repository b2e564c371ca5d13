"""ReFusion losses (refusion/losses.py), proposals, swapped-input batches."""
from __future__ import annotations

import pytest
import torch

from fusionbench.refusion.losses import LossWeights, c_grad_at, fusion_loss, recon_loss
from fusionbench.refusion.meta import swap_batch
from fusionbench.refusion.nets import ProposalNet, sobel_magnitude


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: the CI/dev machines are small and shared; OpenMP threads oversubscribe them badly."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_proposals_sum_to_one():
    torch.manual_seed(0)
    P = ProposalNet(dim=4, num_blocks=1, heads=2)
    with torch.no_grad():
        for p in P.parameters():  # make the proposal far from uniform
            p.mul_(3.0)
    x = torch.rand(3, 2, 12, 10)
    w, v = P(x)
    for t in (w, v):
        assert t.shape == (3, 2, 12, 10)
        assert (t >= 0).all()
        torch.testing.assert_close(t.sum(1), torch.ones(3, 12, 10), atol=1e-6, rtol=0)
    assert (w[:, 0] - 0.5).abs().max() > 1e-3  # not trivially uniform


def test_fusion_loss_matches_formula():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(2, 2, 9, 7, generator=g)
    fused = torch.rand(2, 1, 9, 7, generator=g)
    w = torch.rand(2, 2, 9, 7, generator=g)
    w = w / w.sum(1, keepdim=True)
    v = 1 - w
    total, parts = fusion_loss(fused, src, w, v, c_int=0.7, c_grad=1.9)
    a, b = src[:, 0:1], src[:, 1:2]
    l_int = ((w[:, 0:1] * (a - fused)) ** 2).mean() + ((w[:, 1:2] * (b - fused)) ** 2).mean()
    ga, gb, gf = sobel_magnitude(a), sobel_magnitude(b), sobel_magnitude(fused)
    l_grad = ((v[:, 0:1] * (ga - gf)) ** 2).mean() + ((v[:, 1:2] * (gb - gf)) ** 2).mean()
    torch.testing.assert_close(parts["L_f_int"], l_int)
    torch.testing.assert_close(parts["L_f_grad"], l_grad)
    torch.testing.assert_close(total, 0.7 * l_int + 1.9 * l_grad)


def test_fusion_loss_zero_and_weighting():
    a = torch.rand(1, 1, 8, 8)
    src = torch.cat([a, torch.rand(1, 1, 8, 8)], 1)
    only_a = torch.cat([torch.ones_like(a), torch.zeros_like(a)], 1)
    total, _ = fusion_loss(a, src, only_a, only_a)
    assert float(total) == 0.0  # all weight on a and F == a
    total_b, _ = fusion_loss(a, src, 1 - only_a, 1 - only_a)
    assert float(total_b) > 0


def test_recon_loss_pixelwise_max():
    src = torch.zeros(1, 2, 4, 4)
    rec = torch.zeros(1, 2, 4, 4)
    rec[0, 0, 1, 1] = 0.5  # error only in a at (1,1)
    rec[0, 1, 2, 2] = 0.25  # error only in b at (2,2)
    rec[0, 0, 3, 3], rec[0, 1, 3, 3] = 0.1, 0.3  # both; max is b's
    total, parts = recon_loss(rec, src, c_r_int=1.0, c_r_grad=0.0)
    want = (0.5 ** 2 + 0.25 ** 2 + 0.3 ** 2) / 16
    torch.testing.assert_close(parts["L_r_int"], torch.tensor(want))
    torch.testing.assert_close(total, torch.tensor(want))
    gs, gr = sobel_magnitude(src), sobel_magnitude(rec)
    torch.testing.assert_close(parts["L_r_grad"], ((gr - gs).abs().amax(1) ** 2).mean())
    assert float(recon_loss(src, src)[0]) == 0.0


def test_losses_differentiable_and_batched():
    src = torch.rand(4, 2, 8, 8)
    fused = torch.rand(4, 1, 8, 8, requires_grad=True)
    w = torch.full((4, 2, 8, 8), 0.5, requires_grad=True)
    total, _ = fusion_loss(fused, src, w, w)
    total.backward()
    assert fused.grad is not None and w.grad is not None and fused.grad.abs().sum() > 0
    # per-sample losses average to the batch loss (equal-sized samples)
    each = torch.stack([fusion_loss(fused[i:i + 1], src[i:i + 1], w[i:i + 1], w[i:i + 1])[0] for i in range(4)])
    torch.testing.assert_close(each.mean(), total)


def test_loss_shape_errors():
    with pytest.raises(ValueError, match="fused"):
        fusion_loss(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match="reconstruction"):
        recon_loss(torch.rand(1, 1, 4, 4), torch.rand(1, 2, 4, 4))


def test_c_grad_ramp():
    w = LossWeights(c_grad=2.0, c_grad_ramp="linear")
    assert c_grad_at(w, 0, 50) == pytest.approx(2.0 / 50)
    assert c_grad_at(w, 49, 50) == pytest.approx(2.0)
    assert c_grad_at(w, 80, 50) == pytest.approx(2.0)
    assert c_grad_at(LossWeights(c_grad=0.3, c_grad_ramp="constant"), 5, 50) == 0.3


def test_swap_batch():
    x = torch.rand(3, 2, 5, 5)
    xi, xt = swap_batch(x, True)
    assert xi.shape == (6, 2, 5, 5)
    torch.testing.assert_close(xi[3:, 0], x[:, 1])
    torch.testing.assert_close(xi[3:, 1], x[:, 0])
    torch.testing.assert_close(xt, torch.cat([x, x]))  # targets un-swapped
    xi, xt = swap_batch(x, False)
    assert xi is x and xt is x

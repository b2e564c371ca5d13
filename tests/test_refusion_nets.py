"""ReFusion networks: shapes, parameter counts, proposals, Sobel, key remap, float64 / functional_call."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as Fn
from torch.func import functional_call

from fusionbench.errors import WeightsError
from fusionbench.refusion.nets import (
    ChannelLayerNorm,
    FusionNet,
    ProposalNet,
    ReconNet,
    TransformerBlock,
    remap_official,
    sobel_magnitude,
)
from fusionbench.weights import load_into


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors: one thread avoids OpenMP spin-waiting on a busy machine (100x slower there)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert _count(FusionNet()) == 59_856  # official F, counted from the checkpoints
    assert _count(ReconNet()) == 59_648
    assert _count(ProposalNet()) == 89_058
    assert _count(ProposalNet().pn_int) == 44_529


def test_no_conv_biases_and_no_buffers():
    for m in (FusionNet(), ReconNet(), ProposalNet()):
        assert not list(m.buffers())
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):
                assert mod.bias is None


@pytest.mark.parametrize("hw", [(17, 23), (8, 8)])
def test_shapes_any_size(hw):
    x = torch.rand(2, 2, *hw)
    f = FusionNet()(x)
    assert f.shape == (2, 1, *hw) and ((f > 0) & (f < 1)).all()
    r = ReconNet()(f)
    assert r.shape == (2, 2, *hw) and ((r > 0) & (r < 1)).all()
    w, v = ProposalNet()(x)
    assert w.shape == v.shape == (2, 2, *hw)


def test_proposals_sum_to_one_and_differ():
    p = ProposalNet().double()
    x = torch.rand(3, 2, 12, 15, dtype=torch.float64)
    w, v = p(x)
    one = torch.ones(3, 12, 15, dtype=torch.float64)
    torch.testing.assert_close(w.sum(1), one, atol=1e-12, rtol=0)
    torch.testing.assert_close(v.sum(1), one, atol=1e-12, rtol=0)
    assert (w > 0).all() and (v > 0).all()
    # V comes from the gradient maps, W from the intensities: with identical sub-net weights they still differ
    p.pn_grad.load_state_dict(p.pn_int.state_dict())
    w2, v2 = p(x)
    assert not torch.allclose(w2, v2)
    torch.testing.assert_close(v2, p.pn_int(sobel_magnitude(x)))


def test_sobel_magnitude_values():
    t = torch.zeros(1, 1, 5, 6)
    t[..., 3:] = 1.0  # vertical step between columns 2 and 3
    g = sobel_magnitude(t)
    # interior rows: |gx| = 4 on the two columns beside the step and at the zero-padded right border
    assert g[0, 0, 2].tolist() == [0, 0, 4, 4, 0, 4]
    # top row, zero padding above: gx = 2*row0 + 1*row1 differences, gy = (a + 2b + c) of row 1
    # col 2: gx 3, gy 1 -> 4; col 3: gx 3, gy 3 -> 6; col 4: gx 0, gy 4 -> 4; col 5 (pad right): gx 3, gy 3 -> 6
    assert g[0, 0, 0].tolist() == [0, 0, 4, 6, 4, 6]
    # channels are independent (depthwise), dtype kept
    tt = torch.stack([t[0, 0], 2 * t[0, 0]])[None].double()
    gg = sobel_magnitude(tt)
    assert gg.dtype == torch.float64
    torch.testing.assert_close(gg[:, 1], 2 * gg[:, 0])


def test_layernorm_matches_reference():
    ln = ChannelLayerNorm(16)
    with torch.no_grad():
        ln.body.weight.normal_()
        ln.body.bias.normal_()
    x = torch.randn(2, 16, 7, 9) * 3 + 1
    ref = Fn.layer_norm(x.permute(0, 2, 3, 1), (16,), ln.body.weight, ln.body.bias, 1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, atol=1e-5, rtol=1e-5)


def test_batch_equals_items():
    net = FusionNet().eval()
    x = torch.rand(3, 2, 16, 20)
    with torch.no_grad():
        batch = net(x)
        items = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, items, atol=1e-6, rtol=1e-5)


def test_float64_and_functional_call_gradcheck():
    torch.manual_seed(1)
    net = FusionNet(dim=4, num_blocks=1, heads=2).double()
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    out = functional_call(net, params, (x,))
    torch.testing.assert_close(out, net(x))
    names = ["FM.temperature1", "encoder1.0.norm1.body.weight", "project_out_1.weight"]

    def f(*ts):
        p = dict(params)
        p.update(zip(names, ts))
        return functional_call(net, p, (x,)).sum()

    assert torch.autograd.gradcheck(f, tuple(params[n] for n in names), eps=1e-6, atol=1e-6)


def test_recon_branches_independent():
    r = ReconNet()
    f = torch.rand(1, 1, 10, 10)
    out1 = r(f)
    with torch.no_grad():
        for p in r.branch2.parameters():
            p.add_(0.1)
    out2 = r(f)
    torch.testing.assert_close(out1[:, 0], out2[:, 0])
    assert not torch.allclose(out1[:, 1], out2[:, 1])


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        FusionNet()(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        ReconNet()(torch.rand(1, 2, 8, 8))


def _official_like(net):
    """A state_dict laid out like the official files: each conv weight also under ``.conv.weight``."""
    sd = {}
    for k, v in net.state_dict().items():
        sd[k] = v.clone()
        if v.ndim == 4:
            sd[k[: -len(".weight")] + ".conv.weight"] = v.clone()
    return sd


def test_remap_official_roundtrip_and_errors():
    src = FusionNet()
    sd = _official_like(src)
    assert len(sd) == 140  # as the official checkpoints
    dst = FusionNet()
    load_into(dst, sd, "synthetic.pth", remap=remap_official)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k

    bad = dict(sd)
    bad["FM.qkv1.conv.weight"] = bad["FM.qkv1.conv.weight"] + 1
    with pytest.raises(WeightsError, match="FM.qkv1.conv.weight"):
        remap_official(bad)
    bad = dict(sd)
    del bad["decoder.0.attn.qkv.weight"]
    with pytest.raises(WeightsError, match="no twin"):
        remap_official(bad)
    bad = dict(sd)
    bad["project_in_1.weight_meta"] = bad["project_in_1.weight"]
    with pytest.raises(WeightsError, match="meta"):
        remap_official(bad)
    bad = dict(sd)
    bad["extra.layer.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="unexpected keys"):
        load_into(FusionNet(), bad, "x.pth", remap=remap_official)
    with pytest.raises(WeightsError):
        remap_official({"a": 1})


def test_transformer_block_residual_identity_when_zeroed():
    blk = TransformerBlock(16, 8)
    with torch.no_grad():
        blk.attn.project_out.weight.zero_()
        blk.ffn.project_out.weight.zero_()
    x = torch.randn(1, 16, 6, 6)
    torch.testing.assert_close(blk(x), x)


def test_forward_on_device_and_dtype(device, dtype):  # conftest fixtures: pytest --device ... --dtype ...
    torch.manual_seed(0)
    net = FusionNet().eval()
    x = torch.rand(1, 2, 32, 32)
    with torch.no_grad():
        ref = net(x)
        got = net.to(device, dtype)(x.to(device, dtype))
    assert got.device.type == device.type and got.dtype == dtype and got.shape == (1, 1, 32, 32)
    tol = {torch.float64: 1e-6, torch.float32: 1e-4}.get(dtype, 2e-2)
    torch.testing.assert_close(got.to("cpu", torch.float32), ref, atol=tol, rtol=tol)

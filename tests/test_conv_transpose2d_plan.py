"""The phase decomposition of a transposed convolution (fastgan/ops/conv_transpose2d_plan.py), evaluated phase by
phase with torch ops as the kernels compute it, against F.conv_transpose2d in float64; its argument checks against
the ones F.conv_transpose2d makes; the launch table; the upsample + conv merge."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from fastgan.ops import conv_transpose2d_plan as plan


def evaluate(x, weight, bias, geom):
    """y from the plan: every phase a dense correlation of x with its taps over its own output grid."""
    N, c_in, H, W = x.shape
    g = geom.groups
    c_og = weight.shape[1]
    y = x.new_zeros(N, g * c_og, *geom.out_size)
    xg = x.reshape(N, g, c_in // g, H, W)
    wg = weight.reshape(g, c_in // g, c_og, *geom.kernel)
    for ph in plan.phases(geom):
        rows, cols = ph.rows, ph.cols
        acc = x.new_zeros(N, g, c_og, rows.count, cols.count)
        for kh, th in rows.taps:
            ih = rows.q0 + torch.arange(rows.count) - th
            for kw, tw in cols.taps:
                iw = cols.q0 + torch.arange(cols.count) - tw
                inside = ((ih >= 0) & (ih < H))[:, None] & ((iw >= 0) & (iw < W))[None, :]
                xs = xg[:, :, :, ih.clamp(0, H - 1)][:, :, :, :, iw.clamp(0, W - 1)] * inside
                acc += torch.einsum("ngirc,gio->ngorc", xs, wg[:, :, :, kh, kw])
        s_h, s_w = geom.stride
        y[:, :, rows.first::s_h, cols.first::s_w][:, :, :rows.count, :cols.count] = acc.reshape(
            N, g * c_og, rows.count, cols.count)
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def _cases():
    # (N, C_in, C_out, H, W, k, stride, padding, output_padding, dilation, groups)
    out = [(128 // 64, 8, 4, 4, 4, 4, 2, 1, 0, 1, 1),  # DCGAN's k4 s2 p1 layer (batch and channels cut)
           (2, 5, 3, 1, 1, 4, 1, 0, 0, 1, 1),  # DCGAN's first layer: 1x1 -> 4x4 (k4 s1 p0)
           (1, 1, 1, 3, 5, 3, 2, 1, 1, 1, 1), (1, 3, 3, 5, 2, 2, 3, 0, 2, 1, 3), (2, 4, 6, 3, 3, 5, 2, 2, 1, 2, 2)]
    for stride, k, dilation in itertools.product((1, 2, 3), (1, 2, 3, 4, 5), (1, 2)):
        for padding in sorted({0, (dilation * (k - 1)) // 2, dilation * (k - 1)}):
            output_padding = max(stride, dilation) - 1
            out.append((2, 3, 2, 3, 4, k, stride, padding, output_padding, dilation, 1))
    return out


@pytest.mark.parametrize("case", _cases(), ids=lambda c: "x".join(map(str, c)))
def test_the_phases_compute_conv_transpose2d(case):
    N, c_in, c_out, H, W, k, stride, padding, output_padding, dilation, groups = case
    gen = torch.Generator().manual_seed(hash(case) % 2**31)
    x = torch.randn(N, c_in, H, W, dtype=torch.float64, generator=gen)
    weight = torch.randn(c_in, c_out // groups, k, k, dtype=torch.float64, generator=gen)
    bias = torch.randn(c_out, dtype=torch.float64, generator=gen)
    try:
        ref = F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    except RuntimeError:  # an empty output: the plan must refuse it too
        with pytest.raises(ValueError, match="empty output"):
            plan.geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
        return
    geom = plan.geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    assert geom.out_size == tuple(ref.shape[2:])
    got = evaluate(x, weight, bias, geom)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    # and as the kernels run it (a 1-pixel input dimension: a phase per tap)
    torch.testing.assert_close(evaluate(x, weight, bias, plan.for_kernels(geom)), ref, rtol=1e-12, atol=1e-12)


def test_every_output_element_is_in_one_phase_and_every_tap_in_one_phase():
    for stride, k, dilation, padding, size in itertools.product((1, 2, 3), (1, 3, 4), (1, 2), (0, 1, 2), (1, 4)):
        if plan.output_size(size, k, stride, padding, 0, dilation) < 1:
            continue
        geom = plan.geometry((1, 1, size, size), (1, 1, k, k), stride, padding, 0, 1, dilation)
        seen = torch.zeros(geom.out_size, dtype=torch.int64)
        taps = torch.zeros(k, k, dtype=torch.int64)
        for ph in plan.phases(geom):
            seen[ph.rows.first::stride, ph.cols.first::stride][:ph.rows.count, :ph.cols.count] += 1
            for (kh, _), (kw, _) in itertools.product(ph.rows.taps, ph.cols.taps):
                taps[kh, kw] += 1
        assert (seen == 1).all()
        # a tap belongs to the phase of kh d mod s; a phase outside the output grid keeps its taps to itself
        assert taps.max() <= 1


def test_a_one_pixel_input_gets_a_phase_per_tap():
    geom = plan.for_kernels(plan.geometry((128, 100, 1, 1), (100, 512, 4, 4), 1, 0))  # DCGAN's first layer
    phs = plan.phases(geom)
    assert len(phs) == 16 and all(len(p.rows.taps) == len(p.cols.taps) == 1 for p in phs)
    assert plan.macs(geom, 128, 100, 512) == 128 * 100 * 512 * 16  # the dense work, no tap outside the input


def test_dcgan_layer_is_four_phases_of_two_by_two_taps():
    geom = plan.geometry((128, 512, 4, 4), (512, 256, 4, 4), 2, 1, 0, 1, 1)
    phs = plan.phases(geom)
    assert geom.out_size == (8, 8) and len(phs) == 4
    assert all(len(p.rows.taps) == 2 and len(p.cols.taps) == 2 and p.rows.count == 4 for p in phs)
    # 4 taps per output element instead of 16 with zero insertion: the dense work of F.conv_transpose2d
    assert plan.macs(geom, 128, 512, 256) == 128 * 512 * 256 * 8 * 8 * 4


@pytest.mark.parametrize("args, error, match", [
    (dict(output_padding=2, stride=2), ValueError, "output_padding"),
    (dict(padding=5), ValueError, "empty output"),
    (dict(groups=2), ValueError, "not divisible by groups"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(stride=1.5), TypeError, "stride must be an int"),
    (dict(groups=0), ValueError, "groups must be a positive int"),
])
def test_bad_arguments_are_refused_where_torch_refuses_them(args, error, match):
    x, weight = torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3)
    kwargs = dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1) | args
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        F.conv_transpose2d(x, weight, None, **kwargs)
    with pytest.raises(error, match=match):
        plan.geometry(x.shape, weight.shape, **kwargs)


def test_weight_of_another_layout_is_refused():
    with pytest.raises(ValueError, match=r"weight has 4 input channels \(dim 0\) but x has 3"):
        plan.geometry((1, 3, 4, 4), (4, 3, 3, 3))


def test_launch_table_lists_every_phase_and_tile():
    geom = plan.geometry((3, 2, 5, 4), (2, 2, 3, 3), 2, 1, 1, 1, 1)
    t = plan.launch_table(geom, 3, 8)
    phs = plan.phases(geom)
    assert t.n_phases == len(phs) == 4
    for p, ph in enumerate(phs):
        row = t.values[p * plan.T_FIELDS:(p + 1) * plan.T_FIELDS]
        assert (row[plan.T_ROWS], row[plan.T_COLS]) == (ph.rows.count, ph.cols.count)
        at = row[plan.T_TAPS_AT]
        taps = t.values[at:at + 2 * (row[plan.T_TAPS_H] + row[plan.T_TAPS_W])]
        assert list(taps) == [v for pair in ph.rows.taps + ph.cols.taps for v in pair]
    # the tiles' pixel counts add up to every output pixel, each phase's tiles from its T_TILE0 on
    assert sum(t.tile_counts) == 3 * geom.out_size[0] * geom.out_size[1]
    assert all(0 < c <= 8 for c in t.tile_counts)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_upsample_then_conv_is_one_transposed_convolution(k):
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=gen)
    w = torch.randn(4, 3, k, k, dtype=torch.float64, generator=gen)
    ref = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=k // 2)
    a_rows, padding = plan.upsample_conv(k)
    a = torch.tensor(a_rows, dtype=torch.float64)
    merged = torch.einsum("ai,bj,ocij->coab", a, a, w)
    torch.testing.assert_close(F.conv_transpose2d(x, merged, None, 2, padding), ref, rtol=1e-12, atol=1e-12)
    if k == 3:  # four 2x2 phase convolutions: 16 taps per 2x2 output block instead of 36
        geom = plan.geometry(x.shape, merged.shape, 2, padding)
        assert all(len(p.rows.taps) == len(p.cols.taps) == 2 for p in plan.phases(geom))

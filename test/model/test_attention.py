"""Linear attention against the explicit eq. 2, the SCLeakyReLU kernel against eq. 3."""
import pytest
import torch

from starpose_model.attention import (
    MultiScaleLinearAttention,
    SCLeakyReLU,
    linear_attention,
    maps_to_tokens,
    tokens_to_maps,
)

torch.set_num_threads(2)


def explicit_attention(q, k, v, kernel):
    """Eq. 2 with Sim = phi(Q) phi(K)^T materialised as an N x N matrix."""
    sim = kernel(q) @ kernel(k).transpose(-1, -2)
    return (sim / sim.sum(dim=-1, keepdim=True)) @ v


@pytest.mark.parametrize('kernel', [SCLeakyReLU(), SCLeakyReLU(alpha=0.7), torch.nn.ReLU()],
                         ids=['a0.01', 'a0.7', 'relu'])
def test_linear_attention_equals_explicit_formula(kernel):
    gen = torch.Generator().manual_seed(0)
    kernel = kernel.double()
    q, k, v = (torch.randn(2, 3, 57, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    # Shift so some entries land on every piece of eq. 3 (x > 0, -1/a <= x <= 0, x < -1/a).
    q, k = q * 2.0, k * 2.0 - 1.0
    expected = explicit_attention(q, k, v, kernel)
    got = linear_attention(q, k, v, kernel, eps=0.0)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The default eps (for half-precision safety) changes the result by far less than 1e-5.
    torch.testing.assert_close(linear_attention(q, k, v, kernel), expected, rtol=1e-5, atol=1e-5)


def test_scleaky_relu_matches_eq3_on_all_three_pieces():
    phi = SCLeakyReLU()
    assert phi.alpha.item() == pytest.approx(0.01)
    with torch.no_grad():
        phi.alpha.fill_(0.25)  # -1/a = -4
    x = torch.tensor([3.0, 0.5, 0.0, -1.0, -4.0, -4.5, -100.0])
    expected = torch.tensor([4.0, 1.5, 1.0, 0.75, 0.0, 0.0, 0.0])
    torch.testing.assert_close(phi(x), expected)
    phi_default = SCLeakyReLU()
    torch.testing.assert_close(phi_default(torch.tensor([2.0, -50.0, -100.0, -150.0])),
                               torch.tensor([3.0, 0.5, 0.0, 0.0]))


def test_scleaky_slope_gets_gradient_from_the_middle_piece_only():
    phi = SCLeakyReLU(alpha=0.25)
    phi(torch.tensor([2.0, -8.0])).sum().backward()
    assert phi.alpha.grad.item() == 0.0  # x > 0 and x < -1/a do not depend on a
    phi.alpha.grad = None
    phi(torch.tensor([-2.0])).sum().backward()
    assert phi.alpha.grad.item() == pytest.approx(-2.0)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_attention_sums_stay_float32_under_half_autocast(dtype):
    kernel = SCLeakyReLU()
    # phi(K)^T V summed over 4096 tokens of this size exceeds float16's range (65504): computed in
    # half precision it would be inf and the output NaN.
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4096, 32, generator=gen) * 30 for _ in range(3))
    reference = linear_attention(q, k, v, kernel)
    with torch.autocast('cpu', dtype=dtype):
        got = linear_attention(q.to(dtype), k.to(dtype), v.to(dtype), kernel)
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), reference, rtol=0.05, atol=0.05)


def test_tokens_maps_round_trip():
    tokens = torch.randn(2, 3 * 4 * 5, 7)
    maps = tokens_to_maps(tokens, (3, 4, 5))
    assert maps.shape == (6, 7, 4, 5)
    assert torch.equal(maps[1 * 3 + 2, :, 1, 3], tokens[1, 2 * 20 + 1 * 5 + 3])
    assert torch.equal(maps_to_tokens(maps, 3), tokens)


def test_multi_scale_attention_groups_and_locality():
    attention = MultiScaleLinearAttention(dim=32, heads=4, aggregation_kernels=(3, 5))
    assert attention.proj.in_features == 3 * 32  # original + two aggregated groups
    x = torch.randn(2, 2 * 4 * 6, 32)
    assert attention(x, (2, 4, 6)).shape == x.shape
    plain = MultiScaleLinearAttention(dim=32, heads=4, aggregation_kernels=())
    assert plain(x, (2, 4, 6)).shape == x.shape

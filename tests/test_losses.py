"""Losses: golden values on tiny tensors and cross-checks against the reference formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from pose_core.losses import (
    build_loss,
    error_weighted_loss,
    gaussian_blur,
    ghrl,
    keypoint_mse,
    sharpen,
)


def tiny() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B=1, K=2, 2x2 maps: errors 0.5/0/0/-1 (kpt 0) and 1/1/1/1 (kpt 1)."""
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    pred = torch.tensor([[[[1.5, 0.0], [0.0, -1.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    weights = torch.tensor([[1.0, 0.5]])
    return pred, target, weights


def test_mse_golden_value_is_mmpose_normalisation() -> None:
    pred, target, weights = tiny()
    # kpt 0: 0.25 + 1 = 1.25 (w 1); kpt 1: 4 x 1 x 0.5 = 2; mean over 8 elements, no 0.5 factor
    assert keypoint_mse({"heatmaps": pred}, target, weights).item() == pytest.approx(3.25 / 8)
    assert build_loss("mse")({"heatmaps": pred}, target, weights).item() == pytest.approx(3.25 / 8)


def test_error_weighted_golden_values() -> None:
    pred, target, weights = tiny()
    # |e|^3 * w: kpt 0: 0.125 + 1 = 1.125; kpt 1: 4 x 0.5 = 2 -> 3.125 / 8
    assert error_weighted_loss(pred, target, weights).item() == pytest.approx(3.125 / 8)
    # beta 2: e^4 * w: kpt 0: 0.0625 + 1; kpt 1: 2 -> 3.0625 / 8
    assert error_weighted_loss(pred, target, weights, beta=2).item() == pytest.approx(3.0625 / 8)
    # gamma 1: mean |e| per keypoint 0.375 and 1, reference 0.6875; focus e / 0.6875
    expected = (1.125 * 0.375 + 2 * 1.0) / 0.6875 / 8
    got = error_weighted_loss(pred, target, weights, gamma=1.0).item()
    assert got == pytest.approx(expected)


def test_gaussian_blur_matches_torchvision() -> None:
    maps = torch.rand(2, 3, 16, 20)
    ours = gaussian_blur(maps, 13, 4.0)
    theirs = TF.gaussian_blur(maps, kernel_size=[13, 13], sigma=[4.0, 4.0])
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_sharpen_golden_values() -> None:
    delta = torch.zeros(1, 1, 3, 3)
    delta[0, 0, 1, 1] = 1.0
    expected = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    assert torch.equal(sharpen(delta)[0, 0], expected)


def test_ghrl_golden_value_on_constant_target() -> None:
    # constant g = 0.5 on 8x8: smooth = g (reflect padding) so wr = 0; sharp = 0 inside,
    # g on edges, 2g in corners, so wl = 0.5 inside and in corners, 0 on edges. With p = 1:
    # inside (1 - 0)^2 * 0.5 * (1 - 0.5)^2 = 0.125 on 36 pixels; corners (1 - 1)^2 = 0.
    target = torch.full((1, 1, 8, 8), 0.5)
    pred = torch.ones(1, 1, 8, 8)
    assert ghrl(pred, target).item() == pytest.approx(36 * 0.125 / 64)
    assert ghrl(pred, torch.zeros_like(target)).item() == 0.0


def code_style_ghrl(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference's per-keypoint loop with torchvision's blur (POSE_REFERENCE 4.2)."""
    kernel = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])[None, None]
    parts = []
    for k in range(pred.shape[1]):
        g, p = target[:, k : k + 1], pred[:, k : k + 1]
        smooth = TF.gaussian_blur(g, kernel_size=[13, 13], sigma=[4.0, 4.0])
        sharp = F.conv2d(g, kernel, padding=1)
        wl, wr = (sharp - g).abs(), (g - smooth).abs()
        parts.append(((p - sharp) ** 2 * wl + (p - smooth) ** 2 * wr) * (p - g) ** 2)
    return torch.cat(parts, dim=1).mean()


def test_ghrl_matches_per_keypoint_reference() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16)
    pred = torch.rand(2, 3, 16, 16)
    assert ghrl(pred, target).item() == pytest.approx(code_style_ghrl(pred, target).item())


def test_kitpose_loss_sums_both_terms_and_ghrl_ignores_weights() -> None:
    torch.manual_seed(1)
    target, heatmaps, aux = torch.rand(3, 2, 3, 16, 16)
    weights = torch.zeros(2, 3)
    output = {"heatmaps": heatmaps, "aux": aux}
    loss = build_loss("kitpose")(output, target, weights)
    assert loss.item() == pytest.approx(ghrl(aux, target).item())  # kpt term is 0 at w = 0
    ones = torch.ones(2, 3)
    expected = error_weighted_loss(heatmaps, target, ones) + 0.5 * ghrl(aux, target)
    got = build_loss("kitpose", ghrl_weight=0.5)(output, target, ones)
    assert got.item() == pytest.approx(expected.item())


def test_loss_errors() -> None:
    with pytest.raises(ValueError, match="valid: mse, kitpose"):
        build_loss("l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown option"):
        build_loss("mse", beta=2.0)
    with pytest.raises(ValueError, match="needs output\\['aux'\\]"):
        build_loss("kitpose")({"heatmaps": torch.zeros(1, 1, 8, 8)}, torch.zeros(1, 1, 8, 8),
                              torch.ones(1, 1))  # fmt: skip


def test_losses_backpropagate() -> None:
    pred = torch.rand(2, 3, 16, 16, requires_grad=True)
    aux = torch.rand(2, 3, 16, 16, requires_grad=True)
    target = torch.rand(2, 3, 16, 16)
    build_loss("kitpose", gamma=2.0)(
        {"heatmaps": pred, "aux": aux}, target, torch.ones(2, 3)
    ).backward()
    assert pred.grad is not None and aux.grad is not None
    assert pred.grad.abs().sum() > 0 and aux.grad.abs().sum() > 0

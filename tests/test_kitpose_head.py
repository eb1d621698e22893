"""KITPose head: k-medoids against a naive loop, prompts, wiring, parameter count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pose_core.config import ModelConfig
from pose_core.kitpose_head import (
    ContextPrompts,
    EncoderLayer,
    KeypointInteractiveTransformer,
    batch_kmedoids,
    sine_position_embedding,
    unused_code_parameters,
)
from pose_core.models import build_model

# What we measured for KITPose-E2C5 on HRNet-w32, 256x256, K=20 (Animal-Pose): the reference
# arithmetic (POSE_REFERENCE 4.4) gives 72.6 M with the unused bp_to_embeddings, 68.4 M without.
KITPOSE_W32_PARAMS = 68_430_899
KITPOSE_W32_OFFICIAL_PARAMS = 72_631_347


def naive_kmedoids(
    points: torch.Tensor, clusters: int, max_iter: int = 40, tol: float = 1e-6
) -> tuple[list[int], list[int]]:
    """One sample ``(N, L)``, plain loops: KKZ init, assign, update, sorted medoids."""
    n = points.shape[0]
    unit = [p / (p.norm() + 1e-6) for p in points]
    dist = [[1.0 - float(unit[i] @ unit[j]) for j in range(n)] for i in range(n)]
    norms = [float(p.norm()) for p in points]
    medoids = [max(range(n), key=lambda i: (norms[i], -i))]
    while len(medoids) < clusters:
        nearest = [
            -math.inf if i in medoids else min(dist[i][m] for m in medoids) for i in range(n)
        ]
        medoids.append(max(range(n), key=lambda i: (nearest[i], -i)))

    def assign(meds: list[int]) -> list[int]:
        # a medoid belongs to its own cluster; otherwise the nearest medoid, first on ties
        def key(i: int, c: int) -> tuple[float, int]:
            return (-math.inf if meds[c] == i else dist[i][meds[c]], c)

        return [min(range(len(meds)), key=lambda c: key(i, c)) for i in range(n)]

    for _ in range(max_iter):
        labels = assign(medoids)
        new = []
        for c in range(clusters):
            members = [i for i in range(n) if labels[i] == c]
            new.append(min(members, key=lambda i: (sum(dist[i][j] for j in members), i)))
        shift = sum(float((unit[a] - unit[b]).norm()) for a, b in zip(new, medoids, strict=True))
        medoids = new
        if shift < tol:
            break
    medoids = sorted(medoids)
    return assign(medoids), medoids


def clustered_points(batch: int, n: int, dim: int, centres: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, centres, dim, generator=generator, dtype=torch.float64)
    which = torch.randint(0, centres, (batch, n), generator=generator)
    picked = base[torch.arange(batch)[:, None], which]
    return picked + 0.3 * torch.rand(batch, n, dim, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("clusters", [1, 4, 6])
def test_kmedoids_matches_naive_loop(seed: int, clusters: int) -> None:
    points = clustered_points(5, 17, 48, centres=4, seed=seed)
    assignment, medoids = batch_kmedoids(points, clusters)
    assert assignment.shape == (5, 17) and medoids.shape == (5, clusters)
    for b in range(points.shape[0]):
        labels, meds = naive_kmedoids(points[b], clusters)
        assert medoids[b].tolist() == meds
        assert assignment[b].tolist() == labels


def test_kmedoids_is_batch_independent_and_no_grad() -> None:
    points = clustered_points(4, 20, 32, centres=5, seed=3).float().requires_grad_(True)
    assignment, medoids = batch_kmedoids(points, 5)
    assert not assignment.requires_grad
    for b in range(4):
        alone_assignment, alone_medoids = batch_kmedoids(points[b : b + 1], 5)
        assert torch.equal(alone_medoids[0], medoids[b])
        assert torch.equal(alone_assignment[0], assignment[b])
    # every medoid sits in its own cluster, ids sorted
    assert torch.all(medoids[:, 1:] > medoids[:, :-1])
    for b in range(4):
        assert assignment[b, medoids[b]].tolist() == list(range(5))


def test_kmedoids_rejects_more_clusters_than_points() -> None:
    with pytest.raises(ValueError, match="clusters"):
        batch_kmedoids(torch.rand(1, 3, 8), 4)


def test_sine_position_embedding_values() -> None:
    emb = sine_position_embedding(4, 8)
    assert emb.shape == (1, 4, 8)
    angle = 2 * math.pi * 3 / (4 + 1e-6)  # keypoint index 2 is position 3
    assert emb[0, 2, 0].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert emb[0, 2, 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert emb[0, 2, 2].item() == pytest.approx(math.sin(angle / 10000 ** (2 / 8)), abs=1e-6)


def test_prompts_are_means_of_cluster_members() -> None:
    prompts = ContextPrompts(feature_channels=3, parts=3, heatmap_pixels=16, dim=8)
    for module in prompts.context:
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    prompts.project = nn.Sequential()  # identity: expose the raw prompt
    maps = clustered_points(2, 7, 16, centres=3, seed=5).float()
    out = prompts(torch.rand(2, 3, 4, 4), maps)
    assignment, _ = batch_kmedoids(maps, 3)
    for b in range(2):
        for c in range(3):
            expected = maps[b, assignment[b] == c].mean(dim=0)
            assert torch.allclose(out[b, c], expected, atol=1e-6)


def reference_forward(
    kit: KeypointInteractiveTransformer, feature: torch.Tensor, maps: torch.Tensor
) -> torch.Tensor:
    """The code's forward written out: prepend prompts, position before every layer,
    explicit single-head softmax(q k^T / sqrt(dim)) v, decode the keypoint tokens."""
    b, k, h, w = maps.shape
    flat = maps.flatten(2)
    x = torch.cat((kit.prompts(feature, flat), kit.embed(flat)), dim=1)
    p = kit.parts
    for layer in kit.layers:
        assert isinstance(layer, EncoderLayer)
        x = torch.cat((x[:, :p], x[:, p:] + kit.position), dim=1)
        q, key, v = layer.qkv(layer.norm1(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ key.transpose(1, 2) * q.shape[-1] ** -0.5, dim=-1)
        x = x + layer.out(attn @ v)
        x = x + layer.ffn(layer.norm2(x))
    return kit.to_heatmap(x)[:, p:].reshape(b, k, h, w)


def test_kit_forward_matches_reference_and_gradients_flow() -> None:
    torch.manual_seed(0)
    kit = KeypointInteractiveTransformer(6, 9, (8, 8), dim=32, depth=2, parts=3, mlp_ratio=3)
    feature = torch.randn(2, 6, 8, 8)
    maps = torch.rand(2, 9, 8, 8, requires_grad=True)
    out = kit(feature, maps)
    assert out.shape == (2, 9, 8, 8)
    kit.eval()  # BN running stats: both forwards see the same context
    assert torch.allclose(kit(feature, maps), reference_forward(kit, feature, maps), atol=1e-5)
    kit.train()
    kit(feature, maps).square().mean().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    for name, param in kit.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_kit_rejects_more_parts_than_keypoints() -> None:
    with pytest.raises(ValueError, match="kit_parts"):
        KeypointInteractiveTransformer(4, 3, (4, 4), dim=8, parts=4)


def test_kitpose_w32_parameter_count() -> None:
    cfg = ModelConfig(backbone="hrnet_w32", head="kitpose", init="random")
    with torch.device("meta"):
        model = build_model(cfg, num_keypoints=20, input_size=256)
    measured = sum(p.numel() for p in model.parameters())
    assert measured == pytest.approx(KITPOSE_W32_PARAMS, rel=0.005)
    official = measured + unused_code_parameters(64 * 64, 1024, 5)
    assert official == pytest.approx(KITPOSE_W32_OFFICIAL_PARAMS, rel=0.005)
    assert official / 1e6 == pytest.approx(72.6, abs=0.1)  # POSE_REFERENCE 4.4 arithmetic
    # the position embedding is a fixed buffer, not saved with the weights
    assert not any("position" in key for key in model.state_dict())

"""KITPose's Keypoint Interactive Transformer (Rao et al.), ported from POSE_REFERENCE section 4.1.

The head sits on a heatmap head: its K intermediate maps ``kpt_feats`` (B, K, h, w) and the
stride-4 feature those maps were computed from (B, C, h, w) go in, K refined maps come out.

Where the official code (Raojiyong/KITPose ``lib/models/kitpose_part.py``, ``fast_keans.py``,
``cluster_utils.py``) and the paper could differ, we follow the CODE, except where marked DEVIATION:

- tokens: one per keypoint, the whole flattened h*w map (no spatial patches), Linear(h*w -> dim).
- body-part prompts: batched cosine k-medoids on the L2-normalised maps, KKZ init, at most 40
  iterations, tolerance 1e-6 on the medoid shift, medoid ids sorted, no gradient (code).
  Each prompt = mean of its members' RAW maps + the image-context block
  Conv3x3(C->P)-BN-ReLU-Conv3x3(P->P)-BN-ReLU on the stride-4 feature, flattened (code's
  ``PromptLearner.meta_net``), then LN(hw)-Linear(hw -> hw/2)-LN(hw/2)-Linear(-> dim) (code).
- DEVIATION (clustering, results identical): the code runs the batch in chunks of 8 and shifts
  distances by the max over the whole chunk; we run the whole batch at once and shift per sample.
  The shift only serves to make every distance negative so that a masked sum picks medoids
  among cluster members; per-sample or per-chunk shifts give the same argmin/argmax, and a
  per-sample shift makes each sample's clusters independent of its batch mates.
- DEVIATION (KKZ first medoid): the code takes the largest-norm point AFTER L2 normalisation,
  where all norms round to ~1.0 in float32, so its pick is decided by rounding. The norm after
  normalisation, |x| / (|x| + 1e-6), is monotonic in |x|, so we take the largest RAW norm: the
  same choice without the rounding ties.
- the prompts are PREPENDED to the keypoint tokens: one joint sequence of P + K tokens (code).
- position embedding: fixed 1-D sine over the keypoint index (``sine-full`` in every config),
  added to the keypoint tokens only, before the first layer and again before every later layer
  (code). Prompts get none.
- encoder: pre-norm layers, SINGLE-head attention (qkv Linear(dim -> 3 dim) with bias, scale
  dim**-0.5, out Linear(dim -> dim)), FFN Linear(dim -> ratio*dim)-GELU-Linear, dropout 0 (code).
- output: LN(dim) + Linear(dim -> h*w) per token (code; its two-layer variant only applies when
  dim <= h*w/16, never in the animal configs, and is not ported).
- DEVIATION (compute only): the code also decodes the P prompt tokens into "body-part maps";
  they are never supervised (BPLoss is unused) nor returned as predictions, so we only project
  the K keypoint tokens. Keypoint outputs are identical (LN and Linear act per token).
- omitted: ``bp_to_embeddings`` Linear(h*w -> dim) and the ``bp_embeddings`` (1, P, dim)
  parameter, both built but unused by the code's forward; see :func:`unused_code_parameters`.
- init (the animal configs set ``MODEL.INIT: true``): Linear weights truncated normal std 0.02,
  biases 0, LayerNorm 1/0; the context convs keep PyTorch's default init (code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sine_position_embedding(length: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 1-D sinusoid over positions 1..length, scaled to (0, 2 pi]: ``(1, length, dim)``.

    Channel pairs (2i, 2i+1) share a frequency: sin on even channels, cos on odd ones.
    """
    if dim % 2:
        raise ValueError(f"sine position embedding needs an even dim, got {dim}")
    positions = torch.arange(1, length + 1, dtype=torch.float64) / (length + 1e-6) * 2 * math.pi
    frequencies = temperature ** (2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
    angles = positions[:, None] / frequencies  # (length, dim)
    embedding = torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)
    return embedding.float().unsqueeze(0)


def _shifted_cosine_distances(unit: Tensor) -> Tensor:
    """``(B, N, N)`` cosine distances shifted so all are <= -1, the diagonal a further -1.

    The shift makes a masked sum (zeros outside a cluster) prefer members; the diagonal bonus
    makes every medoid nearest to itself, so clusters are never empty and KKZ never repeats.
    """
    distance = 1.0 - unit @ unit.transpose(1, 2)
    distance = distance - distance.amax(dim=(1, 2), keepdim=True) - 1.0
    eye = torch.eye(distance.shape[-1], dtype=distance.dtype, device=distance.device)
    return distance - eye


def _kkz_init(points: Tensor, distance: Tensor, num_clusters: int) -> Tensor:
    """KKZ farthest-point init: the largest-norm point, then repeatedly the point farthest
    from its nearest chosen medoid. ``(B, P)`` indices; loops over P, vectorised over B."""
    batch = torch.arange(points.shape[0], device=points.device)[:, None]
    medoids = [points.norm(dim=-1).argmax(dim=1)]
    for _ in range(1, num_clusters):
        chosen = torch.stack(medoids, dim=1)  # (B, i)
        nearest = distance[batch, chosen].amin(dim=1)  # (B, N)
        medoids.append(nearest.argmax(dim=1))
    return torch.stack(medoids, dim=1)


@torch.no_grad()
def batch_kmedoids(
    points: Tensor, num_clusters: int, max_iter: int = 40, tol: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """Cosine k-medoids on ``points (B, N, L)``: ``(assignment (B, N), medoids (B, P))``.

    Vectorised over the batch. Each sample stops updating once its medoid shift (sum over
    clusters of the L2 distance between old and new normalised medoids) is below ``tol``,
    which is what a per-sample run would do. Medoid ids come back sorted, assignments are
    recomputed from them. Float64 input stays float64; anything else is clustered in float32
    with autocast off (bf16 rounding would create distance ties).
    """
    n = points.shape[1]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"k-medoids needs 1 <= clusters <= points, got {num_clusters} for {n}")
    x = points.detach()
    x = x if x.dtype == torch.float64 else x.float()
    with torch.autocast(x.device.type, enabled=False):
        return _kmedoids(x, num_clusters, max_iter, tol)


def _kmedoids(x: Tensor, num_clusters: int, max_iter: int, tol: float) -> tuple[Tensor, Tensor]:
    unit = x / (x.norm(dim=-1, keepdim=True) + 1e-6)
    distance = _shifted_cosine_distances(unit)
    medoids = _kkz_init(x, distance, num_clusters)
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    cluster_ids = torch.arange(num_clusters, device=x.device)[None, :, None]
    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(max_iter):
        assignment = distance[batch, medoids].argmin(dim=1)  # (B, N)
        member = (assignment[:, None, :] == cluster_ids).to(distance.dtype)  # (B, P, N)
        # cost[b, p, i] = sum of distances from i to the members of p, 0 for non-members
        cost = (member @ distance) * member
        candidate = cost.argmin(dim=2)
        shift = (unit[batch, candidate] - unit[batch, medoids]).norm(dim=-1).sum(dim=1)
        medoids = torch.where(done[:, None], medoids, candidate)
        done = done | (shift < tol)
        if bool(done.all()):
            break
    medoids = medoids.sort(dim=1).values
    assignment = distance[batch, medoids].argmin(dim=1)
    return assignment, medoids


class ContextPrompts(nn.Module):
    """Body-part prompts: cluster means plus an image-context bias, projected to tokens."""

    def __init__(self, feature_channels: int, parts: int, heatmap_pixels: int, dim: int) -> None:
        super().__init__()
        self.parts = parts
        self.context = nn.Sequential(
            nn.Conv2d(feature_channels, parts, 3, 1, 1),
            nn.BatchNorm2d(parts),
            nn.ReLU(),
            nn.Conv2d(parts, parts, 3, 1, 1),
            nn.BatchNorm2d(parts),
            nn.ReLU(),
        )
        self.project = nn.Sequential(
            nn.LayerNorm(heatmap_pixels),
            nn.Linear(heatmap_pixels, heatmap_pixels // 2),
            nn.LayerNorm(heatmap_pixels // 2),
            nn.Linear(heatmap_pixels // 2, dim),
        )

    def forward(self, feature: Tensor, maps: Tensor) -> Tensor:
        """``feature (B, C, h, w)``, ``maps (B, K, h*w)`` -> prompt tokens ``(B, P, dim)``."""
        assignment, _ = batch_kmedoids(maps, self.parts)
        member = (
            assignment[:, None, :] == torch.arange(self.parts, device=maps.device)[None, :, None]
        ).to(maps.dtype)  # (B, P, K); every cluster holds at least its medoid
        means = (member @ maps) / member.sum(dim=2, keepdim=True)
        return self.project(means + self.context(feature).flatten(2))


class EncoderLayer(nn.Module):
    """Pre-norm single-head self-attention + FFN (GELU), dropout 0."""

    def __init__(self, dim: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, dim) -> (B, N, dim)``."""
        q, k, v = self.qkv(self.norm1(x)).unsqueeze(1).chunk(3, dim=-1)  # (B, 1, N, dim) each
        # one head: SDPA's default scale 1/sqrt(head_dim) is the code's dim**-0.5
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        x = x + self.out(attended)
        return x + self.ffn(self.norm2(x))


class KeypointInteractiveTransformer(nn.Module):
    """KIT: keypoint tokens + body-part prompts -> single-head encoder -> K refined maps."""

    position: Tensor

    def __init__(
        self,
        feature_channels: int,
        num_keypoints: int,
        heatmap_size: tuple[int, int],
        dim: int = 1024,
        depth: int = 2,
        parts: int = 5,
        mlp_ratio: int = 3,
    ) -> None:
        super().__init__()
        if not 1 <= parts <= num_keypoints:
            raise ValueError(f"KITPose needs 1 <= kit_parts <= K={num_keypoints}, got {parts}")
        pixels = heatmap_size[0] * heatmap_size[1]
        self.heatmap_size = heatmap_size
        self.parts = parts
        self.embed = nn.Linear(pixels, dim)
        self.prompts = ContextPrompts(feature_channels, parts, pixels, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, mlp_ratio) for _ in range(depth))
        self.to_heatmap = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, pixels))
        # fixed, rebuilt from K: not saved, so checkpoints transfer between skeletons
        self.register_buffer(
            "position", sine_position_embedding(num_keypoints, dim), persistent=False
        )
        self.apply(init_transformer_weights)

    def reset_parameters(self) -> None:
        for module in self.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not self and callable(reset):
                reset()
        self.apply(init_transformer_weights)

    def forward(self, feature: Tensor, maps: Tensor) -> Tensor:
        """``feature (B, C, h, w)``, ``maps (B, K, h, w)`` -> refined maps ``(B, K, h, w)``."""
        b, k = maps.shape[:2]
        flat = maps.flatten(2)
        prompts = self.prompts(feature, flat)
        tokens = self.embed(flat)
        x = torch.cat((prompts, tokens), dim=1)
        for layer in self.layers:
            x = torch.cat((x[:, : self.parts], x[:, self.parts :] + self.position), dim=1)
            x = layer(x)
        return self.to_heatmap(x[:, self.parts :]).view(b, k, *self.heatmap_size)


def init_transformer_weights(module: nn.Module) -> None:
    """The code's ``MODEL.INIT`` scheme: Linear trunc-normal(0.02)/0, LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def unused_code_parameters(heatmap_pixels: int, dim: int, parts: int) -> int:
    """Parameters the official model builds but never uses, which we omit: ``bp_to_embeddings``
    Linear(h*w -> dim) and the ``bp_embeddings`` (1, P, dim) tensor."""
    return heatmap_pixels * dim + dim + parts * dim

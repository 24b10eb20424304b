"""Photo-like augmentation of letter batches, on whole batches in torch (no worker processes).

Mimics what a phone photo or scan of paper does to a letter after our segmentation crops it:
random affine (rotation, shear, scale, translation), elastic distortion (after Simard et al. 2003,
"Best practices for CNNs applied to visual document analysis"), stroke width (grey
dilation/erosion), blur, sensor noise and contrast/gamma changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; probabilities are per image.

    Units: degrees for angles, fractions of the image side for translation.
    """

    rotation_deg: float = 12.0
    shear: float = 0.3
    scale: tuple[float, float] = (0.8, 1.1)
    translate: float = 0.08
    elastic_p: float = 0.5
    elastic_alpha: float = 0.03   # displacement, fraction of the side
    elastic_sigma: float = 0.2    # smoothness, fraction of the side
    stroke_p: float = 0.4
    blur_p: float = 0.3
    noise_p: float = 0.3
    noise_std: float = 0.08
    contrast: tuple[float, float] = (0.5, 1.0)
    gamma: tuple[float, float] = (0.7, 1.5)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _smooth(field: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of ``field (B, C, H, W)`` with sigma in pixels."""
    radius = max(1, int(3 * sigma_px))
    k = _gaussian_kernel(sigma_px, radius)
    c = field.size(1)
    field = F.conv2d(field, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(field, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


def affine_grid(n: int, size: int, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Sampling grid (n, size, size, 2) in [-1, 1] for a random affine map per image."""
    angle = _uniform(n, -cfg.rotation_deg, cfg.rotation_deg, g) * math.pi / 180
    shear = _uniform(n, -cfg.shear, cfg.shear, g)
    scale = torch.exp(_uniform(n, math.log(cfg.scale[0]), math.log(cfg.scale[1]), g))
    tx, ty = (_uniform(n, -2 * cfg.translate, 2 * cfg.translate, g) for _ in range(2))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output -> input map: inverse of (scale * rotation * shear)
    a = torch.stack([torch.stack([cos, -sin + cos * shear], -1),
                     torch.stack([sin, cos + sin * shear], -1)], 1) * scale.view(n, 1, 1)
    theta = torch.cat([torch.linalg.inv(a), torch.stack([tx, ty], -1).unsqueeze(-1)], dim=2)
    return F.affine_grid(theta, [n, 1, size, size], align_corners=False)


def augment_batch(images: torch.Tensor, out_size: int, cfg: AugmentConfig,
                  g: torch.Generator) -> torch.Tensor:
    """Augment and resize a batch.

    Args:
        images: float32 (B, 1, S, S) in [0, 1], ink bright on black.
        out_size: side of the result (area-averaged down from S).
        cfg: augmentation strengths.
        g: the generator that makes the augmentation reproducible.

    Returns:
        float32 (B, 1, out_size, out_size) in [0, 1].
    """
    b, _, s, _ = images.shape
    grid = affine_grid(b, s, cfg, g)
    elastic = torch.rand(b, generator=g) < cfg.elastic_p
    if elastic.any():
        # a coarse random field, bicubically upsampled: smooth like a Gaussian-filtered one
        coarse = max(2, round(1 / cfg.elastic_sigma))
        noise = torch.rand(b, 2, coarse, coarse, generator=g) * 2 - 1
        field = F.interpolate(noise, size=(s, s), mode="bicubic", align_corners=False)
        grid = grid + (field.permute(0, 2, 3, 1) * cfg.elastic_alpha * 2
                       * elastic.view(b, 1, 1, 1))
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # stroke width: grey dilation (max filter) or erosion (min filter), 3x3
    stroke = torch.rand(b, generator=g)
    thicker = (stroke < cfg.stroke_p / 2).view(b, 1, 1, 1)
    thinner = ((stroke >= cfg.stroke_p / 2) & (stroke < cfg.stroke_p)).view(b, 1, 1, 1)
    dilated = F.max_pool2d(x, 3, 1, 1)
    eroded = -F.max_pool2d(-x, 3, 1, 1)
    x = torch.where(thicker, dilated, torch.where(thinner, eroded, x))
    if out_size != s:
        x = F.interpolate(x, size=(out_size, out_size), mode="area")
    blur = (torch.rand(b, generator=g) < cfg.blur_p).view(b, 1, 1, 1)
    x = torch.where(blur, _smooth(x, 0.8), x)
    contrast = _uniform(b, *cfg.contrast, g).view(b, 1, 1, 1)
    gamma = _uniform(b, *cfg.gamma, g).view(b, 1, 1, 1)
    x = x.clamp(0, 1).pow(gamma) * contrast
    noisy = (torch.rand(b, generator=g) < cfg.noise_p).view(b, 1, 1, 1)
    x = x + noisy * torch.randn(x.shape, generator=g) * cfg.noise_std
    return x.clamp(0, 1)


def prepare_batch(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """The evaluation/serving path: uint8 (B, S, S) → float32 (B, 1, out_size, out_size) in [0, 1],
    area-averaged to ``out_size`` exactly as training does after augmentation.
    """
    x = images.float().div(255).unsqueeze(1)
    if x.size(-1) != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="area")
    return x

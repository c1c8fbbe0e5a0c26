"""The SAM-Med2D adapter and the ViT block that carries it.

SAM-Med2D adds one adapter to every ViT block, parallel to the MLP and fed the same
``norm2`` output. Key names (``Adapter.channel.0`` …) follow the released checkpoint so that
``sam-med2d_b.pth`` loads strictly and our checkpoints load in the reference code.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Block, window_partition, window_unpartition
from torch import nn


class Adapter(nn.Module):
    """Channel gate (squeeze-excitation) then a strided conv/deconv pair, with a skip and a LayerNorm.

    Returns ``LayerNorm(x + spatial(x * gate(x)))``; the reference uses no biases and the
    default LayerNorm eps (1e-5), both kept here because the weights depend on them.
    """

    def __init__(self, dim: int, hidden_ratio: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * hidden_ratio)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )
        self.norm = nn.LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming (fan-out, ReLU) as the reference initialises adapters trained from scratch."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_first = x.permute(0, 3, 1, 2)
        gate = self.channel(channels_first.mean(dim=(2, 3)))
        spatial = self.spatial(channels_first * gate[:, :, None, None])
        return self.norm((channels_first + spatial).permute(0, 2, 3, 1))


class AdaptedBlock(Block):
    """segment-anything's ViT block plus the parallel adapter: ``x + MLP(n) + Adapter(n)``."""

    def __init__(self, dim: int, **block_kwargs) -> None:
        super().__init__(dim=dim, **block_kwargs)
        self.Adapter = Adapter(dim)  # capital A: the checkpoint's key name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            height, width = x.shape[1], x.shape[2]
            x, padded_size = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded_size, (height, width))
        else:
            x = self.attn(x)
        x = shortcut + x
        normed = self.norm2(x)
        return x + self.mlp(normed) + self.Adapter(normed)

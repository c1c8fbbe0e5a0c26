"""segment-anything's ViT attention with decomposed relative positions, on the fused SDPA kernel.

The reference forms the full attention matrix, adds the relative-position terms and applies softmax
in three passes. The same sum goes to ``scaled_dot_product_attention`` as an additive mask, which lets
PyTorch pick a fused kernel (memory-efficient on CUDA, flash-style on CPU) with the same result up to
rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn


class FusedRelPosAttention(nn.Module):
    """Same parameters and names as ``Attention`` (``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``)."""

    def __init__(self, source: Attention) -> None:
        super().__init__()
        self.num_heads = source.num_heads
        self.use_rel_pos = source.use_rel_pos
        self.qkv = source.qkv
        self.proj = source.proj
        if self.use_rel_pos:
            self.rel_pos_h = source.rel_pos_h
            self.rel_pos_w = source.rel_pos_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
        bias = self._relative_position_bias(q, height, width) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
        return self.proj(out)

    def _relative_position_bias(self, q: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The reference's ``add_decomposed_rel_pos`` terms as a (B, heads, N, N) additive mask."""
        batch, heads, tokens, head_dim = q.shape
        rows = get_rel_pos(height, height, self.rel_pos_h)
        columns = get_rel_pos(width, width, self.rel_pos_w)
        grid_q = q.reshape(batch * heads, height, width, head_dim)
        rel_rows = torch.einsum("bhwc,hkc->bhwk", grid_q, rows)
        rel_columns = torch.einsum("bhwc,wkc->bhwk", grid_q, columns)
        bias = rel_rows[:, :, :, :, None] + rel_columns[:, :, :, None, :]
        return bias.reshape(batch, heads, tokens, tokens)

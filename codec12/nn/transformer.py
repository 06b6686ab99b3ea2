"""Causal transformer with RoPE, a bounded attention context and LayerScale, streaming with a KV cache.

Offline, a step at position ``t`` attends to positions ``(t - context, t]``. Streaming keeps the last
``context`` keys/values in a fixed-size cache (unfilled slots are masked), so streamed and offline outputs
match, and the exported step graph has fixed state shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec12.nn.streaming import StreamingModule


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (half-split layout: the first and second halves of a head rotate together)."""

    def __init__(self, head_dim: int, max_period: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (max_period ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: [B, H, T, Dh]; positions: [T] -> x rotated by its positions."""
        freqs = positions.to(torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin


@dataclass
class AttentionState:
    keys: torch.Tensor  # [B, H, context, Dh], rotated
    values: torch.Tensor  # [B, H, context, Dh]
    offset: torch.Tensor  # [] int64: steps seen so far


class Attention(StreamingModule):
    def __init__(self, d_model: int, num_heads: int, context: int, max_period: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.context = context
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)
        self.rope = RotaryEmbedding(self.head_dim, max_period)

    def init_state(self, batch_size, device, dtype):
        shape = (batch_size, self.num_heads, self.context, self.head_dim)
        return AttentionState(torch.zeros(shape, device=device, dtype=dtype),
                              torch.zeros(shape, device=device, dtype=dtype),
                              torch.zeros((), dtype=torch.long, device=device))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, D] -> [B, T, D]."""
        b, t, d = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        state = self._state
        steps = torch.arange(t, device=x.device)
        if isinstance(state, AttentionState):
            pos_q = state.offset + steps
            q, k = self.rope(q, pos_q), self.rope(k, pos_q)
            k = torch.cat([state.keys, k], dim=2)
            v = torch.cat([state.values, v], dim=2)
            pos_k = torch.cat([state.offset - self.context + torch.arange(self.context, device=x.device), pos_q])
            state.keys = k[:, :, t:].clone()  # copies: views would keep the whole chunk's keys alive
            state.values = v[:, :, t:].clone()
            state.offset = state.offset + t
        else:
            pos_q = pos_k = steps
            q, k = self.rope(q, pos_q), self.rope(k, pos_q)
            if t > 2 * self.context and not torch.jit.is_tracing():
                out = self._blocked(q, k, v, steps)
                return self.o_proj(out.transpose(1, 2).reshape(b, t, d))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(pos_q, pos_k))
        return self.o_proj(out.transpose(1, 2).reshape(b, t, d))

    def _mask(self, pos_q: torch.Tensor, pos_k: torch.Tensor) -> torch.Tensor:
        delta = pos_q[:, None] - pos_k[None, :]
        return (delta >= 0) & (delta < self.context) & (pos_k >= 0)[None, :]

    def _blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Offline attention in query blocks of ``context`` steps, each against the keys it can see, so
        memory grows linearly with the length instead of quadratically."""
        out = []
        for start in range(0, q.shape[2], self.context):
            end = min(start + self.context, q.shape[2])
            first = max(0, start - self.context + 1)
            mask = self._mask(pos[start:end], pos[first:end])
            out.append(F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, first:end], v[:, :, first:end],
                                                      attn_mask=mask))
        return torch.cat(out, dim=2)


class LayerScale(nn.Module):
    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class MLP(nn.Module):
    def __init__(self, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, dim_feedforward, bias=False)
        self.fc2 = nn.Linear(dim_feedforward, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, context: int, max_period: float,
                 layer_scale: float, norm_eps: float) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(d_model, eps=norm_eps)
        self.self_attn = Attention(d_model, num_heads, context, max_period)
        self.self_attn_layer_scale = LayerScale(d_model, layer_scale)
        self.post_attention_layernorm = nn.LayerNorm(d_model, eps=norm_eps)
        self.mlp = MLP(d_model, dim_feedforward)
        self.mlp_layer_scale = LayerScale(d_model, layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x)))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class StreamingTransformer(nn.Module):
    """Stack of causal layers on channel-first input: [B, D, T] -> [B, D, T]."""

    def __init__(self, d_model: int, num_heads: int, num_layers: int, dim_feedforward: int, context: int,
                 max_period: float = 10000.0, layer_scale: float = 0.01, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            TransformerLayer(d_model, num_heads, dim_feedforward, context, max_period, layer_scale, norm_eps)
            for _ in range(num_layers)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layers:
            return x
        x = x.transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return x.transpose(1, 2)

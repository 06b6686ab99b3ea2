"""Voxtral's codec transformer: causal attention with ALiBi over a sliding window, streaming with a KV cache.

Each layer: RMSNorm -> attention (RMSNorm on the whole query and key projections, grouped key/value heads,
ALiBi bias ``slope_h * (j - i)`` over the current step and ``window`` past ones) -> LayerScale -> residual;
RMSNorm -> SwiGLU feed-forward -> LayerScale -> residual. Module and parameter names follow Voxtral's own
(``attention.wq``, ``feed_forward.w1``, ``attention_norm``, ``attention_scale``, ...), so checkpoints map by
prefix alone.

ALiBi depends on ``j - i`` only, so the streaming cache needs no positions: it keeps the last ``window`` keys
and values (normalized, before heads are repeated) and a count of the steps seen, which masks unfilled slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codec12.nn.streaming import StreamingModule

# Offline, sequences longer than twice this many steps attend in query blocks of this size, each against the
# keys it can see, so memory grows linearly with the length instead of quadratically.
BLOCK = 256


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """[num_heads] float32: the geometric slopes ``r ** h`` with ``r = 2 ** (-8 / n)`` (Voxtral starts at 1,
    not ``r``); for a head count that is no power of two, those of the largest power of two below it followed
    by every other slope of twice that many."""

    def powers(n: int) -> list[float]:
        r = 2.0 ** (-8.0 / n)
        return [r ** i for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = powers(num_heads)
    else:
        m = 2 ** math.floor(math.log2(num_heads))
        slopes = powers(m) + powers(2 * m)[::2][: num_heads - m]
    return torch.tensor(slopes, dtype=torch.float32)


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension: ``torch.nn.RMSNorm``'s arithmetic (the
    same values on CPU), written out because ``aten::rms_norm`` has no ONNX export before opset 23."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


@dataclass
class AlibiState:
    keys: torch.Tensor  # [B, H_kv, window, Dh]: the last ``window`` keys (k_norm applied)
    values: torch.Tensor  # [B, H_kv, window, Dh]
    offset: torch.Tensor  # [] int64: steps seen so far (slots of steps before 0 are masked)


class AlibiAttention(StreamingModule):
    """x [B, T, dim] -> [B, T, dim]; step ``i`` attends to steps ``i - window .. i``."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, head_dim: int, window: int,
                 qk_norm_eps: float | None, bias: bool) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim, self.window = num_heads, num_kv_heads, head_dim, window
        self.wq = nn.Linear(dim, num_heads * head_dim, bias=False)
        self.wk = nn.Linear(dim, num_kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, num_kv_heads * head_dim, bias=False)
        self.wo = nn.Linear(num_heads * head_dim, dim, bias=bias)
        self.q_norm = self.k_norm = None
        if qk_norm_eps is not None:
            self.q_norm = RMSNorm(num_heads * head_dim, eps=qk_norm_eps)
            self.k_norm = RMSNorm(num_kv_heads * head_dim, eps=qk_norm_eps)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def init_state(self, batch_size, device, dtype):
        shape = (batch_size, self.num_kv_heads, self.window, self.head_dim)
        return AlibiState(torch.zeros(shape, device=device, dtype=dtype),
                          torch.zeros(shape, device=device, dtype=dtype),
                          torch.zeros((), dtype=torch.long, device=device))

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)

    def _bias(self, pos_q: torch.Tensor, pos_k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[H, Tq, Tk]: ``slope * (j - i)`` where key ``j`` is visible from query ``i``, -inf elsewhere."""
        rel = pos_k[None, :] - pos_q[:, None]
        bias = self.slopes.to(dtype).view(-1, 1, 1) * rel[None].to(dtype)
        hidden = (rel > 0) | (rel < -self.window) | (pos_k < 0)[None, :]
        return bias.masked_fill(hidden[None], float("-inf"))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos_q: torch.Tensor,
                pos_k: torch.Tensor) -> torch.Tensor:
        if self.num_kv_heads != self.num_heads:
            repeats = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(pos_q, pos_k, q.dtype)[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = self._heads(q, self.num_heads), self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)
        steps = torch.arange(t, device=x.device)
        state = self._state
        if isinstance(state, AlibiState):
            pos_q = state.offset + steps
            pos_k = torch.cat([state.offset - self.window + torch.arange(self.window, device=x.device), pos_q])
            k, v = torch.cat([state.keys, k], dim=2), torch.cat([state.values, v], dim=2)
            # Copies: views would keep the whole chunk's keys and values alive until the next chunk.
            state.keys, state.values, state.offset = k[:, :, t:].clone(), v[:, :, t:].clone(), state.offset + t
            out = self._attend(q, k, v, pos_q, pos_k)
        elif t > 2 * BLOCK and not torch.jit.is_tracing():
            out = torch.cat([self._attend(q[:, :, s:s + BLOCK], k[:, :, max(0, s - self.window):s + BLOCK],
                                          v[:, :, max(0, s - self.window):s + BLOCK], steps[s:s + BLOCK],
                                          steps[max(0, s - self.window):s + BLOCK])
                             for s in range(0, t, BLOCK)], dim=2)
        else:
            out = self._attend(q, k, v, steps, steps)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class AlibiTransformerLayer(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, num_heads: int, num_kv_heads: int, head_dim: int, window: int,
                 norm_eps: float, qk_norm_eps: float | None, bias: bool, layer_scale: float | None) -> None:
        super().__init__()
        self.attention = AlibiAttention(dim, num_heads, num_kv_heads, head_dim, window, qk_norm_eps, bias)
        self.feed_forward = FeedForward(dim, hidden_dim, bias)
        self.attention_norm = RMSNorm(dim, eps=norm_eps)
        self.ffn_norm = RMSNorm(dim, eps=norm_eps)
        self.attention_scale = self.ffn_scale = None
        if layer_scale is not None:
            self.attention_scale = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.ffn_scale = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.attention(self.attention_norm(x))
        if self.attention_scale is not None:
            r = self.attention_scale * r
        h = x + r
        r = self.feed_forward(self.ffn_norm(h))
        if self.ffn_scale is not None:
            r = self.ffn_scale * r
        return h + r


class AlibiTransformer(nn.Module):
    """A stack of layers on channel-first input: [B, dim, T] -> [B, dim, T]."""

    def __init__(self, num_layers: int, dim: int, hidden_dim: int, num_heads: int, num_kv_heads: int,
                 head_dim: int, window: int, norm_eps: float, qk_norm_eps: float | None, bias: bool,
                 layer_scale: float | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            AlibiTransformerLayer(dim, hidden_dim, num_heads, num_kv_heads, head_dim, window, norm_eps, qk_norm_eps,
                                  bias, layer_scale)
            for _ in range(num_layers)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return x.transpose(1, 2)

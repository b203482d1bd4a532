"""An inference forward that returns only what E5 pooling reads: the final hidden state at the EOS.

Two exact savings over ``model(input_ids, attention_mask)`` followed by last-token pooling, for
right-padded batches of Llama-style decoders (Llama, Mistral, Qwen2):

- No padding mask. Attention is causal, so a token never sees the positions after it, and with
  right padding every pad comes after its row's EOS. The pads change nothing the EOS reads, and
  SDPA runs its causal kernel instead of a dense (batch, 1, seq, seq) mask with the key/value heads
  repeated for grouped-query attention.
- The last decoder layer at the EOS position only. Its keys and values still come from every
  token, but the query, output projection and MLP run on one row per text instead of ``seq``.
  For a 30-layer model that is about 3% of the forward's FLOPs.

Anything else (left padding, another architecture, a non-SDPA attention implementation, a
sequence longer than a sliding window) is refused by ``supports_eos_forward`` and the caller runs
the plain forward.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2"})
_LAYER_PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
_ATTN_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")


def supports_eos_forward(model: torch.nn.Module, seq_len: int) -> bool:
    """Whether ``eos_hidden`` is exact for this backbone (``AutoModel``, no LM head) at ``seq_len``."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in _ARCHITECTURES:
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False  # a missing mask is causal only in SDPA's path (eager would attend to the future)
    if not all(hasattr(model, part) for part in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return False
    window = getattr(config, "sliding_window", None)
    if window is not None and seq_len > window and _uses_sliding_window(config):
        return False
    last = model.layers[-1]
    return (all(hasattr(last, part) for part in _LAYER_PARTS)
            and all(hasattr(last.self_attn, part) for part in _ATTN_PARTS))


def _uses_sliding_window(config) -> bool:
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return "sliding_attention" in layer_types
    return getattr(config, "use_sliding_window", True)


def eos_hidden(model: torch.nn.Module, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden state at each row's last token, right-padded input.

    (batch, seq) int64 ids, (batch,) int64 lengths -> (batch, hidden), the model's dtype.
    Equals ``model(input_ids, attention_mask).last_hidden_state[row, length - 1]``.
    """
    batch, seq = input_ids.shape
    rows = torch.arange(batch, device=input_ids.device)
    eos = lengths.to(input_ids.device) - 1
    hidden = model.embed_tokens(input_ids)
    positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
    cos, sin = model.rotary_emb(hidden, position_ids=positions)
    for layer in model.layers[:-1]:
        hidden = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=(cos, sin))
    return model.norm(_last_layer_at(model.layers[-1], hidden, rows, eos, cos, sin))


def _last_layer_at(layer, hidden: torch.Tensor, rows: torch.Tensor, eos: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor) -> torch.Tensor:
    """One decoder layer evaluated at positions ``eos`` only. (batch, seq, h) -> (batch, h)"""
    attn = layer.self_attn
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb  # the architecture's own rotary
    batch, seq, _ = hidden.shape
    d = attn.head_dim
    x = layer.input_layernorm(hidden)
    x_eos = x[rows, eos]                                                      # (batch, h)
    q = attn.q_proj(x_eos).view(batch, 1, -1, d).transpose(1, 2)              # (batch, heads, 1, d)
    k = attn.k_proj(x).view(batch, seq, -1, d).transpose(1, 2)                # (batch, kv_heads, seq, d)
    v = attn.v_proj(x).view(batch, seq, -1, d).transpose(1, 2)
    q, _ = rope(q, q, cos[0, eos].unsqueeze(1), sin[0, eos].unsqueeze(1))     # cos, sin: (1, seq, d)
    k, _ = rope(k, k, cos, sin)
    visible = (torch.arange(seq, device=hidden.device) <= eos[:, None])[:, None, None, :]  # (batch, 1, 1, seq)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=attn.scaling,
                                         enable_gqa=k.shape[1] != q.shape[1])
    h = hidden[rows, eos] + attn.o_proj(out.transpose(1, 2).reshape(batch, -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))

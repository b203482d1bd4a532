"""One contrastive step's forward/backward: plain, or with GradCache.

GradCache (Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
arXiv 2101.06983) decouples the batch from memory: (1) embed every chunk without a graph, saving
each chunk's RNG state; (2) compute the loss on the detached embeddings and its gradient with
respect to them; (3) re-embed each chunk with a graph under the same RNG state (same dropout masks)
and backpropagate ``sum(embedding * cached_gradient)``. The parameter gradients equal those of the
plain full-batch step; peak memory is that of one chunk.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import get_device_states, set_device_states

from e5rag.retriever.encoder import Encoder
from e5rag.retriever.instructions import format_query

from .data import Example
from .distributed import all_reduce_max
from .loss import batch_stats, info_nce

Backward = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class TokenizedBatch:
    """Token ids (each ending in EOS) of one rank's queries and documents.

    ``docs`` holds the B positives first (row i belongs to query i), then every hard negative.
    """

    queries: list[list[int]]
    docs: list[list[int]]
    truncated: int = 0  # texts cut at max_length

    @property
    def num_tokens(self) -> int:
        return sum(map(len, self.queries)) + sum(map(len, self.docs))


def tokenize_batch(encoder: Encoder, examples: Sequence[Example]) -> TokenizedBatch:
    """Queries as ``Instruct: {task}\\nQuery: {query}``, documents bare, through the encoder's tokenizer."""
    queries = [format_query(e.task, e.query) for e in examples]
    docs = [e.positive for e in examples] + [n for e in examples for n in e.negatives]
    q_ids, q_cut = encoder.tokenize(queries)
    d_ids, d_cut = encoder.tokenize(docs)
    return TokenizedBatch(q_ids, d_ids, q_cut + d_cut)


class RandContext:
    """Captures the CPU and CUDA RNG states now; ``with ctx:`` replays them (restoring afterwards)."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.cpu_state = torch.get_rng_state()
        self.devices, self.states = get_device_states(*tensors)
        self._fork: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=self.devices, enabled=True)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        set_device_states(self.devices, self.states)

    def __exit__(self, *exc: object) -> None:
        assert self._fork is not None
        self._fork.__exit__(*exc)
        self._fork = None


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (fp32 there: bf16 matmuls are far slower on CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _embed(encoder: Encoder, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """(n,) id lists -> (n, dim) float32 normalised embeddings, through ``Encoder.embed_tokens``."""
    ids, mask = encoder.collate(seqs)
    with autocast(encoder.device):
        return encoder.embed_tokens(ids, mask)


def plain_step(encoder: Encoder, batch: TokenizedBatch, temperature: float,
               backward: Backward) -> tuple[torch.Tensor, dict[str, float]]:
    """Embed queries and documents with one graph each, then backpropagate the loss.
    -> (loss (detached), ``batch_stats``)"""
    q = _embed(encoder, batch.queries)  # (B, dim)
    d = _embed(encoder, batch.docs)  # (B + N, dim)
    loss = info_nce(q, d, temperature)
    backward(loss)
    return loss.detach(), batch_stats(q, d)


def chunk_plan(lengths: Sequence[int], chunk_size: int, lockstep: bool) -> list[list[int]]:
    """Indices grouped into chunks of similar length (less padding), longest first.

    With ``lockstep`` every rank makes the same number of chunks (the most any rank needs), some
    possibly empty: ZeRO-3 gathers weights in every forward, so all ranks must run as many.
    """
    count = max(1, math.ceil(len(lengths) / chunk_size))
    if lockstep:
        count = all_reduce_max(count)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    size = math.ceil(len(order) / count) if order else 0
    return [order[k * size:(k + 1) * size] for k in range(count)]


def _dummy(encoder: Encoder) -> list[list[int]]:
    return [[encoder.pad_id]]


def gradcache_step(encoder: Encoder, batch: TokenizedBatch, temperature: float, chunk_size: int,
                   backward: Backward, lockstep: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """The GradCache step (see the module docstring); same gradients as ``plain_step``.
    -> (loss (detached), ``batch_stats``)"""
    sides = [batch.queries, batch.docs]
    plans = [chunk_plan([len(s) for s in seqs], chunk_size, lockstep) for seqs in sides]
    device = encoder.device
    cached: list[torch.Tensor] = []
    states: list[list[RandContext]] = []
    with torch.no_grad():  # pass 1: embeddings without a graph, RNG state of each chunk saved
        for seqs, plan in zip(sides, plans, strict=True):
            reps = torch.empty((len(seqs), encoder.dim), dtype=torch.float32, device=device)
            states.append([])
            for idx in plan:
                chunk = [seqs[i] for i in idx] if idx else _dummy(encoder)
                states[-1].append(RandContext(torch.empty(0, device=device)))
                out = _embed(encoder, chunk)
                if idx:
                    reps[idx] = out
            cached.append(reps.requires_grad_(True))
    loss = info_nce(cached[0], cached[1], temperature)  # pass 2: loss and d loss / d embedding
    loss.backward()
    for seqs, plan, rep, rngs in zip(sides, plans, cached, states, strict=True):  # pass 3: replay chunks, backprop
        grad = rep.grad
        for idx, rng in zip(plan, rngs, strict=True):
            with rng:
                out = _embed(encoder, [seqs[i] for i in idx] if idx else _dummy(encoder))
            surrogate = (out * grad[idx]).sum() if idx else out.sum() * 0.0
            backward(surrogate)
    return loss.detach(), batch_stats(cached[0], cached[1])

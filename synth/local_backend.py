"""A local transformers chat backend: requests in flight are gathered into one batched ``generate``.

Workers call ``complete``; a runner task takes whatever is queued (up to ``max_batch``), renders
each with the tokenizer's chat template, appends the request's prefill, and generates in a worker
thread so the event loop stays responsive. Sampling is seeded with the batch's first request seed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .backend import ChatRequest, Completion

if TYPE_CHECKING:
    from .config import LocalBackendConfig

log = logging.getLogger(__name__)


def render_prompt(tokenizer, messages: list[dict[str, str]], prefill: str = "") -> str:
    """The chat-template text for ``messages`` with the assistant turn opened (plus ``prefill``)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:  # a base model without a template: a plain transcript is the best we can do
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant: "
    return text + prefill


class LocalChatBackend:
    """Batched sampling from a causal LM; ``name`` is what rows record as their model."""

    def __init__(self, tokenizer, model, name: str, max_batch: int = 8, prefill: bool = True) -> None:
        self.tokenizer, self.model, self.name = tokenizer, model, name
        self.max_batch, self.prefill = max_batch, prefill
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # decoder-only: pad with EOS, masked out
        tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
        self._queue: list[tuple[ChatRequest, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None

    @classmethod
    def load(cls, config: LocalBackendConfig, max_batch: int = 8) -> LocalChatBackend:
        from e5rag.retriever.loading import BASE_MODEL_NAME, load_causal_lm

        tokenizer, model = load_causal_lm(config.model, device=config.device, dtype=config.dtype)
        name = BASE_MODEL_NAME if config.model in (None, "default") else Path(str(config.model)).name
        return cls(tokenizer, model, name, max_batch=max_batch, prefill=config.prefill)

    async def complete(self, request: ChatRequest) -> Completion:
        if self._runner is None or self._runner.done():
            self._wake = asyncio.Event()
            self._runner = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # let the other workers queue their requests first
            self._wake.clear()
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            batch = [(r, f) for r, f in batch if not f.done()]
            if self._queue:
                self._wake.set()
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self.generate, [r for r, _ in batch])
            except Exception as exc:  # hand the failure to every waiting caller
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        """One batched ``generate`` call; the returned text includes each request's prefill."""
        import torch

        tok = self.tokenizer
        prefills = [r.prefill if self.prefill else "" for r in requests]
        prompts = [render_prompt(tok, r.messages, p) for r, p in zip(requests, prefills, strict=True)]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        first = requests[0]
        torch.manual_seed(first.seed)
        sample = first.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=max(r.max_tokens for r in requests), do_sample=sample,
                temperature=first.temperature if sample else None, top_p=first.top_p if sample else None,
                top_k=0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        rows = zip(new, enc["attention_mask"], prefills, requests, strict=True)
        for row, prompt_mask, prefill, req in rows:
            ids = row.tolist()
            stop = ids.index(tok.eos_token_id) if tok.eos_token_id in ids else len(ids)
            ids = ids[: min(stop, req.max_tokens)]
            text = prefill + tok.decode(ids, skip_special_tokens=True)
            results.append(Completion(text, int(prompt_mask.sum()), len(ids), 0,
                                      "stop" if stop < len(row) else "length"))
        return results

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, Exception):
                pass
        for _, fut in self._queue:
            fut.cancel()
        self._queue = []

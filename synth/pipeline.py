"""The run: brainstorm task pools, then request examples until the output holds N valid unique rows.

Resumable by construction (see ``store`` and ``plan``): the existing output gives the count, the
seen-set and the next request index; the tasks file gives the pools; request ``i`` is the same
question in every run. Rows are written one at a time from the event loop, so the count check and
the write cannot interleave. SIGTERM cancels the requests in flight, closes the files (every row
already written stays) and returns the summary so far, marked ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator

from e5rag.retriever.progress import progress

from .backend import ChatBackend, ChatRequest, RequestFailed, SynthError, make_backend
from .config import SynthConfig
from .kinds import KIND_SPECS, row_fields
from .languages import language_weights
from .plan import ExamplePlan, derive_seed, plan_example
from .prompts import BRAINSTORM_PREFILL, brainstorm_messages, json_prefill, prompt_hash
from .store import (
    ExistingOutput,
    JsonlAppender,
    example_key,
    load_existing,
    load_task_rounds,
    row_id,
    task_pool,
)
from .summary import RunStats, SynthSummary, cost_usd
from .validate import parse_example, parse_task_list

log = logging.getLogger(__name__)

BRAINSTORM_ATTEMPTS = 3
BRAINSTORM_MAX_TOKENS = 1024  # about 20 one-sentence tasks; never more than the example budget


def synthesize(config: SynthConfig, backend: ChatBackend | None = None) -> SynthSummary:
    """Run ``config`` to completion (or to its request cap) and return the summary.

    ``backend`` overrides the one ``config.backend`` describes (it is then not closed here).
    """
    return asyncio.run(synthesize_async(config, backend))


async def synthesize_async(config: SynthConfig, backend: ChatBackend | None = None) -> SynthSummary:
    started = time.monotonic()
    existing = load_existing(config.out, config.seed)
    if existing.torn_bytes:
        log.warning("removed a torn last line (%d bytes) from %s", existing.torn_bytes, config.out)
    stats, brainstorm_drops, pools = RunStats(), Counter(), {}
    interrupted = None
    if existing.count < config.num_examples:
        own = backend is None
        backend = make_backend(config) if own else backend
        try:
            with _cancel_on_sigterm() as received:
                try:
                    pools = await build_pools(config, backend, stats, brainstorm_drops, resuming=existing.count > 0)
                    await _generate(config, backend, pools, existing, stats)
                except asyncio.CancelledError:
                    if not received:
                        raise
                    _uncancel()
                    interrupted = "SIGTERM"
        finally:
            if own:
                await backend.aclose()
    return SynthSummary(
        out=str(config.out), requested=config.num_examples, total=existing.count + stats.kept,
        resumed=existing.count, kept=stats.kept, duplicates=stats.duplicates, surplus=stats.surplus,
        dropped=dict(stats.dropped), brainstorm_dropped=dict(brainstorm_drops),
        requests=stats.requests, brainstorm_requests=stats.brainstorm_requests, retries=stats.retries,
        prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
        wall_s=time.monotonic() - started,
        cost_usd=cost_usd(stats.prompt_tokens, stats.completion_tokens, config.price_prompt,
                          config.price_completion),
        task_pool_sizes={k: len(v) for k, v in pools.items()},
        interrupted=interrupted,
    )


@contextlib.contextmanager
def _cancel_on_sigterm() -> Iterator[list[int]]:
    """While inside, SIGTERM cancels the current task; the list yielded gets the signal number.

    Outside the main thread (where asyncio cannot install handlers) SIGTERM keeps its default."""
    loop, task, received = asyncio.get_running_loop(), asyncio.current_task(), []

    def stop() -> None:
        received.append(signal.SIGTERM)
        log.warning("SIGTERM: stopping; rows written so far are kept")
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (NotImplementedError, RuntimeError, ValueError):
        yield received
        return
    try:
        yield received
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _uncancel() -> None:
    """Clear the handled cancellation (Python 3.11+), so later awaits in this task run normally."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


async def build_pools(config: SynthConfig, backend: ChatBackend, stats: RunStats, drops: Counter,
                      resuming: bool = False) -> dict[str, list[str]]:
    """Task pools of the asymmetric kinds, brainstorming the rounds the tasks file lacks.

    When examples were already written (``resuming``), a non-empty saved pool is used as is, so the
    request plan stays the one the earlier run followed.
    """
    kinds = [k for k in config.kinds if not KIND_SPECS[k].symmetric]
    rounds = load_task_rounds(config.tasks_path)
    todo = [(k, r) for k in kinds for r in range(config.rounds_per_kind())
            if r not in rounds[k] and not (resuming and rounds[k])]
    if todo:
        sem = asyncio.Semaphore(config.concurrency)
        with JsonlAppender(config.tasks_path) as out, progress(len(todo), "synth brainstorm", "rounds",
                                                                enabled=config.progress) as bar:
            async def one(kind: str, rnd: int) -> None:
                async with sem:
                    tasks, row = await _brainstorm_round(config, backend, kind, rnd, stats, drops)
                if tasks:
                    rounds[kind][rnd] = tasks
                    out.write(row)
                bar.update(1)

            await asyncio.gather(*(one(k, r) for k, r in todo))
    pools = {k: task_pool(rounds[k]) for k in kinds}
    empty = [k for k in kinds if not pools[k]]
    if empty:
        raise SynthError(f"no task definitions could be brainstormed for {', '.join(empty)}: the model returned "
                         f"no JSON list of strings in {BRAINSTORM_ATTEMPTS} tries per round "
                         f"(drops: {dict(drops)}); use a stronger model, or write tasks to "
                         f"{config.tasks_path} as {{\"kind\", \"round\", \"tasks\"}} rows")
    return pools


async def _brainstorm_round(config: SynthConfig, backend: ChatBackend, kind: str, rnd: int,
                            stats: RunStats, drops: Counter) -> tuple[list[str], dict]:
    for attempt in range(BRAINSTORM_ATTEMPTS):
        seed = derive_seed(config.seed, f"brainstorm:{kind}:{rnd}", attempt)
        messages = brainstorm_messages(kind, random.Random(seed))
        request = ChatRequest(messages, seed, min(BRAINSTORM_MAX_TOKENS, config.example_max_tokens),
                              config.temperature, config.top_p, BRAINSTORM_PREFILL)
        stats.brainstorm_requests += 1
        try:
            completion = await backend.complete(request)
        except RequestFailed as exc:
            stats.retries += exc.retries
            drops[exc.reason] += 1
            continue
        stats.add_usage(completion.prompt_tokens, completion.completion_tokens, completion.retries)
        tasks = parse_task_list(completion.text)
        if tasks:
            return tasks, {"kind": kind, "round": rnd, "tasks": tasks, "model": backend.name,
                           "prompt_hash": prompt_hash(messages)}
        drops["no_tasks"] += 1
    return [], {}


def _progress(config: SynthConfig, initial: int, stats: RunStats):
    """A bar on a terminal; in logs a line at most every $E5RAG_PROGRESS_SECONDS (see ``progress``)."""
    return progress(config.num_examples, "synth", "examples", initial=initial, enabled=config.progress,
                    status=lambda: f"{stats.requests} requests answered, {sum(stats.dropped.values())} dropped")


class _Sink:
    """Validates, deduplicates and writes example replies; counts what happens to each."""

    def __init__(self, config: SynthConfig, out: JsonlAppender, existing: ExistingOutput, stats: RunStats,
                 bar, model: str) -> None:
        self.config, self.out, self.seen, self.stats, self.bar, self.model = (
            config, out, existing.seen, stats, bar, model)
        self.total = existing.count

    def __call__(self, plan: ExamplePlan, text: str) -> None:
        example, reason = parse_example(plan.kind, text, self.config.max_field_chars)
        if example is None:
            self.stats.dropped[reason] += 1
            return
        query, positive, negative = row_fields(plan.kind, example)
        key = example_key(query, positive, negative)
        if key in self.seen:
            self.stats.duplicates += 1
            return
        self.seen.add(key)
        self.out.write({"id": row_id(self.config.seed, plan.index), "kind": plan.kind,
                        "language": plan.language_label, "task": plan.task, "query": query,
                        "positive": positive, "negative": negative, "model": self.model,
                        "prompt_hash": plan.prompt_hash})
        self.stats.kept += 1
        self.total += 1
        self.bar.update(1)


async def _generate(config: SynthConfig, backend: ChatBackend, pools: dict[str, list[str]],
                    existing: ExistingOutput, stats: RunStats) -> None:
    weights = language_weights(config.languages)
    state = {"next": existing.next_index, "failures": 0}
    fail_limit = max(8, 2 * config.concurrency)
    done = asyncio.Event()
    with JsonlAppender(config.out) as out, _progress(config, existing.count, stats) as bar:
        sink = _Sink(config, out, existing, stats, bar, backend.name)

        async def worker() -> None:
            while not done.is_set() and state["next"] < config.request_cap:
                plan = plan_example(config.seed, state["next"], config.kinds, weights, pools)
                state["next"] += 1
                request = ChatRequest(plan.messages, plan.seed, config.example_max_tokens,
                                      config.temperature, config.top_p, json_prefill(plan.kind))
                try:
                    completion = await backend.complete(request)
                except RequestFailed as exc:
                    stats.requests += 1  # counted when answered or failed (not when cancelled)
                    stats.retries += exc.retries
                    stats.dropped[exc.reason] += 1
                    state["failures"] += 1
                    if state["failures"] >= fail_limit:
                        raise SynthError(f"{state['failures']} requests in a row failed (last: {exc}); "
                                         f"is the endpoint up? The run can be resumed later") from None
                    continue
                state["failures"] = 0
                stats.requests += 1
                stats.add_usage(completion.prompt_tokens, completion.completion_tokens, completion.retries)
                bar.update(0)  # with E5RAG_PROGRESS_SECONDS=0, a line per reply, also when it is dropped
                if done.is_set():
                    stats.surplus += 1
                    return
                sink(plan, completion.text)
                if sink.total >= config.num_examples:
                    done.set()

        await _run_workers([worker() for _ in range(config.concurrency)], done)


async def _run_workers(coros: list, done: asyncio.Event) -> None:
    """Run workers until all return or ``done`` is set; cancel the rest; re-raise a worker's error."""
    workers = [asyncio.ensure_future(c) for c in coros]
    gathered = asyncio.gather(*workers)
    waiter = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait({gathered, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        for w in workers:
            w.cancel()
        results = await asyncio.gather(*workers, return_exceptions=True)
        if gathered.done() and not gathered.cancelled():
            gathered.exception()  # retrieved here; raised below from ``results``
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result

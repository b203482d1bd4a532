"""The ``e5rag`` command: a thin face over the library. One module a command group.

Each module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its sub-command(s)
and sets ``func(args) -> int`` on the parser. Library errors (``E5RagError``) become one line on
stderr and exit code 2; nothing here prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys

from e5rag import __version__

COMMAND_MODULES = ("index", "search", "serve", "get", "admin", "synth", "evaluate", "train", "reindex")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e5rag", description="E5-style LLM embeddings: index once, ask many ways.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # `deepspeed --module e5rag ...` puts --local_rank=N before the command; ranks come from the
    # environment (LOCAL_RANK), so the value is accepted and ignored (also after `train`).
    parser.add_argument("--local_rank", "--local-rank", dest="launcher_local_rank_top", type=int,
                        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for command in sub.choices.values():  # `e5rag search -v ...` too; SUPPRESS keeps a -v given before
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress details to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    from e5rag.errors import E5RagError

    if not sys.stderr.isatty():
        # Bars that dependencies draw themselves (transformers' GGUF conversion ignores its own
        # disable_progress_bar) would fill a log with carriage returns; tqdm reads this at import.
        os.environ.setdefault("TQDM_DISABLE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="e5rag: %(message)s")
    try:
        return int(args.func(args) or 0)
    except E5RagError as exc:  # StoreError included
        print(f"e5rag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a clean stop (training's TrainingStopped) says where it left off
        print(f"e5rag: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", 2))
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

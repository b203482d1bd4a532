"""``e5rag delete``, ``e5rag info``, ``e5rag compact`` and ``e5rag tasks``."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_store_args, store_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delete", help="delete documents by id (exit 1, naming them, if some ids are not there)")
    p.add_argument("ids", nargs="+", metavar="ID", help="document id(s) to delete")
    add_store_args(p)
    p.set_defaults(func=run_delete)

    p = sub.add_parser("info", help="show an index's manifest: model, dimension, count, store")
    add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.set_defaults(func=run_info)

    p = sub.add_parser("compact", help="rewrite a FAISS index's base from its live vectors: merges the segments "
                                       "commits appended and drops replaced or deleted vectors (no re-embedding)")
    add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_compact)

    p = sub.add_parser("tasks", help="list the registered task names and their definitions")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, definition, kind}")
    p.set_defaults(func=run_tasks)


def run_delete(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.parents import delete_documents

    with open_store(args.index, readonly=True, **store_options(args)):
        pass  # refuses a missing index before anything is created
    ids = list(dict.fromkeys(args.ids))
    with open_store(args.index, **store_options(args)) as store:
        present = set(delete_documents(store, ids))  # a chunked document goes with all its chunks
        n = len(present)
        store.commit()
        total = store.count()
    missing = [i for i in ids if i not in present]
    print(f"deleted {n} of {len(ids)} ids; {total} documents left", file=sys.stderr)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        print(f"e5rag: warning: {len(missing)} id(s) not in the index: {shown}", file=sys.stderr)
        return 1  # like rm: the rest were deleted, but not everything asked for was there
    return 0


def run_compact(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store

    with open_store(args.index, readonly=True, **store_options(args)):
        pass  # refuses a missing index before anything is created
    with open_store(args.index, **store_options(args)) as store:
        report = store.compact(force=True)
        kind = store.kind
    if report is None:
        print(f"the {kind} store merges its own segments: nothing to compact at {args.index}", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps({"index": args.index, **report.__dict__}))
    else:
        print(f"compacted {args.index}: {report.segments} appended segment(s) and {report.dead} replaced or deleted "
              f"vector(s) merged; {report.vectors} vectors in the new base ({report.bytes_written / 2**20:.1f} MiB "
              "written)", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store

    with open_store(args.index, readonly=True, **store_options(args)) as store:
        info = {"index": args.index, **store.manifest.to_dict(), "count": store.count()}
        layout = getattr(store, "layout", None)  # FAISS: what commits appended since the last compaction
        if layout is not None:
            info["storage"] = {"base_vectors": layout.base_rows, "segments": layout.segments,
                               "appended_vectors": layout.segment_rows, "dead_vectors": layout.dead}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(label) for label, _ in _info_lines(info))
    for label, value in _info_lines(info):
        print(f"{label:<{width}}  {value}")
    return 0


def _info_lines(info: dict) -> list[tuple[str, str]]:
    """The manifest in words: where, what store, and the model record (base, adapter, dtype, ...)."""
    model = info.get("model") or {}

    def known(value) -> str:
        return "unknown (recorded before e5rag kept it)" if value in (None, "") else str(value)

    base = known(model.get("base"))
    if model.get("source"):
        base += f" (from {model['source']})"
    elif model.get("base", "").startswith("gguf:"):
        base += " (the embedded default)"
    adapter = "none"
    if model.get("adapter"):
        adapter = model["adapter"] + (f" (from {model['adapter_path']})" if model.get("adapter_path") else
                                      " (shipped with e5rag)" if not model.get("source") else "")
    return [("index", f"{info['index']} ({info['store']}, {info['index_type']}, {info['metric']})"),
            ("documents", str(info["count"])),
            ("base model", base),
            ("adapter", adapter),
            ("dtype", known(model.get("dtype"))),
            ("max length", f"{known(model.get('max_length'))} tokens"),
            ("dim", str(info["dim"])),
            ("pooling", known(model.get("pooling"))),
            ("built", known(model.get("built")))] + _storage_line(info.get("storage"))


def _storage_line(storage: dict | None) -> list[tuple[str, str]]:
    if storage is None:
        return []
    text = f"{storage['base_vectors']} vectors in the base"
    if storage["segments"]:
        text += f", {storage['appended_vectors']} appended in {storage['segments']} segment(s)"
    if storage["dead_vectors"]:
        text += f", {storage['dead_vectors']} replaced or deleted (dropped at the next compaction)"
    return [("storage", text)]


def run_tasks(args: argparse.Namespace) -> int:
    from e5rag.retriever.tasks import DEFAULT_TASK, list_tasks

    tasks = list_tasks()
    if args.json:
        print(json.dumps([{"name": t.name, "definition": t.definition, "kind": t.kind} for t in tasks], indent=2))
        return 0
    width = max(len(t.name) for t in tasks)
    for t in tasks:
        mark = " (default)" if t.name == DEFAULT_TASK else ""
        print(f"{t.name:<{width}}  {t.definition}{mark}")
    return 0

#!/usr/bin/env bash
# Set up (idempotent) and run the test suite; CI's .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A real Milvus server (PyPI's embedded `milvus` package) for the URI-path tests;
# E5RAG_SKIP_MILVUS_SERVER=1 skips them (Milvus Lite is tested either way).
if [ "${E5RAG_SKIP_MILVUS_SERVER:-0}" != "1" ] && [ -z "${E5RAG_MILVUS_URI:-}" ]; then
  trap 'bash scripts/milvus_server.sh stop' EXIT
  E5RAG_MILVUS_URI=$(bash scripts/milvus_server.sh start) && export E5RAG_MILVUS_URI ||
    echo "warning: no local Milvus server; the server tests will be skipped" >&2
fi
set +e
.venv/bin/python -m pytest -q --timeout=600 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"

#!/usr/bin/env bash
# Start or stop a local Milvus server for the URI-path tests, from PyPI's `milvus` package
# (an embedded standalone server binary; version 2.3.5 is the one that installs here).
#   bash scripts/milvus_server.sh start   # prints the URI on stdout when the server answers
#   bash scripts/milvus_server.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${E5RAG_MILVUS_DIR:-.cache/milvus-server}
PORT=${E5RAG_MILVUS_PORT:-19530}
case "${1:-start}" in
  start)
    mkdir -p "$DIR"
    if [ ! -x "$DIR/venv/bin/milvus-server" ]; then
      python3 -m venv "$DIR/venv" >&2
      "$DIR/venv/bin/python" -m pip --disable-pip-version-check -q install "milvus==2.3.5" >&2
    fi
    rm -rf "$DIR/data"
    setsid "$DIR/venv/bin/milvus-server" --data "$DIR/data" --proxy-port "$PORT" >"$DIR/server.log" 2>&1 &
    echo $! >"$DIR/pid"
    for _ in $(seq 1 180); do
      if .venv/bin/python -c "from pymilvus import MilvusClient; MilvusClient('http://127.0.0.1:$PORT', timeout=2).list_collections()" >/dev/null 2>&1; then
        echo "http://127.0.0.1:$PORT"
        exit 0
      fi
      sleep 1
    done
    echo "milvus server did not answer within 180 s; see $DIR/server.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$DIR/pid" ]; then
      kill -- -"$(cat "$DIR/pid")" 2>/dev/null || kill "$(cat "$DIR/pid")" 2>/dev/null || true
      rm -f "$DIR/pid"
    fi
    # the launcher starts the server binary in a session of its own: stop it by its path too
    pkill -f "$(cd "$DIR" 2>/dev/null && pwd)/data/bin/milvus" 2>/dev/null || true
    ;;
esac

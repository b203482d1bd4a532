"""No secret reaches the user: an endpoint that echoes the request headers (with the API key) in
its error body, and a ``--base-url`` with ``user:password@``, against a loopback HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e5rag.redact import redact, redact_url

pytest.importorskip("httpx")

KEY = "sk-canary-7f3a9c1e5b2d4f60"
PASSWORD = "hunter2-canary-pw"


class _Echo(BaseHTTPRequestHandler):
    """Answers every POST with ``status`` and a body that echoes what it was sent, headers included."""

    status = 400

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": {"message": "bad request", "received_headers": dict(self.headers),
                                     "echo": f"Authorization={self.headers.get('Authorization')}"}}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(params=[400, 401])
def echo_server(request):
    handler = type("Handler", (_Echo,), {"status": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield request.param, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_synth_never_prints_the_key_or_the_url_password(echo_server, tmp_path):
    status, port = echo_server
    out = tmp_path / "data.jsonl"
    env = {**os.environ, "CANARY_KEY": KEY, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "e5rag", "synth", "--base-url",
                        f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1", "--model", "m", "--api-key-env", "CANARY_KEY",
                        "--num-examples", "2", "--out", str(out), "--kinds", "sts", "--concurrency", "1",
                        "--max-retries", "0", "--no-progress", "--summary-json", "-"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("e5rag: error: ") and "Traceback" not in r.stderr
    assert ("HTTP 401" in r.stderr) if status == 401 else ("http_400" in r.stderr and "bad request" in r.stderr)
    shown = r.stdout + r.stderr + "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert KEY not in shown and PASSWORD not in shown and "canary" not in shown
    if status == 401:
        assert f"http://127.0.0.1:{port}/v1/chat/completions answered HTTP 401" in r.stderr


@pytest.mark.parametrize("text", [
    f"Authorization: Bearer {KEY}",
    f'{{"authorization": "Bearer {KEY}", "x-api-key": "{KEY}"}}',
    f"https://bob:{PASSWORD}@example.org/v1?api_key={KEY}&x=1",
    f"token={KEY}",
    f"key {KEY} was rejected",
])
def test_redact_removes_keys_and_url_passwords(text):
    shown = redact(text)
    assert KEY not in shown and PASSWORD not in shown and "***" in shown


def test_redact_url_drops_the_user_part_and_masks_key_parameters():
    assert redact_url(f"https://bob:{PASSWORD}@example.org:8443/v1?api_key={KEY}&x=1") == \
        "https://example.org:8443/v1?api_key=***&x=1"
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1"


def test_redact_removes_a_known_secret_anywhere_and_keeps_plain_text():
    assert redact("the server said: mysecretvalue is wrong", ["mysecretvalue"]) == "the server said: *** is wrong"
    plain = 'HTTP 400: {"error": "max_tokens must be <= 4096", "prompt_tokens": 100}'
    assert redact(plain) == plain


def test_milvus_errors_show_neither_the_uri_password_nor_the_token():
    pytest.importorskip("pymilvus")
    from e5rag.indexers import StoreError, open_store

    with pytest.raises(StoreError) as info:
        open_store(f"http://bob:{PASSWORD}@127.0.0.1:9/x", token=f"root:{KEY}", timeout=2)
    shown = str(info.value)
    assert "could not connect to Milvus index http://127.0.0.1:9/x" in shown
    assert PASSWORD not in shown and KEY not in shown


def test_a_refused_base_url_is_shown_without_its_password():
    from e5rag.retriever.errors import InputError
    from e5rag.synth import HttpBackendConfig

    with pytest.raises(InputError) as info:
        HttpBackendConfig(f"ftp://bob:{PASSWORD}@example.org/v1", "m")
    assert "must start with http:// or https://, got 'ftp://example.org/v1'" in str(info.value)
    assert PASSWORD not in str(info.value)

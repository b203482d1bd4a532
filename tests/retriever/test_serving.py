"""``e5rag serve`` and ``RemoteEncoder``: a real HTTP server on loopback, checked against the
in-process encoder it serves."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from e5rag.indexers import Document
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.errors import IndexMismatchError, InputError
from e5rag.retriever.remote import RemoteEncoder, ServerError
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.serving import EmbeddingServer, RequestError, parse_embeddings_request, served_model


def start(encoder, **kw) -> EmbeddingServer:
    server = EmbeddingServer(("127.0.0.1", 0), encoder, served_model(encoder, "tiny"), **kw)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def served(tiny_encoder):
    server = start(tiny_encoder)
    yield tiny_encoder, server
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/embeddings", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


QUERIES = ["does coffee prevent diabetes", "where is the Louvre", "a third query, a little longer than the others"]
DOCS = ["Coffee drinkers had a lower risk of type 2 diabetes.", "The Louvre is a museum in Paris.",
        "Plums are purple fruit."]


def test_remote_vectors_equal_the_in_process_encoder(served):
    encoder, server = served
    remote = RemoteEncoder(server.url)
    assert remote.fingerprint == encoder.fingerprint and remote.dim == encoder.dim
    assert remote.weights_dtype == encoder.weights_dtype
    for task in ("scifact", ["nq", "quora", "scifact"]):
        np.testing.assert_allclose(remote.encode_query(QUERIES, task=task), encoder.encode_query(QUERIES, task=task),
                                   rtol=0, atol=1e-6)
    np.testing.assert_allclose(remote.encode_query(QUERIES, use_instruction=False),
                               encoder.encode_query(QUERIES, use_instruction=False), rtol=0, atol=1e-6)
    np.testing.assert_allclose(remote.encode_document(DOCS, titles=["a", None, "c"]),
                               encoder.encode_document(DOCS, titles=["a", None, "c"]), rtol=0, atol=1e-6)
    one = remote.encode_query("where is the Louvre", task="nq")
    assert one.shape == (encoder.dim,)
    assert server.served == 3 * 3 + 3 + 1


def test_openai_float_and_base64_formats_and_usage(served):
    encoder, server = served
    texts = ["Instruct: x\nQuery: y", "plain text"]
    status, floats = post(server.url, json.dumps({"input": texts, "model": "tiny"}).encode())
    assert status == 200 and floats["object"] == "list" and floats["model"] == "tiny"
    status, b64 = post(server.url, json.dumps({"input": texts, "encoding_format": "base64"}).encode())
    assert status == 200
    as_floats = np.array([d["embedding"] for d in floats["data"]], dtype=np.float32)
    as_b64 = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]])
    np.testing.assert_array_equal(as_floats, as_b64)
    np.testing.assert_allclose(as_floats, encoder.encode(texts), rtol=0, atol=1e-6)
    tokens = sum(len(encoder.tokenizer(t)["input_ids"]) for t in texts)  # + the EOS e5rag appends, once each
    assert floats["usage"]["prompt_tokens"] in {tokens + len(texts), tokens}
    status, single = post(server.url, json.dumps({"input": "plain text"}).encode())
    assert status == 200 and len(single["data"]) == 1
    np.testing.assert_allclose(single["data"][0]["embedding"], as_floats[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{not json", 400, "not JSON"),
    (b'{"texts": ["a"]}', 400, '"input"'),
    (b'{"input": []}', 400, "non-empty list"),
    (b'{"input": [[1, 2, 3]]}', 400, "not a string"),
    (b'{"input": ["fine", "  "]}', 400, "input 1 is empty"),
    (b'{"input": ["a"], "encoding_format": "int8"}', 400, "encoding_format"),
])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(served, body, status, words):
    _, server = served
    code, reply = post(server.url, body)
    assert code == status and words in reply["error"]["message"]
    assert reply["error"]["type"] == "invalid_request_error"
    assert post(server.url, b'{"input": ["still alive"]}')[0] == 200


def test_too_many_inputs_and_unknown_paths(served):
    _, server = served
    code, reply = post(server.url, json.dumps({"input": ["a"] * 2049}).encode())
    assert code == 413 and "at most 2048" in reply["error"]["message"] and server.served == 0
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/v1/nothing", timeout=10)
    assert err.value.code == 404 and "/v1/embeddings" in json.loads(err.value.read())["error"]["message"]
    with pytest.raises(RequestError, match="at most 2"):
        parse_embeddings_request(b'{"input": ["a", "b", "c"]}', max_inputs=2)


def test_api_key(tiny_encoder, monkeypatch):
    server = start(tiny_encoder, api_key="s3cret")
    try:
        code, reply = post(server.url, b'{"input": ["a"]}')
        assert code == 401 and "API key" in reply["error"]["message"]
        assert post(server.url, b'{"input": ["a"]}', {"Authorization": "Bearer wrong"})[0] == 401
        assert post(server.url, b'{"input": ["a"]}', {"Authorization": "Bearer s3cret"})[0] == 200
        with pytest.raises(ServerError, match="401"):
            RemoteEncoder(server.url)
        monkeypatch.setenv("E5RAG_API_KEY", "s3cret")
        assert RemoteEncoder(server.url).encode(["a"]).shape == (1, tiny_encoder.dim)
    finally:
        server.shutdown()
        server.server_close()


def test_remote_errors_name_the_problem(tiny_encoder, monkeypatch):
    server = start(tiny_encoder)
    url = server.url
    server.shutdown()
    server.server_close()
    with pytest.raises(ServerError, match="no e5rag server answers at .*e5rag serve"):
        RemoteEncoder(url)
    monkeypatch.delenv("E5RAG_SERVER", raising=False)
    with pytest.raises(InputError, match="E5RAG_SERVER"):
        RemoteEncoder()
    with pytest.raises(InputError, match="http://"):
        RemoteEncoder("localhost:8765")


def test_idle_timeout_stops_the_server(tiny_encoder):
    server = EmbeddingServer(("127.0.0.1", 0), tiny_encoder, served_model(tiny_encoder), idle_timeout=0.3)
    done = threading.Event()

    def serve():
        server.serve_forever(poll_interval=0.05)
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    assert done.wait(20), "an idle server with --idle-timeout 0.3 did not stop"
    server.server_close()


def test_search_index_over_a_served_model(served, llama_dir, tmp_path):
    encoder, server = served
    docs = [Document(id=f"d{i}", text=t) for i, t in enumerate(DOCS)]
    with SearchIndex(encoder, _open(tmp_path / "idx", readonly=False), writing=True) as index:
        index.add(docs)
    with SearchIndex(encoder, _open(tmp_path / "idx")) as local, \
            SearchIndex(RemoteEncoder(server.url), _open(tmp_path / "idx")) as remote:
        for task in ("scifact", "nq"):
            want, got = local.search(QUERIES, task=task, k=3), remote.search(QUERIES, task=task, k=3)
            assert [[h.document.id for h in q] for q in got] == [[h.document.id for h in q] for q in want]
            np.testing.assert_allclose([[h.score for h in q] for q in got], [[h.score for h in q] for q in want],
                                       atol=1e-5)
    other = Encoder.from_pretrained(llama_dir, max_length=64)
    server2 = start(other)
    try:
        with pytest.raises(IndexMismatchError, match="built with"):
            SearchIndex(RemoteEncoder(server2.url), _open(tmp_path / "idx"))
    finally:
        server2.shutdown()
        server2.server_close()


def _open(path, readonly=True):
    from e5rag.indexers import open_store

    return open_store(path, readonly=readonly)


def test_langchain_embeddings_over_a_served_model(served):
    from e5rag.retriever.langchain import E5Embeddings

    encoder, server = served
    local, remote = E5Embeddings(encoder, task="nq"), E5Embeddings(RemoteEncoder(server.url), task="nq")
    np.testing.assert_allclose(remote.embed_query("where is the Louvre"), local.embed_query("where is the Louvre"),
                               atol=1e-6)
    np.testing.assert_allclose(remote.embed_documents(DOCS), local.embed_documents(DOCS), atol=1e-6)

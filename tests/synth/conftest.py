"""Fixtures for synth tests: a scripted OpenAI-compatible HTTP server on 127.0.0.1 and a tiny
random Llama chat model saved to disk. Nothing here reads data folders outside the test or the network."""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

KEYS_IN_PROMPT = (  # how the fake server tells the kind from the prompt text
    ('"user_query"', ("user_query", "positive_document", "hard_negative_document")),
    ('"input_text"', ("input_text", "label", "misleading_label")),
    ('"input"', ("input", "positive_document", "hard_negative_document")),
    ('"S1"', ("S1", "S2", "S3")),
)


def example_for(prompt: str, n: int) -> dict:
    """A valid example with unique texts for whichever kind ``prompt`` asks for."""
    keys = next(keys for marker, keys in KEYS_IN_PROMPT if marker in prompt)
    return {keys[0]: f"query number {n}", keys[1]: f"a good answer to query {n}",
            keys[2]: f"an unhelpful text near query {n}"}


class FakeOpenAI:
    """Scripted chat-completions server. ``script`` holds actions for example requests, consumed in
    arrival order (then "good"); ``brainstorm_script`` likewise for brainstorm requests.

    Actions: good, fenced, prose, malformed, dup, missing_key, same_pos_neg, empty, 429, 500,
    slow (sleeps ``slow_s`` first), bad_body, 401.
    """

    def __init__(self) -> None:
        self.script: collections.deque[str] = collections.deque()
        self.brainstorm_script: collections.deque[str] = collections.deque()
        self.log: list[dict] = []  # one entry per request: time, action, headers, body
        self.lock = threading.Lock()
        self.counter = 0
        self.delay_s = 0.0
        self.slow_s = 1.0
        self.retry_after = "0.3"

    def next_action(self, body: dict) -> tuple[str, str, int]:
        prompt = body["messages"][-1]["content"]
        brainstorm = "JSON array" in prompt
        with self.lock:
            queue = self.brainstorm_script if brainstorm else self.script
            action = queue.popleft() if queue else "good"
            self.counter += 1
            return action, prompt, self.counter

    def reply(self, body: dict, headers: dict) -> tuple[int, dict, bytes, float]:
        action, prompt, n = self.next_action(body)
        with self.lock:
            self.log.append({"t": time.monotonic(), "action": action, "headers": headers, "body": body})
        if action == "429":
            return 429, {"Retry-After": self.retry_after}, b'{"error": {"message": "slow down"}}', 0.0
        if action in ("500", "401"):
            return int(action), {}, b'{"error": {"message": "scripted failure"}}', 0.0
        if action == "bad_body":
            return 200, {}, b"not json at all", 0.0
        if "JSON array" in prompt:
            content = json.dumps([f"Given topic {n}-{i}, retrieve documents about it." for i in range(5)])
            content = "Here you go:\n" + content if action != "malformed" else "I cannot brainstorm today."
        else:
            content = self.example_text(action, prompt, n)
        payload = {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": body.get("model"),
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}
        delay = self.slow_s if action == "slow" else self.delay_s
        return 200, {}, json.dumps(payload).encode(), delay

    @staticmethod
    def example_text(action: str, prompt: str, n: int) -> str:
        ex = example_for(prompt, 0 if action == "dup" else n)
        keys = list(ex)
        if action == "fenced":
            return "Sure! Here is the example:\n```json\n" + json.dumps(ex, indent=2) + "\n```\nHope it helps."
        if action == "prose":
            return "The example: " + json.dumps(ex) + " -- let me know if you need more."
        if action == "malformed":
            return '{"' + keys[0] + '": "unterminated, ' + keys[1] + ": 3"
        if action == "missing_key":
            ex.pop(keys[2])
        elif action == "same_pos_neg":
            ex[keys[2]] = ex[keys[1]].upper()
        elif action == "empty":
            ex[keys[1]] = "   "
        return json.dumps(ex)

    def actions(self) -> list[str]:
        with self.lock:
            return [e["action"] for e in self.log]


def _handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.endswith("/chat/completions"):
                status, headers, data, delay = 404, {}, b"{}", 0.0
            else:
                status, headers, data, delay = fake.reply(body, dict(self.headers))
            time.sleep(delay)
            try:
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                             **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a scripted timeout)

        def log_message(self, *args) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that time out hang up on us
            super().handle_error(request, client_address)


def serve(fake: FakeOpenAI) -> tuple[ThreadingHTTPServer, str]:
    """Start ``fake`` on an ephemeral loopback port; returns (server, base_url)."""
    server = _QuietServer(("127.0.0.1", 0), _handler(fake))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.fixture
def fake_openai():
    """(FakeOpenAI, base_url) served from a thread on an ephemeral loopback port."""
    fake = FakeOpenAI()
    server, url = serve(fake)
    try:
        yield fake, url
    finally:
        server.shutdown()
        server.server_close()


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A random 2-layer Llama with a word-level tokenizer and a chat template, saved to a directory."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ("write three sentences as a json object with the keys s1 s2 s3 user assistant system "
             "{ } \" : , . the cat sat on mat translation quality scores").split()
    specials = ["<unk>", "<pad>", "<s>", "<|im_end|>", "<|im_start|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(words)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="<|im_end|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024,
                         bos_token_id=vocab["<s>"], eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<pad>"])
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

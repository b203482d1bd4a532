"""The encoder against a manual forward pass, padding sides, order, instructions, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from e5rag.retriever import InputError
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.instructions import format_query
from e5rag.retriever.tasks import resolve_task

TEXTS = ["Paris is the capital of France.", "hi", "Photosynthesis converts light energy into chemical energy.",
         "A much longer text about the stock market and interest rates and bonds " * 3, "vaccines"]


def manual_embeddings(model_dir, texts, max_length):
    """Independent E5 computation: one text at a time, no padding, EOS appended by hand."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for t in texts:
        ids = tok(t)["input_ids"][: max_length - 1] + [tok.eos_token_id]
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        out.append((h / h.norm()).numpy())
    return np.stack(out)


@pytest.mark.parametrize("arch", ["mistral", "llama"])
def test_encode_equals_manual_forward_at_eos(arch, mistral_dir, llama_dir):
    model_dir = mistral_dir if arch == "mistral" else llama_dir
    enc = Encoder.from_pretrained(model_dir, max_length=24)
    got = enc.encode(TEXTS, batch_size=3)
    want = manual_embeddings(model_dir, TEXTS, 24)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), enc.dim)
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_left_and_right_padding_agree(tiny_encoder):
    right = tiny_encoder.encode(TEXTS, batch_size=5)
    tiny_encoder.padding_side = "left"
    left = tiny_encoder.encode(TEXTS, batch_size=5)
    np.testing.assert_allclose(left, right, atol=2e-5)


def test_batch_order_is_restored(tiny_encoder):
    batched = tiny_encoder.encode(TEXTS, batch_size=2)
    single = np.concatenate([tiny_encoder.encode([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=2e-5)
    shuffled = [TEXTS[i] for i in (4, 2, 0, 3, 1)]
    np.testing.assert_allclose(tiny_encoder.encode(shuffled, batch_size=2), single[[4, 2, 0, 3, 1]], atol=2e-5)


def test_instruction_reaches_queries_only(tiny_encoder):
    q = "what is the capital of france"
    task = resolve_task("nq")
    got_q = tiny_encoder.encode_query([q], task="nq")
    np.testing.assert_allclose(got_q, tiny_encoder.encode([f"Instruct: {task}\nQuery: {q}"]), atol=1e-6)
    got_d = tiny_encoder.encode_document([q])
    np.testing.assert_allclose(got_d, tiny_encoder.encode([q]), atol=1e-6)
    assert not np.allclose(got_q, got_d, atol=1e-3)
    bare = tiny_encoder.encode_query([q], use_instruction=False)
    np.testing.assert_allclose(bare, got_d, atol=1e-6)


def test_title_is_prefixed_like_e5_eval(tiny_encoder):
    got = tiny_encoder.encode_document(["body text"], titles=["Title"])
    np.testing.assert_allclose(got, tiny_encoder.encode(["Title body text"]), atol=1e-6)


def test_one_task_per_query(tiny_encoder):
    qs = ["coffee and diabetes", "coffee and diabetes"]
    got = tiny_encoder.encode_query(qs, task=["scifact", "Find recipes that use the ingredient"])
    want = tiny_encoder.encode([format_query(resolve_task("scifact"), qs[0]),
                                format_query("Find recipes that use the ingredient", qs[1])])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got[0], got[1], atol=1e-3)
    with pytest.raises(InputError, match="2 tasks for 1 queries"):
        tiny_encoder.encode_query(["x"], task=["scifact", "nq"])


def test_bad_input_is_refused_clearly(tiny_encoder):
    with pytest.raises(InputError, match="text 1 is empty"):
        tiny_encoder.encode(["fine", "   "])
    with pytest.raises(InputError, match="not one string"):
        tiny_encoder.encode("a bare string")
    with pytest.raises(InputError, match="unknown task name 'scifcat'"):
        tiny_encoder.encode_query(["x"], task="scifcat")
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)


def test_overlong_text_is_truncated_with_a_warning(tiny_encoder, caplog):
    long_text = "interest rates and bonds " * 200
    with caplog.at_level("WARNING"):
        got = tiny_encoder.encode([long_text])
    assert "truncated" in caplog.text
    prefix_ids = tiny_encoder.tokenizer(long_text)["input_ids"][: tiny_encoder.max_length - 1]
    ids = torch.tensor([prefix_ids + [tiny_encoder.tokenizer.eos_token_id]])
    with torch.no_grad():
        want = tiny_encoder.embed_tokens(ids, torch.ones_like(ids)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_fingerprint_changes_with_weights(mistral_dir, tmp_path):
    from tiny_models import save_tiny_model

    a = Encoder.from_pretrained(mistral_dir).fingerprint
    other = save_tiny_model(tmp_path / "other", "mistral", seed=1)
    b = Encoder.from_pretrained(other).fingerprint
    assert a.dim == b.dim and not a.same_model(b)
    assert a.same_model(Encoder.from_pretrained(mistral_dir, max_length=32).fingerprint)


def test_missing_model_is_a_clear_error(tmp_path):
    from e5rag.retriever import ModelLoadError

    with pytest.raises(ModelLoadError, match="not found"):
        Encoder.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="never downloads"):
        Encoder.from_pretrained("someone/not-cached-model")


def test_a_document_may_be_a_title_alone(tiny_encoder):
    from e5rag.retriever.errors import InputError

    vec = tiny_encoder.encode_document(["", "Some text."], ["Only a title", ""])
    np.testing.assert_allclose(vec, tiny_encoder.encode(["Only a title", "Some text."]), atol=1e-6)
    with pytest.raises(InputError, match="document 0 is empty"):
        tiny_encoder.encode_document(["  "], [""])

def test_one_string_gives_one_vector_like_sentence_transformers(tiny_encoder):
    q, d = "what is the capital of france", "Paris is the capital of France."
    one_q = tiny_encoder.encode_query(q, task="nq")
    assert one_q.shape == (tiny_encoder.dim,) and one_q.dtype == np.float32
    np.testing.assert_allclose(one_q, tiny_encoder.encode_query([q], task="nq")[0], atol=1e-6)
    one_d = tiny_encoder.encode_document(d, titles="France")
    assert one_d.shape == (tiny_encoder.dim,)
    np.testing.assert_allclose(one_d, tiny_encoder.encode(["France " + d])[0], atol=1e-6)
    assert tiny_encoder.encode_document([d]).shape == (1, tiny_encoder.dim)


def test_similarity_is_cosine_of_every_pair(tiny_encoder):
    queries = tiny_encoder.encode_query(TEXTS[:2])
    docs = tiny_encoder.encode_document(TEXTS)
    sims = tiny_encoder.similarity(queries, docs)
    assert isinstance(sims, torch.Tensor) and sims.shape == (2, len(TEXTS))
    want = np.array([[float(np.dot(q, d) / (np.linalg.norm(q) * np.linalg.norm(d))) for d in docs] for q in queries])
    np.testing.assert_allclose(sims.numpy(), want, atol=1e-5)
    assert tiny_encoder.similarity(queries[0], docs[3]).shape == (1, 1)
    raw = tiny_encoder.encode_document(TEXTS, normalize_embeddings=False)  # cosine ignores the scale
    np.testing.assert_allclose(tiny_encoder.similarity(queries, raw).numpy(), want, atol=1e-5)
    with pytest.raises(InputError, match="dimension"):
        tiny_encoder.similarity(queries, docs[:, :4])


def test_normalize_embeddings_false_and_convert_to_tensor(tiny_encoder):
    raw = tiny_encoder.encode_document(TEXTS, normalize_embeddings=False)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / norms[:, None], tiny_encoder.encode_document(TEXTS), atol=1e-5)
    as_tensor = tiny_encoder.encode_query("vaccines", convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (tiny_encoder.dim,)
    np.testing.assert_allclose(as_tensor.numpy(), tiny_encoder.encode_query(["vaccines"])[0], atol=1e-6)

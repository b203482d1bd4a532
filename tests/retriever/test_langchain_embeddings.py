"""E5Embeddings: the standard LangChain embeddings suites, plus instruction handling."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_support import QUERY, TASK_A, TASK_B, lc_encoder  # noqa: E402,F401
from langchain_tests.integration_tests import EmbeddingsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from e5rag.retriever.errors import InputError  # noqa: E402
from e5rag.retriever.instructions import format_query  # noqa: E402
from e5rag.retriever.langchain import E5Embeddings  # noqa: E402
from e5rag.retriever.tasks import resolve_task  # noqa: E402


class _OnTinyEncoder:
    """Builds E5Embeddings from the module's tiny encoder (the suites construct from params)."""

    encoder = None

    @pytest.fixture(autouse=True, scope="class")
    def _put_encoder_on_class(self, request, lc_encoder):  # noqa: F811
        request.cls.encoder = lc_encoder

    @property
    def embeddings_class(self) -> type[E5Embeddings]:
        return E5Embeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"encoder": self.encoder, "task": "nq"}


class TestE5EmbeddingsUnit(_OnTinyEncoder, EmbeddingsUnitTests):
    pass


class TestE5EmbeddingsIntegration(_OnTinyEncoder, EmbeddingsIntegrationTests):
    pass


def test_documents_carry_no_instruction(lc_encoder):  # noqa: F811
    texts = ["Paris is the capital of France.", "Plants make sugar from light."]
    got = E5Embeddings(lc_encoder, task=TASK_A).embed_documents(texts)
    assert all(isinstance(x, float) for row in got for x in row)
    np.testing.assert_allclose(np.array(got), lc_encoder.encode(texts), atol=1e-6)


@pytest.mark.parametrize("task", [None, TASK_A, TASK_B])
def test_query_is_embedded_with_its_task(lc_encoder, task):  # noqa: F811
    expected = lc_encoder.encode([format_query(resolve_task(task), QUERY)])[0]
    np.testing.assert_allclose(E5Embeddings(lc_encoder, task=task).embed_query(QUERY), expected, atol=1e-6)


async def test_with_task_shares_the_encoder_and_changes_only_the_instruction(lc_encoder):  # noqa: F811
    base = E5Embeddings(lc_encoder, task=TASK_A, batch_size=3)
    other = base.with_task(TASK_B)
    assert other.encoder is base.encoder and other.batch_size == 3 and base.task == TASK_A
    a, b = base.embed_query(QUERY), await other.aembed_query(QUERY)
    np.testing.assert_allclose(b, lc_encoder.encode([format_query(resolve_task(TASK_B), QUERY)])[0], atol=1e-6)
    assert not np.allclose(a, b, atol=1e-4)  # the instruction really changed the vector
    np.testing.assert_allclose(await other.aembed_documents(["x y"]), base.embed_documents(["x y"]), atol=1e-6)


def test_bad_input_fails_loudly(lc_encoder):  # noqa: F811
    with pytest.raises(InputError, match="unknown task name"):
        E5Embeddings(lc_encoder, task="scifcat")
    with pytest.raises(InputError, match="batch_size"):
        E5Embeddings(lc_encoder, batch_size=0)
    with pytest.raises(InputError, match="empty"):
        E5Embeddings(lc_encoder).embed_documents(["fine", "  "])
    assert E5Embeddings(lc_encoder).embed_documents([]) == []

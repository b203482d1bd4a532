"""RAG with LangChain over an e5rag index, choosing the retrieval task per question.

One index, embedded once without instructions; each question is embedded with its own task
(E5-Mistral, arXiv 2401.00368). The chain is plain LCEL: retriever -> prompt -> a local chat
model (SmolLM2-135M-Instruct from the bundled GGUF, through transformers) -> string. Offline.

    python examples/langchain_rag.py examples/corpus.jsonl                # index in a temp dir
    python examples/langchain_rag.py examples/corpus.jsonl --index idx/   # build once, reuse
    python examples/langchain_rag.py examples/corpus.jsonl --queries examples/queries.jsonl

Needs ``pip install 'e5rag[faiss,langchain]'``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField, RunnableLambda, RunnableParallel, RunnablePassthrough

from e5rag import Encoder, SearchIndex
from e5rag.langchain import E5Retriever
from e5rag.retriever.loading import load_causal_lm
from e5rag.retriever.sources import read_documents, read_queries

# Two questions, two tasks, one index: a claim checked against evidence, then a how-to question.
DEFAULT_QUESTIONS = [
    ("Does drinking coffee lower the risk of diabetes?", "scifact"),
    ("How do I reset my email password?", "web-search"),
]

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question in one sentence, using only the passages. "
               "If they do not hold the answer, say that you do not know."),
    ("human", "Passages:\n{context}\n\nQuestion: {question}"),
])

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def local_chat_model(max_new_tokens: int) -> RunnableLambda:
    """A minimal chat model: messages -> the model's chat template -> greedy generation -> AIMessage."""
    import torch

    tokenizer, model = load_causal_lm(None)

    def generate(prompt: PromptValue) -> AIMessage:
        messages: list[BaseMessage] = prompt.to_messages()
        chat = [{"role": _ROLES[m.type], "content": m.content} for m in messages]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return AIMessage(content=answer.strip())

    return RunnableLambda(generate, name="SmolLM2")


def format_passages(docs: list[Document]) -> str:
    """Numbered passages for the prompt, each with its title when it has one."""
    return "\n".join(f"[{i}] {d.metadata['title'] + ': ' if d.metadata['title'] else ''}{d.page_content}"
                     for i, d in enumerate(docs, 1))


def open_index(corpus: Path, location: Path, encoder: Encoder, model: str | None, adapter: str | None) -> SearchIndex:
    """Build the index from the corpus unless it already exists, then open it for reading."""
    with SearchIndex.open(location, encoder, model=model, adapter=adapter, readonly=False) as index:
        if index.store.manifest is None or index.store.count() == 0:
            report = index.add(read_documents([str(corpus)]))
            print(f"indexed {report.total} documents into {location}")
    return SearchIndex.open(location, encoder, readonly=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="documents: JSONL with _id, title, text (BEIR corpus.jsonl)")
    parser.add_argument("--index", type=Path, help="index location (FAISS directory or Milvus *.db); "
                        "built from the corpus if missing (default: a temporary directory)")
    parser.add_argument("--queries", type=Path, help="JSONL of {text, task} questions (default: two built-in)")
    parser.add_argument("--model", help="embedding model (default: the bundled SmolLM2 GGUF)")
    parser.add_argument("--adapter", help="LoRA adapter directory for the embedding model (e.g. from `e5rag train`)")
    parser.add_argument("--k", type=int, default=3, help="passages per question")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    args = parser.parse_args()

    start = time.perf_counter()
    # None: the bundled SmolLM2 GGUF, dequantised once into the cache (and its shipped adapter, if any).
    encoder = Encoder.from_pretrained(args.model, adapter=args.adapter)
    with tempfile.TemporaryDirectory() as tmp:
        index = open_index(args.corpus, args.index or Path(tmp) / "index", encoder, args.model, args.adapter)
        # The task becomes a per-call setting of the whole chain: config={"configurable": {"task": ...}}.
        retriever = E5Retriever(index=index, k=args.k).configurable_fields(
            task=ConfigurableField(id="task", name="task", description="e5rag task name or sentence"))
        answer = (lambda x: {"context": format_passages(x["docs"]), "question": x["question"]}) | PROMPT \
            | local_chat_model(args.max_new_tokens) | StrOutputParser()
        chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(answer=answer)

        if args.queries:
            with open(args.queries, encoding="utf-8") as fh:
                questions = [(q.text, q.task) for q in read_queries(fh, str(args.queries))]
        else:
            questions = DEFAULT_QUESTIONS
        print(f"models loaded and index ready in {time.perf_counter() - start:.1f}s")
        for question, task in questions:
            result = chain.invoke(question, config={"configurable": {"task": task}})
            print(f"\nQ: {question}\n   task: {task}")
            for d in result["docs"]:
                print(f"   {d.metadata['score']:.3f}  {d.id:<16} {d.metadata['title'] or d.page_content[:60]}")
            print(f"A: {result['answer']}")
        index.close()
    print(f"\ndone in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

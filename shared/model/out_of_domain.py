"""Out of domain: how far a post's embedding lies from every class a model version was trained on.

A version keeps, beside its model, one centroid per class (the normalised mean
of that class's training embeddings) and one radius per class: the distance
(1 - cosine) within which `quantile` of the class's own training posts lie.
A post's *domain score* is its distance to each centroid divided by that
class's radius, taken at the nearest class: at most 1 means "as close to some
class as most of its training posts", above 1 "farther from every class than
nearly all of them", i.e. out of domain. Only the embedding is used, so the
score means the same for every model of one embedder.

The reference is the file `domain.json` in the version's directory, part of
its checksum; versions saved without it load with `domain = None` (no
out-of-domain flag). Reused by anything that asks "is this post like the
training posts?": the review flag at write time, the share out of domain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOMAIN_FILE = "domain.json"
# Share of each class's training posts inside its radius. bench/review.py (sci model, MiniLM)
# measures what other values catch on comp.*/rec.* posts and flag among sci test posts.
DEFAULT_QUANTILE = 0.95


@dataclass(frozen=True)
class DomainReference:
    labels: list[str]
    centroids: np.ndarray  # (classes, dim), unit rows
    radii: np.ndarray  # (classes,), distances 1 - cosine
    quantile: float

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Each post's distance to its nearest class, in units of that class's radius (> 1: out of domain)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return np.zeros(0, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / np.where(norms > 0, norms, 1.0)
        distances = 1.0 - unit @ self.centroids.T  # (posts, classes)
        return np.asarray((distances / self.radii).min(axis=1), dtype=np.float32)

    def out_of_domain(self, vectors: np.ndarray) -> np.ndarray:
        return self.scores(vectors) > 1.0

    def to_json(self) -> dict[str, object]:
        return {"labels": self.labels, "quantile": self.quantile,
                "radii": [float(r) for r in self.radii],
                "centroids": [[round(float(v), 7) for v in row] for row in self.centroids]}


def calibrate(vectors: np.ndarray, labels: list[str] | np.ndarray,
              quantile: float = DEFAULT_QUANTILE) -> DomainReference:
    """The reference of training `vectors` with their `labels`: centroids and per-class radii."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels, dtype=str)
    classes = sorted(set(labels.tolist()))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    centroids, radii = [], []
    for label in classes:
        members = unit[labels == label]
        centre = members.mean(axis=0)
        centre = centre / (np.linalg.norm(centre) or 1.0)
        distances = 1.0 - members @ centre
        centroids.append(centre)
        # A floor, so a class of identical posts does not get a radius of zero.
        radii.append(max(float(np.quantile(distances, quantile)), 1e-3))
    return DomainReference(classes, np.stack(centroids).astype(np.float32),
                           np.array(radii, dtype=np.float32), quantile)


def save_reference(directory: Path, reference: DomainReference) -> Path:
    path = directory / DOMAIN_FILE
    path.write_text(json.dumps(reference.to_json()) + "\n")
    return path


def load_reference(directory: Path) -> DomainReference | None:
    """The version's reference, or None when it was saved without one."""
    path = directory / DOMAIN_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return DomainReference(list(data["labels"]), np.array(data["centroids"], dtype=np.float32),
                           np.array(data["radii"], dtype=np.float32), float(data["quantile"]))

"""Posts of no topic the factories' models know (sports and music words), for drift tests and drills."""

from __future__ import annotations

import random

OFF_DOMAIN = ("football goalkeeper referee stadium league match season coach striker penalty "
              "guitar chord melody drummer").split()


def off_domain_posts(n: int, prefix: str, seed: int = 0, words: int = 12) -> list[dict[str, object]]:
    rng = random.Random(seed)
    def text() -> str:
        return "Subject: " + " ".join(rng.choice(OFF_DOMAIN) for _ in range(words))

    return [{"id": f"{prefix}-{i}", "text": text()} for i in range(n)]

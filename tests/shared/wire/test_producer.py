"""A producer needs the broker and the wire contract only: importing it loads no model code."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "torch", "keras", "sentence_transformers", "sklearn", "worker.pipeline", "worker.app")


def test_importing_the_producer_loads_no_model_code() -> None:
    probe = f"import json, sys, shared.wire.producer; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(output) == []

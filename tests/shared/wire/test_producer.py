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


def test_a_sent_message_names_its_post_in_the_headers_without_copying_its_text(redis_url: str) -> None:
    """Monitors read argsrepr/kwargsrepr: the post id, not a second copy of the text in every message."""
    import base64

    import redis

    from shared.settings import Settings
    from shared.wire.producer import Producer

    settings = Settings(redis_url=redis_url, queue="producer-test")
    producer = Producer(settings)
    try:
        producer.send(producer.validate("p-1", "the text of the post " * 20))
        producer.send_chunk([producer.validate(f"c-{n}", "a chunk's post") for n in range(5)])
    finally:
        producer.close()
    single, chunk = (json.loads(m) for m in reversed(redis.Redis.from_url(redis_url).lrange("producer-test", 0, -1)))

    assert "the text of the post" not in json.dumps(single["headers"])
    assert single["headers"]["kwargsrepr"] == "{'id': 'p-1'}"
    assert "'c-0', 'c-1', 'c-2', ..." in chunk["headers"]["kwargsrepr"]
    assert json.loads(base64.b64decode(single["body"]))[1]["text"] == "the text of the post " * 20

"""`topicq fake-gemini`: run the fake Gemini API for demos, drills and manual tests."""

from __future__ import annotations

import click

from testkit.fake_gemini import FakeGemini


@click.command("fake-gemini")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, help="0 picks a free port.")
@click.option("--api-key", default="test-key", show_default=True, help="The key callers must send.")
@click.option("--latency-ms", default=0.0, show_default=True, help="Delay added to every call.")
@click.option("--rate-429", default=0.0, show_default=True, help="Share of calls refused with 429.")
@click.option("--retry-delay", default=2.0, show_default=True, help="retryDelay (s) in 429 replies.")
@click.option("--rate-5xx", default=0.0, show_default=True, help="Share of calls answered 503.")
@click.option("--rate-malformed", default=0.0, show_default=True, help="Share answered with broken JSON.")
@click.option("--rate-drop", default=0.0, show_default=True, help="Share whose connection is dropped.")
@click.option("--daily-limit", type=int, default=None, help="Texts served before a per-day quota 429.")
@click.option("--script", default="", help="Outcomes for the first calls, e.g. 429,503,malformed,drop,ok.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fault draws.")
@click.option("--batch-seconds", default=5.0, show_default=True,
              help="Batch API jobs: pending, then running, this long in all before they succeed.")
def fake_gemini_command(host: str, port: int, api_key: str, latency_ms: float, rate_429: float,
                        retry_delay: float, rate_5xx: float, rate_malformed: float, rate_drop: float,
                        daily_limit: int | None, script: str, seed: int, batch_seconds: float) -> None:
    """Serve a fake Gemini embedding API (batchEmbedContents, batch jobs) until Ctrl-C.

    Vectors are deterministic (similar texts, similar vectors); faults are
    injected at the rates given. Point topicq at it with GEMINI_BASE_URL.

    \b
    Example:
      topicq fake-gemini --port 8765 --rate-429 0.1 --retry-delay 2 &
      GEMINI_BASE_URL=http://127.0.0.1:8765 GEMINI_API_KEY=test-key \\
        EMBEDDER=gemini topicq worker
    """
    fake = FakeGemini(
        host, port, api_key=api_key, latency_ms=latency_ms, rate_429=rate_429,
        retry_delay_s=retry_delay, rate_5xx=rate_5xx, rate_malformed=rate_malformed,
        rate_drop=rate_drop, daily_limit=daily_limit,
        script=[s.strip() for s in script.split(",") if s.strip()], seed=seed, batch_seconds=batch_seconds,
    )
    click.echo(f"fake Gemini API on {fake.base_url}; Ctrl-C stops it")
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        click.echo(f"served {len(fake.calls)} calls: {fake.outcomes()}")

"""Gemini embeddings through the Batch API: half the price, up to 24 h turnaround (docs/architecture.md §8).

`GeminiBatchEmbedder.embed_each(texts)` submits the texts inline as batch jobs
(`client.batches.create_embeddings`, at most `job_size` texts a job), polls
`client.batches.get` until every job has ended, and maps the responses back by
position. It embeds with the same model, dimension and task as GeminiEmbedder,
so it has the same `id`: models and cached vectors serve both. Meant for
backfills (`topicq backfill --gemini-batch-api`), not for the worker's stream.

    job SUCCEEDED ................ vectors; a request refused on its own -> that text rejected
    job FAILED/CANCELLED/EXPIRED,
    not done within max_wait_s ... TransientError (run the backfill again: done posts are skipped)
    401/403/bad key, 404 ......... ConfigError, as for the synchronous calls
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.errors import TransientError
from shared.model.embedders.base import EmbedOutcome, l2_normalise
from shared.model.embedders.gemini import GeminiEmbedder, takes_task_type
from shared.model.embedders.gemini_errors import mask
from shared.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 30.0  # jobs take minutes to hours: polling faster buys nothing
MAX_WAIT_S = 26 * 3600.0  # the service aims at 24 h; past this the job is taken as lost
JOB_SIZE = 1000  # texts per job: well under the 20 MB limit of an inline request
INVALID_ARGUMENT = 3  # google.rpc.Code of a request the service refuses on its own
_SUCCEEDED = "JOB_STATE_SUCCEEDED"
_ENDED = {_SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


class GeminiBatchEmbedder(GeminiEmbedder):
    def __init__(self, api_key: str, *, poll_s: float = POLL_S, max_wait_s: float = MAX_WAIT_S,
                 job_size: int = JOB_SIZE, sleep: Callable[[float], None] = time.sleep,
                 on_job: Callable[[str, str], None] | None = None, **options: Any) -> None:
        options.setdefault("limiter", None)  # batch jobs have their own quota, not the per-minute one
        super().__init__(api_key, **options)
        self.poll_s = poll_s
        self.max_wait_s = max_wait_s
        self.job_size = job_size
        self._sleep = sleep
        self._on_job = on_job  # (job name, state) after every poll, for progress output

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> GeminiBatchEmbedder:
        base = GeminiEmbedder.from_settings(settings)
        base.close()
        return cls(base._api_key, model=base.model, dim=base.dim, base_url=base.base_url,
                   api_version=base.api_version, timeout_s=base.timeout_s, retries=base.retries,
                   wait_429_s=base.wait_429_s, daily_backoff_s=base.daily_backoff_s, **options)

    def __repr__(self) -> str:  # never the key
        return f"GeminiBatchEmbedder(id={self.id!r}, base_url={self.base_url!r})"

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        rejected: dict[int, str] = {}
        todo = list(range(len(texts)))
        if not takes_task_type(self.model):  # the prompt prefix would hide an empty text
            rejected = {i: "Gemini refused the text: text must not be empty" for i in todo
                        if not texts[i].strip()}
            todo = [i for i in todo if i not in rejected]
        spans = [todo[i:i + self.job_size] for i in range(0, len(todo), self.job_size)]
        jobs = [(span, self._submit([texts[i] for i in span])) for span in spans]  # all run at once
        for span, name in jobs:
            rows, refused = self._results(self._wait(name), len(span))
            for j, row in rows.items():
                vectors[span[j]] = row
            rejected.update({span[j]: reason for j, reason in refused.items()})
        if rejected:
            log.warning("Gemini refused %d of %d texts", len(rejected), len(texts))
        return EmbedOutcome(vectors, rejected)

    def _sdk(self, call: Callable[[], Any]) -> Any:
        """One SDK call, short 429s waited out, errors translated; the SDK's experimental notice muted."""

        def quietly() -> Any:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*is experimental")
                return call()

        return self._attempt(quietly)

    def _submit(self, batch: list[str]) -> str:
        from google.genai import types

        contents, config = self._request(batch)
        source = types.EmbeddingsBatchJobSource(
            inlined_requests=types.EmbedContentBatch(contents=contents, config=config))
        job = self._sdk(lambda: self._get_client().batches.create_embeddings(
            model=self.model, src=source,
            config=types.CreateEmbeddingsBatchJobConfig(display_name=f"topicq-{len(batch)}-texts")))
        log.info("Gemini batch job %s: %d texts submitted", job.name, len(batch))
        return str(job.name)

    def _wait(self, name: str) -> Any:
        """Poll until the job has ended; a poll that fails for a passing reason is tried again."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            try:
                job = self._sdk(lambda: self._get_client().batches.get(name=name))
            except TransientError as exc:  # the job goes on; ask again later
                log.warning("polling Gemini batch job %s: %s", name, exc)
                job = None
            if job is not None:
                state = str(getattr(job.state, "value", job.state))
                if self._on_job:
                    self._on_job(name, state)
                if state == _SUCCEEDED:
                    return job
                if state in _ENDED:
                    said = mask(str(getattr(job.error, "message", "") or ""), self._api_key)
                    raise TransientError(f"Gemini batch job {name} ended {state}"
                                         + (f": {said}" if said else ""))
            if time.monotonic() >= deadline:
                raise TransientError(f"Gemini batch job {name} not done after {self.max_wait_s:g}s")
            self._sleep(self.poll_s)

    def _results(self, job: Any, n: int) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        dest = job.dest
        items = (dest and (dest.inlined_embed_content_responses or dest.inlined_responses)) or []
        if len(items) != n:
            raise TransientError(f"Gemini batch job {job.name}: expected {n} responses, got {len(items)}")
        rows: dict[int, np.ndarray] = {}
        refused: dict[int, str] = {}
        for i, item in enumerate(items):
            error = item.error
            if error is not None:
                said = mask(str(error.message or ""), self._api_key)
                if error.code != INVALID_ARGUMENT:
                    raise TransientError(f"Gemini batch job {job.name}: request {i} failed "
                                         f"(code {error.code}): {said}")
                refused[i] = f"Gemini refused the text: {said}"
                continue
            embedding = getattr(getattr(item, "response", None), "embedding", None)
            values = getattr(embedding, "values", None) or []
            if len(values) != self.dim:
                raise TransientError(f"Gemini batch job {job.name}: response {i} has {len(values)} "
                                     f"values, expected {self.dim}")
            rows[i] = np.asarray(values, dtype=np.float32)
        if rows:
            matrix = l2_normalise(np.stack(list(rows.values())))  # below 3,072 dims: not normalised
            rows = dict(zip(rows, matrix, strict=True))
        return rows, refused

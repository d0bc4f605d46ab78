"""The fake Gemini Batch API for embeddings, as google-genai's `client.batches` speaks it.

    POST {base}/{v1|v1beta}/models/{model}:asyncBatchEmbedContent
        {"batch": {"displayName": "...", "inputConfig": {"requests": {"requests": [
            {"request": {"content": {"parts": [{"text": "..."}], "role": "user"},
                         "taskType": "CLASSIFICATION", "outputDimensionality": 768},
             "metadata": {...}}, ...]}}}}
    GET  {base}/{v1|v1beta}/batches/{id}

Both answer a long-running operation: `{"name": "batches/ID", "metadata": {"state":
"BATCH_STATE_PENDING" | ..._RUNNING | ..._SUCCEEDED | ..._FAILED | ..._EXPIRED, "output":
{"inlinedResponses": {"inlinedResponses": [{"response": {"embedding": {"values": [...]}}}
| {"error": {"code": 3, "message": "..."}}, ...]}}, ...}, "done": bool}` with the output in
request order once the job has succeeded. A job is pending for the first half of
`Switches.batch_seconds`, running for the second, then ends in `batch_final_state`.
A request the service refuses on its own (an empty text) gets a per-request error;
a malformed body is refused whole with 400, like the synchronous call.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from testkit.fake_gemini_replies import Reply, check_request, error_reply

CREATE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):asyncBatchEmbedContent$")
GET = re.compile(r"^/(v1|v1beta)/batches/([^/]+)$")
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"
TERMINAL = {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
_EMPTY = "text must not be empty"


@dataclass
class BatchJob:
    name: str
    model: str
    display_name: str
    created: float  # time.monotonic()
    create_time: str
    texts: list[str]
    dims: list[int]
    errors: dict[int, str] = field(default_factory=dict)  # request index -> refusal
    polls: int = 0


class FakeBatches:
    """The batch jobs one fake server holds; `route` answers the batch paths, else None."""

    def __init__(self, switches: Any, vectors: Any) -> None:
        self.switches = switches
        self.jobs: dict[str, BatchJob] = {}
        self._vectors = vectors  # fake_vectors(texts, dim)
        self._lock = threading.Lock()

    def route(self, path: str, raw: bytes, call: Any) -> Reply | None:
        created = CREATE.match(path)
        if created is not None:
            if created.group(2) not in self.switches.models:
                return error_reply(404, "NOT_FOUND", f"models/{created.group(2)} is not found for API "
                                   f"version {created.group(1)}, or is not supported for "
                                   "asyncBatchEmbedContent.")
            return self._create(created.group(2), raw, call)
        got = GET.match(path)
        if got is not None:
            return self._get(got.group(2), call)
        return None

    def _create(self, model: str, raw: bytes, call: Any) -> Reply:
        try:
            body = json.loads(raw)
            batch = body["batch"]
            items = batch["inputConfig"]["requests"]["requests"]
            if set(body) != {"batch"} or not isinstance(items, list) or not items:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return error_reply(400, "INVALID_ARGUMENT", "* CreateEmbedContentBatch.batch.input_config: "
                               "inlined requests are required", outcome="400")
        texts: list[str] = []
        dims: list[int] = []
        errors: dict[int, str] = {}
        for i, item in enumerate(items):
            request = item.get("request") if isinstance(item, dict) else None
            if not isinstance(request, dict) or set(item) - {"request", "metadata"}:
                return error_reply(400, "INVALID_ARGUMENT", f"* inlined requests[{i}]: a request is "
                                   "required", outcome="400")
            one = json.dumps({"requests": [{**request, "model": f"models/{model}"}]}).encode()
            probe = _Probe()
            found, problem = check_request(one, model, probe)
            if problem is not None:
                message = json.loads(problem.body)["error"]["message"]
                if not message.endswith(_EMPTY):
                    return problem  # a malformed request refuses the whole batch
                errors[i] = f"* inlined requests[{i}].content.parts[0].text: {_EMPTY}"
                found, probe.dims = [""], [request.get("outputDimensionality") or 3072]
            texts += found
            dims += probe.dims
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        job = BatchJob(name=f"batches/{uuid.uuid4().hex[:16]}", model=f"models/{model}",
                       display_name=str(batch.get("displayName") or ""), created=time.monotonic(),
                       create_time=now, texts=texts, dims=dims, errors=errors)
        with self._lock:
            self.jobs[job.name] = job
        call.n_texts = len(texts)
        return Reply(200, json.dumps(self._operation(job)).encode(), outcome="batch-create")

    def _get(self, job_id: str, call: Any) -> Reply:
        with self._lock:
            job = self.jobs.get(f"batches/{job_id}")
        if job is None:
            return error_reply(404, "NOT_FOUND", f"Batch batches/{job_id} not found.", outcome="404")
        job.polls += 1
        return Reply(200, json.dumps(self._operation(job)).encode(), outcome="batch-get")

    def state(self, job: BatchJob) -> str:
        age = time.monotonic() - job.created
        if age < self.switches.batch_seconds / 2:
            return "BATCH_STATE_PENDING"
        if age < self.switches.batch_seconds:
            return "BATCH_STATE_RUNNING"
        return str(self.switches.batch_final_state)

    def _operation(self, job: BatchJob) -> dict[str, Any]:
        state = self.state(job)
        metadata: dict[str, Any] = {
            "@type": BATCH_TYPE, "name": job.name, "model": job.model, "displayName": job.display_name,
            "createTime": job.create_time, "updateTime": job.create_time, "state": state,
            "batchStats": {"requestCount": str(len(job.texts))},
        }
        if state == "BATCH_STATE_SUCCEEDED":
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": self._responses(job)}}
        return {"name": job.name, "metadata": metadata, "done": state in TERMINAL}

    def _responses(self, job: BatchJob) -> list[dict[str, Any]]:
        responses: list[dict[str, Any]] = []
        for i, (text, dim) in enumerate(zip(job.texts, job.dims, strict=True)):
            if i in job.errors:
                responses.append({"error": {"code": 3, "message": job.errors[i]}})
            else:
                responses.append({"response": {"embedding": {"values": self._vectors([text], dim)[0]}}})
        return responses


class _Probe:
    """What check_request records about a request (task types and dimensions)."""

    def __init__(self) -> None:
        self.task_types: list[str | None] = []
        self.dims: list[int] = []

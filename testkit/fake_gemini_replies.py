"""What the fake Gemini server answers: request validation and the service's error bodies.

Bodies follow google.rpc.Status as the Gemini API sends it:
`{"error": {"code": N, "message": "...", "status": "...", "details": [...]}}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_REQUESTS = 100
MAX_DIM = 3072
TASK_TYPES = {
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
    "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
}
# Fields the service knows; anything else is refused like the real API refuses unknown names.
BODY_FIELDS = {"requests"}
REQUEST_FIELDS = {"content", "taskType", "outputDimensionality", "model", "title"}
CONTENT_FIELDS = {"parts", "role"}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
CANNED_MESSAGES = {
    401: "Request had invalid authentication credentials.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


@dataclass
class Reply:
    status: int  # 0 = drop the connection without answering
    body: bytes
    outcome: str = "ok"


def error_reply(code: int, status: str | None = None, message: str | None = None,
                details: list[dict[str, Any]] | None = None, outcome: str | None = None) -> Reply:
    error: dict[str, Any] = {
        "code": code,
        "message": message or CANNED_MESSAGES.get(code) or HTTPStatus(code).phrase,
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Reply(code, json.dumps({"error": error}).encode(), outcome=outcome or str(code))


def quota_reply(per_day: bool, retry_delay_s: float) -> Reply:
    """429 RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo details, as Gemini sends it."""
    period = "Day" if per_day else "Minute"
    delay = f"{retry_delay_s:g}s"
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/embed_content_requests",
            "quotaId": f"EmbedContentRequestsPer{period}PerProjectPerModel",
            "quotaValue": "1000" if per_day else "3000",
        }]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    message = ("You exceeded your current quota, please check your plan and billing details. "
               f"Please retry in {retry_delay_s:g}s." if per_day
               else "Resource has been exhausted (e.g. check quota).")
    return error_reply(429, "RESOURCE_EXHAUSTED", message, details,
                       outcome="429-day" if per_day else "429")


def _invalid(message: str) -> Reply:
    return error_reply(400, "INVALID_ARGUMENT", message, outcome="400")


def _unknown(fields: set[str], where: str) -> Reply:
    name = sorted(fields)[0]
    return _invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                    "Cannot find field.")


def check_request(raw: bytes, model: str, call: Any) -> tuple[list[str], Reply | None]:
    """The texts of a valid batchEmbedContents body, or the 400 the service would send.

    Records each request's taskType and outputDimensionality on `call`.
    """
    try:
        body = json.loads(raw)
    except ValueError:
        return [], _invalid("Invalid JSON payload received. Unexpected token.")
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        return [], _invalid("* BatchEmbedContentsRequest.requests: requests must not be empty")
    if set(body) - BODY_FIELDS:
        return [], _unknown(set(body) - BODY_FIELDS, "")
    requests = body["requests"]
    prefix = "* BatchEmbedContentsRequest.requests"
    if not requests:
        return [], _invalid(f"{prefix}: requests must not be empty")
    if len(requests) > MAX_REQUESTS:
        return [], _invalid(f"{prefix}: at most {MAX_REQUESTS} requests can be in one batch")
    texts: list[str] = []
    for i, request in enumerate(requests):
        where = f"{prefix}[{i}]"
        if not isinstance(request, dict):
            return [], _invalid(f"{where}: must be an object")
        if set(request) - REQUEST_FIELDS:
            return [], _unknown(set(request) - REQUEST_FIELDS, f"requests[{i}]")
        if request.get("model") != f"models/{model}":
            return [], _invalid(f"{where}.model: must be the model of the URL, models/{model}")
        task, dim = request.get("taskType"), request.get("outputDimensionality")
        if task is not None and task not in TASK_TYPES:
            return [], _invalid(f"Invalid value at 'requests[{i}].task_type' "
                                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), "
                                f"\"{task}\"")
        if dim is not None and (not isinstance(dim, int) or not 1 <= dim <= MAX_DIM):
            return [], _invalid(f"{where}.output_dimensionality: must be between 1 and {MAX_DIM}")
        content = request.get("content")
        if not isinstance(content, dict) or set(content) - CONTENT_FIELDS:
            return [], _invalid(f"{where}.content: a content with parts is required")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts or not all(
                isinstance(p, dict) and set(p) == {"text"} and isinstance(p["text"], str) for p in parts):
            return [], _invalid(f"{where}.content.parts: only text parts are supported here")
        text = "".join(part["text"] for part in parts)  # several parts make one vector
        if not text.strip():
            return [], _invalid(f"{where}.content.parts[0].text: text must not be empty")
        call.task_types.append(task)
        call.dims.append(dim or MAX_DIM)
        texts.append(text)
    return texts, None

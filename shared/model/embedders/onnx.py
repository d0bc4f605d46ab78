"""all-MiniLM-L6-v2 through onnxruntime: the local embedder without torch.

The encoder file is exported once from the packaged weights (see
encoder_files.py and onnx_export.py) and copied into each model version the
trainer saves, with the model's tokenizer.json; here only `tokenizers` and
onnxruntime run, then mean pooling and L2 norm in numpy, as
sentence-transformers does. A worker given both files (`path`, `tokenizer`)
needs neither torch nor the packaged weights. `int8` (dynamic, per-channel quantisation) is
about twice as fast as torch with a mean cosine of ~0.99 to its vectors, so
it has its own id; `fp32` gives torch's vectors to 1e-6.

Each text runs alone, never padded: int8 dynamic quantisation scales the
activations per run, so in a batch a post's vector would depend on its
neighbours and their padding (cosine down to 0.95 to the same post alone);
alone it is the same vector every time (the embedding cache relies on that),
and on 2 cores it costs no more CPU per post than length-sorted batches (it
measured 53 against 60 ms).

A run of one short post parallelises poorly over cores, so posts run side by
side instead, each on one core: `threads` lanes (ENCODER_THREADS, default
every core), each running one post at a time. On 2 cores that embeds about a
third more posts a second than one post at a time on both
(bench/results/encoder_lanes.md). Every batch of the process shares the
lanes: a worker running batches on several threads (`topicq worker -c N`)
never runs more posts at once than it has lanes, and its next batch queues for
them while the previous one is classified and written.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ConfigError
from shared.model.embedders.base import Embedder, l2_normalise
from shared.model.embedders.embedder_id import LOCAL_DIM, LOCAL_MODEL, local_id

MODEL_NAME, DIM = LOCAL_MODEL, LOCAL_DIM
QUANTIZATIONS = ("int8", "fp32")


def available_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class OnnxEmbedder(Embedder):
    def __init__(self, quantization: str = "int8", max_tokens: int = 256, threads: int = 0,
                 directory: Path | None = None, path: Path | None = None, tuned: str | None = None,
                 tokenizer: Path | None = None, lanes: int = 0) -> None:
        if quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown ONNX quantisation {quantization!r}: choose int8 or fp32")
        if not 8 <= max_tokens <= 512:
            raise ConfigError(f"LOCAL_MODEL_MAX_TOKENS must be 8..512 for {MODEL_NAME}, not {max_tokens}")
        self.quantization = quantization
        self.max_tokens = max_tokens
        self.threads = threads or available_cores()
        # Posts run at once (0: one per thread); each run gets threads // lanes of the threads.
        self.lanes = min(lanes or self.threads, self.threads)
        self.dim = DIM
        # `tuned`: a version's own fine-tuned encoder (shared/model/embedders/tuned.py): other vectors
        self.id = local_id(max_tokens, f"onnx-{quantization}", tuned or None)
        self._directory = directory
        self._path = path
        self._tokenizer_file = tokenizer  # the model's tokenizer.json; None: the packaged model's
        self._session: Any = None
        self._tokenizer: Any = None
        self._pool: ThreadPoolExecutor | None = None  # the lanes, shared by every batch
        self._loading = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, **options: Any) -> OnnxEmbedder:
        """An embedder on a given file (quantisation taken as int8 for the id), e.g. to check it."""
        return cls(path=path, **options)

    def encoder_file(self) -> Path:
        """The ONNX file this embedder runs (built first when it is the packaged one and missing)."""
        from shared.model.embedders.encoder_files import ensure_encoder

        return self._path or ensure_encoder(self.quantization, self._directory)

    def tokenizer_file(self) -> Path:
        """The tokenizer.json this embedder reads: the one given, else the packaged model's."""
        from shared.model.embedders.encoder_files import packaged_tokenizer

        return self._tokenizer_file or packaged_tokenizer()

    def _load(self) -> tuple[Any, Any]:
        with self._loading:
            return self._load_once()

    def _load_once(self) -> tuple[Any, Any]:
        if self._session is None:
            import onnxruntime
            from tokenizers import Tokenizer

            path = self.encoder_file()
            tokenizer = Tokenizer.from_file(str(self.tokenizer_file()))
            tokenizer.enable_truncation(max_length=self.max_tokens)
            tokenizer.no_padding()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = max(1, self.threads // self.lanes)
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            # Threads that spin between runs would take the cores from TensorFlow (the
            # classifier, same process) and from other workers on the machine.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            try:
                self._session = onnxruntime.InferenceSession(str(path), options,
                                                             providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - a corrupt file is a model problem, in one line
                from shared.errors import ModelError

                raise ModelError(f"cannot load the ONNX encoder {path}: {exc}") from None
            self._tokenizer = tokenizer
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="encoder")
        return self._session, self._tokenizer

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text, special tokens and truncation included."""
        _, tokenizer = self._load()
        return [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        # One mask and type array of the longest length, sliced per post: no new arrays per run.
        longest = max(len(encoding.ids) for encoding in encodings)
        ones, zeros = np.ones((1, longest), dtype=np.int64), np.zeros((1, longest), dtype=np.int64)

        def run(row: int) -> None:
            ids = np.asarray([encodings[row].ids], dtype=np.int64)
            n = ids.shape[1]
            hidden = session.run(None, {"input_ids": ids, "attention_mask": ones[:, :n],
                                        "token_type_ids": zeros[:, :n]})[0]
            hidden[0].mean(axis=0, out=vectors[row])  # mean pooling, as sentence-transformers does

        # Longest first, so the lanes finish the batch together.
        order = sorted(range(len(texts)), key=lambda row: -len(encodings[row].ids))
        pool = self._pool
        assert pool is not None
        list(pool.map(run, order))
        return l2_normalise(vectors)

    def close(self) -> None:
        """Let the lanes' threads go (a later embed starts new ones)."""
        with self._loading:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

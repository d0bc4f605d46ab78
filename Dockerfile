# Two images from one file:
#   docker build .                     the worker image (topicq[worker]): workers, migrate, the light
#                                      verbs. No TensorFlow, torch or scikit-learn: a worker serves a
#                                      version with the encoder file and tokenizer in its directory.
#   docker build --target trainer .    the trainer image (topicq[train]): TensorFlow, torch, the
#                                      packaged MiniLM and its int8 ONNX encoder, which `topicq train`
#                                      copies into every version it saves.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOPICQ_HOME=/data
# /models owned by topicq: a new named volume there (compose's `models`) takes its owner, so the
# trainer can write. The user is numeric, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --gid 10001 topicq && useradd --create-home --uid 10001 --gid 10001 topicq \
    && mkdir -p /data /models && chown topicq:topicq /data /models

FROM base AS trainer
# CPU build of torch first: an unpinned torch pulls gigabytes of CUDA packages.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY trainer ./trainer
COPY worker ./worker
COPY cli ./cli
# The default embedder's ONNX encoder, built from the packaged weights into the image.
ENV ENCODER_DIR=/opt/topicq/encoders
RUN pip install --no-cache-dir '.[worker,train]' && python -m shared.model.embedders.onnx_export --quantization int8
USER 10001:10001
ENTRYPOINT ["topicq"]
CMD ["train", "--help"]

FROM base AS worker
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY trainer ./trainer
COPY worker ./worker
COPY cli ./cli
RUN pip install --no-cache-dir '.[worker]'
USER 10001:10001
ENTRYPOINT ["topicq"]
CMD ["worker"]

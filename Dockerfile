# One image for the worker, the trainer and the migrate step.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOPICQ_HOME=/data
# CPU build of torch first: an unpinned torch pulls gigabytes of CUDA packages.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY trainer ./trainer
COPY worker ./worker
COPY cli ./cli
COPY testkit ./testkit
# The default embedder's ONNX encoder, built from the packaged weights into the image.
ENV ENCODER_DIR=/opt/topicq/encoders
RUN pip install --no-cache-dir . && python -m shared.model.embedders.onnx_export --quantization int8 \
    && groupadd --gid 10001 topicq && useradd --create-home --uid 10001 --gid 10001 topicq \
    && mkdir -p /data /models && chown topicq:topicq /data /models
# /models owned by topicq: a new named volume there (compose's `models`) takes its owner, so the
# trainer can write. The user is numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
ENTRYPOINT ["topicq"]
CMD ["worker"]

"""The worker's pipeline run in the test process: its settings and the model server it classifies with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.model.embedders.base import Embedder
from shared.settings import Settings
from worker.served_model import ServedModel


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Fake embedder, models under tmp_path, and retries short enough for a test."""
    return Settings(database_url=db_url, model_dir=tmp_path / "models", embedder="fake",
                    max_retries=3, retry_base_s=0.01, retry_max_s=0.05, **overrides)


def server_for(settings: Settings, embedder: Embedder) -> ServedModel:
    """The production alias of the settings' model, re-read at every batch (refresh_s=0)."""
    return ServedModel(settings.db_url, name=settings.model_name, alias="production",
                       embedder=embedder, refresh_s=0)

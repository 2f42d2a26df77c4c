"""Embedder: images → embeddings with a torch module, an ONNX file or a facenas checkpoint (DESIGN §6)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eval_protocols.errors import EvalError


def to_input(images: np.ndarray) -> np.ndarray:
    """RGB uint8 NHWC → float32 NCHW, (x/255 − 0.5)/0.5 (DESIGN §6 input convention)."""
    x = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x / 255.0 - 0.5) / 0.5, dtype=np.float32)


class Embedder:
    """Embed RGB uint8 [N,112,112,3] images in batches with the model's raw output.

    ``model``: an ``nn.Module``, a ``.onnx`` file (onnxruntime; CUDA provider when available and
    ``device`` is not cpu) or a facenas ``.pt`` checkpoint (rebuilt by ``facerec.checkpoint``).
    """

    def __init__(self, model: nn.Module | str | Path, device: str = "cpu", batch_size: int = 64):
        self.device = device
        self.batch_size = int(batch_size)
        self.name = type(model).__name__ if isinstance(model, nn.Module) else str(model)
        self._session = None
        self._module: nn.Module | None = None
        if isinstance(model, nn.Module):
            self._module = model.to(device).eval()
        else:
            self._open(Path(model))

    def _open(self, path: Path) -> None:
        if not path.is_file():
            raise EvalError(f"{path}: model file not found; expected an .onnx file or a facenas .pt checkpoint")
        if path.suffix == ".onnx":
            import onnxruntime as ort

            providers = ["CPUExecutionProvider"]
            if self.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            try:
                self._session = ort.InferenceSession(str(path), providers=providers)
            except Exception as exc:
                raise EvalError(f"{path}: expected an ONNX model onnxruntime can load ({exc.__class__.__name__})") from None
            self._input_name = self._session.get_inputs()[0].name
        elif path.suffix in (".pt", ".pth"):
            # Imported here: facerec.checkpoint pulls in the whole model zoo, which ONNX users do not need.
            from facerec.checkpoint import load_backbone

            module, _ = load_backbone(path, map_location=self.device)
            self._module = module.to(self.device).eval()
        else:
            raise EvalError(f"{path}: expected a model file ending in .onnx or .pt")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return np.asarray(self._session.run(None, {self._input_name: x})[0], dtype=np.float32)
        with torch.inference_mode():
            out: Any = self._module(torch.from_numpy(x).to(self.device))
            if isinstance(out, (tuple, list)):  # models that also return the norm (AdaFace style)
                out = out[0]
            return out.float().cpu().numpy()

    def embed_batch(self, images: np.ndarray, flip: bool = True) -> np.ndarray:
        """Raw embeddings of one batch; with ``flip`` the sum emb(x) + emb(fliplr x) (DESIGN §6)."""
        x = to_input(images)
        if not flip:
            return self._forward(x)
        both = self._forward(np.concatenate([x, x[:, :, :, ::-1]]))
        return both[: len(x)] + both[len(x) :]

    def embed(
        self, images: np.ndarray | Iterable, flip: bool = True, normalize: bool = True, progress: Any = None
    ) -> np.ndarray:
        """Embeddings of ``images`` (an array, or an iterable of images or batches, consumed lazily).

        ``normalize`` L2-normalises after flip fusion; IJB keeps the raw sum (DESIGN §6).
        ``progress``: an optional tqdm bar advanced by the number of images embedded.
        """
        chunks = []
        for batch in self._batches(images):
            chunks.append(self.embed_batch(batch, flip=flip))
            if progress is not None:
                progress.update(len(batch))
        if not chunks:
            raise EvalError("images: expected at least one image to embed")
        out = np.concatenate(chunks).astype(np.float32, copy=False)
        if normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _batches(self, images: np.ndarray | Iterable) -> Iterator[np.ndarray]:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            for start in range(0, len(images), self.batch_size):
                yield images[start : start + self.batch_size]
            return
        pending: list[np.ndarray] = []
        for item in images:
            item = np.asarray(item)
            pending.extend([item] if item.ndim == 3 else list(item))
            while len(pending) >= self.batch_size:
                yield np.stack(pending[: self.batch_size])
                pending = pending[self.batch_size :]
        if pending:
            yield np.stack(pending)

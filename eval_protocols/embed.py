"""Embedder: images → embeddings with a torch module, an ONNX file or a facenas checkpoint (ARCHITECTURE §6)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from eval_protocols.errors import EvalError


def normalize(pixels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """uint8 pixels (NumPy array or torch tensor, any layout) → float32 (x/255 − 0.5)/0.5: the model input
    convention (ARCHITECTURE §6), stated once for training, evaluation and export; a tensor stays on its device
    and comes back contiguous whatever its strides (e.g. an NHWC batch viewed as NCHW: one pass converts both)."""
    if isinstance(pixels, torch.Tensor):  # in place on one new tensor: the same values, a third of the memory traffic
        out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
        return out.copy_(pixels).div_(255.0).sub_(0.5).div_(0.5)
    out = np.array(pixels, dtype=np.float32, order="C")  # one new C-contiguous array, then the same steps in place
    out /= np.float32(255.0)
    out -= np.float32(0.5)
    out /= np.float32(0.5)
    return out


def to_input(images: np.ndarray) -> np.ndarray:
    """RGB uint8 NHWC → float32 NCHW model input (``normalize``)."""
    return np.ascontiguousarray(normalize(np.asarray(images).transpose(0, 3, 1, 2)), dtype=np.float32)


CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


def is_auto(device: str | None) -> bool:
    """``--device auto`` (None means the same): CUDA when there is one, else CPU (ARCHITECTURE §7)."""
    return device in (None, "auto")


def torch_device(device: str | None) -> str:
    """The torch device ``device`` names, ``auto`` resolved: cuda when torch sees a GPU, else cpu."""
    if is_auto(device):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def onnx_providers(device: str | None, available: Sequence[str]) -> tuple[list, str | None]:
    """The onnxruntime providers for ``device`` given the ``available`` ones, and a note when the
    device asked for cannot be had.

    ``cuda`` / ``cuda:N`` → the CUDA provider on GPU N (it ships in ``onnxruntime-gpu``), CPU as its
    fallback; ``auto`` (or None) → CUDA when this onnxruntime has it, else CPU; ``cpu`` (or anything else) →
    CPU. An explicit ``cuda`` without the CUDA provider falls back to CPU with a note rather than failing,
    so one command runs on machines with and without a GPU and says where it ran.
    """
    auto = is_auto(device)
    if not auto and device.split(":")[0] != "cuda":
        return [CPU_PROVIDER], None
    if CUDA_PROVIDER not in available:
        note = None if auto else (
            f"--device {device}: this onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu); "
            f"running on {CPU_PROVIDER}")
        return [CPU_PROVIDER], note
    index = device.split(":", 1)[1] if not auto and ":" in device else "0"
    if not index.isdigit():
        raise EvalError(f"--device {device}: expected cpu, cuda or cuda:N")
    return [(CUDA_PROVIDER, {"device_id": int(index)}), CPU_PROVIDER], None


class Embedder:
    """Embed RGB uint8 [N,112,112,3] images in batches with the model's raw output.

    ``model``: an ``nn.Module`` (callers that own a checkpoint format rebuild the module and hand it in,
    e.g. ``facerec.deploy.embedding.open_model``) or an ``.onnx`` file (onnxruntime; providers by
    ``onnx_providers``). ``device`` None: CUDA when there is one (for ONNX: when onnxruntime has the CUDA
    provider), else CPU; ``auto`` means the same. ``runtime`` says what runs.
    """

    def __init__(self, model: nn.Module | str | Path, device: str | None = "cpu", batch_size: int = 64):
        self.device = device
        self.batch_size = int(batch_size)
        self.name = type(model).__name__ if isinstance(model, nn.Module) else str(model)
        self._session = None
        self._module: nn.Module | None = None
        self.note: str | None = None
        if isinstance(model, nn.Module):
            self.device = torch_device(device)
            self._module = model.to(self.device).eval()
        else:
            self._open(Path(model))

    @property
    def runtime(self) -> str:
        """One line naming what computes the embeddings, e.g. ``onnxruntime provider: CPUExecutionProvider``;
        with the fallback note when the device asked for was not available."""
        if self._session is not None:
            line = f"onnxruntime provider: {self._session.get_providers()[0]}"
        else:
            line = f"torch device: {self.device}"
        return f"{line} ({self.note})" if self.note else line

    def _open(self, path: Path) -> None:
        if not path.is_file():
            raise EvalError(f"{path}: model file not found; expected an .onnx file")
        if path.suffix == ".onnx":
            providers, self.note = onnx_providers(self.device, ort.get_available_providers())
            try:
                self._session = ort.InferenceSession(str(path), providers=providers)
            except Exception as exc:
                raise EvalError(f"{path}: expected an ONNX model onnxruntime can load ({exc.__class__.__name__})") from None
            self._input_name = self._session.get_inputs()[0].name
        else:
            raise EvalError(f"{path}: expected an .onnx model file (torch models are passed in as modules)")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return np.asarray(self._session.run(None, {self._input_name: x})[0], dtype=np.float32)
        with torch.inference_mode():
            return self._module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def embed_batch(self, images: np.ndarray, flip: bool = True) -> np.ndarray:
        """Raw embeddings of one batch; with ``flip`` the sum emb(x) + emb(fliplr x) (ARCHITECTURE §6)."""
        x = to_input(images)
        if not flip:
            return self._forward(x)
        both = self._forward(np.concatenate([x, x[:, :, :, ::-1]]))
        return both[: len(x)] + both[len(x) :]

    def embed(
        self, images: np.ndarray | Iterable, flip: bool = True, normalize: bool = True, progress: Any = None
    ) -> np.ndarray:
        """Embeddings of ``images`` (an array, or an iterable of images or batches, consumed lazily).

        ``normalize`` L2-normalises after flip fusion; IJB keeps the raw sum (ARCHITECTURE §6).
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

"""AdaFace's training augmentations on RGB uint8 faces (ARCHITECTURE §4; Kim et al., CVPR 2022, and its code):
each of crop, low-resolution and photometric applied with probability 0.2, then a horizontal flip (p 0.5).

- crop: a RandomResizedCrop window (scale 0.2-1, ratio 3/4-4/3) is kept *in place* and everything
  outside it is zeroed ("crop and pad"), so face geometry stays aligned to the template.
- low resolution: downsample the square face to a side of 0.2-1x, then back up, each step with an
  interpolation drawn from nearest/linear/area/cubic/lanczos.
- photometric: ColorJitter(brightness 0.5, contrast 0.5, saturation 0.5) in a random order.

Randomness comes from a numpy Generator per process: seeded from (seed, DataLoader worker id) when a
seed is given, else from the worker's torch seed, so workers never repeat each other's draws. The
trainer instead reseeds it per item from (run seed, epoch, index) (``reseed``), so an image's
augmentation depends on neither the worker that loads it nor the images before it, and a resumed
epoch draws exactly what the uninterrupted one did.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as torchvision's rgb_to_grayscale
# AdaFace's recipe, shared by the per-image (AdaFaceAugment) and the batch (BatchAdaFaceAugment) versions.
CROP_P = LOWRES_P = PHOTOMETRIC_P = 0.2
FLIP_P = 0.5
CROP_SCALE, CROP_RATIO = (0.2, 1.0), (3 / 4, 4 / 3)
LOWRES_SIDE = (0.2, 1.0)  # of the image side
PHOTOMETRIC_STRENGTH = 0.5  # factors in [1 - s, 1 + s]


class AdaFaceAugment:
    def __init__(self, crop_p: float = CROP_P, lowres_p: float = LOWRES_P, photometric_p: float = PHOTOMETRIC_P,
                 flip: bool = True, seed: int | None = None):
        self.crop_p, self.lowres_p, self.photometric_p = crop_p, lowres_p, photometric_p
        self.flip = flip
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._pid = -1

    def __getstate__(self):
        return {**self.__dict__, "_rng": None, "_pid": -1}

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None or self._pid != os.getpid():
            import torch

            info = torch.utils.data.get_worker_info()
            worker = info.id if info is not None else 0
            if self.seed is not None:
                self._rng = np.random.default_rng([self.seed, worker])
            else:
                self._rng = np.random.default_rng(info.seed if info is not None else torch.initial_seed())
            self._pid = os.getpid()
        return self._rng

    def reseed(self, entropy) -> None:
        """Draw the next image's augmentation from ``np.random.default_rng(entropy)`` (non-negative ints)."""
        self._rng = np.random.default_rng(entropy)
        self._pid = os.getpid()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        if rng.random() < self.crop_p:
            image = random_crop_and_pad(image, rng)
        if rng.random() < self.lowres_p:
            image = low_resolution(image, rng)
        if rng.random() < self.photometric_p:
            image = photometric(image, rng)
        if self.flip and rng.random() < FLIP_P:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)


def random_crop_and_pad(image: np.ndarray, rng: np.random.Generator, scale=CROP_SCALE,
                        ratio=CROP_RATIO) -> np.ndarray:
    """Keep a RandomResizedCrop window where it is and zero the rest (same window rule as torchvision)."""
    height, width = image.shape[:2]
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:  # torchvision's fallback: the whole image (central crop at the clamped ratio)
        return image.copy()
    return keep_window(image, top, left, h, w)


def keep_window(image: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """A copy of ``image`` with everything outside the h x w window at (top, left) zeroed."""
    out = np.zeros_like(image)
    out[top:top + h, left:left + w] = image[top:top + h, left:left + w]
    return out


def low_resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = max(1, int(rng.uniform(*LOWRES_SIDE) * image.shape[0]))
    down, up = rng.integers(len(_INTERPOLATIONS), size=2)
    return down_and_up(image, side, int(down), int(up))


def down_and_up(image: np.ndarray, side: int, down: int, up: int) -> np.ndarray:
    """``image`` resized to side x side and back, with interpolations ``down``, ``up`` (indices: nearest, linear,
    area, cubic, lanczos)."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (side, side), interpolation=_INTERPOLATIONS[down])
    return cv2.resize(small, (width, height), interpolation=_INTERPOLATIONS[up]).reshape(image.shape)


def photometric(image: np.ndarray, rng: np.random.Generator, strength: float = PHOTOMETRIC_STRENGTH) -> np.ndarray:
    """ColorJitter(brightness, contrast, saturation = strength): factors in [1-s, 1+s], random order,
    each result clipped to [0, 255] as torchvision's blends do."""
    order = rng.permutation(3)
    return jitter(image, order, [rng.uniform(1 - strength, 1 + strength) for _ in order])


def jitter(image: np.ndarray, order, factors) -> np.ndarray:
    """``photometric`` with its draws given: operation ``order[k]`` (0 brightness, 1 contrast, 2 saturation)
    applied k-th with factor ``factors[k]``."""
    out = image.astype(np.float32)
    for op, factor in zip(order, factors):  # in place: the same arithmetic as out = out * f + (1 - f) * target
        factor = np.float32(factor)
        if op == 1:  # contrast: blend with the mean grey level
            target = (1 - factor) * np.float32((out @ _GREY).mean())
        elif op == 2:  # saturation: blend with the grey image (replicated to RGB: a broadcast add is slow)
            target = cv2.cvtColor((1 - factor) * (out @ _GREY), cv2.COLOR_GRAY2RGB)
        out *= factor  # brightness (op 0): blend with black
        if op:
            out += target
        np.clip(out, 0, 255, out=out)
    return out.round().astype(np.uint8)

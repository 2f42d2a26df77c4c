"""AdaFace's training augmentations on a uint8 NCHW batch on the training device (ARCHITECTURE §4, §8): the
decoded-cache path's counterpart of the per-image ``facerec.data.augment.AdaFaceAugment``, with the same
probabilities and ranges (the constants of that module) and the same order: crop, low resolution,
photometric, flip.

- crop (p 0.2): a RandomResizedCrop window (scale 0.2-1, ratio 3/4-4/3, torchvision's ten tries, else the
  whole image) kept in place, everything outside it zeroed.
- low resolution (p 0.2): down to a square side of 0.2-1x the height, then back up, each step with an
  interpolation drawn from five; torch has no Lanczos, so that choice is an antialiased bicubic, and cv2's
  area interpolation is torch's "area" (both average when shrinking).
- photometric (p 0.2): brightness, contrast, saturation factors in [0.5, 1.5] in a random order per image,
  clipped to [0, 255] after each, rounded to uint8 at the end.
- flip (p 0.5).

Every image goes through uint8 between operations, as with OpenCV. The draws of a batch come from one
``torch.Generator`` the caller seeds (the trainer: from run seed, epoch, rank and step), so a resumed run
augments exactly as the uninterrupted one. ``draw`` and ``apply`` are separate so tests can check both.

``apply`` carries the draws out in one of two ways, by device: on a GPU, each operation on all the images that
drew it at once in torch (``apply_batched``); on a CPU, image by image through facerec.data.augment's own
OpenCV/NumPy functions (``apply_per_image``: the per-image path's interpolations, Lanczos included), because
torch's batched calls cost a CPU more per call than a 112x112 image repays (measured: bench/data_path.py).
Both give crop and flip identically and photometric within one grey level (float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facerec.data.augment import (
    CROP_P,
    CROP_RATIO,
    CROP_SCALE,
    FLIP_P,
    LOWRES_P,
    LOWRES_SIDE,
    PHOTOMETRIC_P,
    PHOTOMETRIC_STRENGTH,
    down_and_up,
    jitter,
    keep_window,
)

_CROP_TRIES = 10  # torchvision's RandomResizedCrop
# cv2 nearest, linear, area, cubic, lanczos as (torch mode, antialias)
_MODES = (("nearest", False), ("bilinear", False), ("area", False), ("bicubic", False), ("bicubic", True))
_GREY = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


@dataclass
class BatchDraws:
    """What happens to each of N images (tensors on the batch's device)."""

    crop: torch.Tensor  # bool [N]
    box: torch.Tensor  # long [N, 4]: top, left, height, width of the kept window
    lowres: torch.Tensor  # bool [N]
    side: torch.Tensor  # long [N]: the low-resolution side
    modes: torch.Tensor  # long [N, 2]: down, up interpolation (index into _MODES)
    photometric: torch.Tensor  # bool [N]
    factors: torch.Tensor  # float32 [N, 3]: the factor of the 1st, 2nd, 3rd operation applied
    order: torch.Tensor  # long [N, 3]: 0 brightness, 1 contrast, 2 saturation, in the order applied
    flip: torch.Tensor  # bool [N]


class BatchAdaFaceAugment:
    def __init__(self, crop_p: float = CROP_P, lowres_p: float = LOWRES_P, photometric_p: float = PHOTOMETRIC_P,
                 flip: bool = True):
        self.crop_p, self.lowres_p, self.photometric_p = crop_p, lowres_p, photometric_p
        self.flip = flip

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> augmented uint8 [N, 3, H, W] (a new tensor; ``images`` is left alone)."""
        n, _, height, width = images.shape
        return self.apply(images, self.draw(n, height, width, generator))

    def draw(self, n: int, height: int, width: int, generator: torch.Generator) -> BatchDraws:
        device = generator.device

        def uniform(*shape, low=0.0, high=1.0):
            return torch.rand(*shape, generator=generator, device=device) * (high - low) + low

        crop = uniform(n) < self.crop_p
        box, found = _crop_boxes(n, height, width, uniform)
        lowres = uniform(n) < self.lowres_p
        side = (uniform(n, low=LOWRES_SIDE[0], high=LOWRES_SIDE[1]) * height).long().clamp(min=1)
        modes = torch.randint(len(_MODES), (n, 2), generator=generator, device=device)
        photometric = uniform(n) < self.photometric_p
        factors = uniform(n, 3, low=1 - PHOTOMETRIC_STRENGTH, high=1 + PHOTOMETRIC_STRENGTH)
        order = uniform(n, 3).argsort(dim=1)
        flip = (uniform(n) < FLIP_P) & self.flip
        # no valid window in ten tries: torchvision's fallback is the whole image, i.e. nothing zeroed
        return BatchDraws(crop & found, box, lowres, side, modes, photometric, factors, order, flip)

    def apply(self, images: torch.Tensor, draws: BatchDraws) -> torch.Tensor:
        if images.device.type == "cpu":
            return apply_per_image(images, draws)
        return apply_batched(images, draws)


def apply_per_image(images: torch.Tensor, draws: BatchDraws) -> torch.Tensor:
    """On a CPU: each image through facerec.data.augment's own functions (OpenCV's interpolations, Lanczos
    included) with the batch's draws, then split into NCHW planes. Several times faster there than torch's
    batched ops, which pay per call what a small image does not repay."""
    faces = images.permute(0, 2, 3, 1).numpy()  # NHWC: the cache's rows, not copied
    out = np.empty(tuple(images.shape), dtype=np.uint8)
    crop, lowres, photometric, flip = (m.tolist() for m in (draws.crop, draws.lowres, draws.photometric, draws.flip))
    box, side, modes = draws.box.tolist(), draws.side.tolist(), draws.modes.tolist()
    factors, order = draws.factors.tolist(), draws.order.tolist()
    for i in range(len(faces)):
        face = np.ascontiguousarray(faces[i])
        if crop[i]:
            face = keep_window(face, *box[i])
        if lowres[i]:
            face = down_and_up(face, side[i], *modes[i])
        if photometric[i]:
            face = jitter(face, order[i], factors[i])
        if flip[i]:
            face = cv2.flip(face, 1)
        cv2.split(face, list(out[i]))
    return torch.from_numpy(out)


def apply_batched(images: torch.Tensor, draws: BatchDraws) -> torch.Tensor:
    """On a GPU: each operation on all the images that drew it at once."""
    out = images.clone()
    if (chosen := _chosen(draws.crop)) is not None:
        out[chosen] = _crop_and_pad(out[chosen], draws.box[chosen])
    if (chosen := _chosen(draws.lowres)) is not None:
        out[chosen] = _low_resolution(out[chosen], draws.side[chosen], draws.modes[chosen])
    if (chosen := _chosen(draws.photometric)) is not None:
        out[chosen] = _photometric(out[chosen], draws.factors[chosen], draws.order[chosen])
    if (chosen := _chosen(draws.flip)) is not None:
        out[chosen] = out[chosen].flip(-1)
    return out


def _chosen(mask: torch.Tensor) -> torch.Tensor | None:
    index = mask.nonzero().squeeze(1)
    return index if index.numel() else None


def _crop_boxes(n: int, height: int, width: int, uniform) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomResizedCrop window rule, ten tries per image at once; (boxes, found)."""
    scale = uniform(n, _CROP_TRIES, low=CROP_SCALE[0], high=CROP_SCALE[1])
    aspect = torch.exp(uniform(n, _CROP_TRIES, low=math.log(CROP_RATIO[0]), high=math.log(CROP_RATIO[1])))
    target = height * width * scale
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1, keepdim=True)  # the first try that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    found = ok.any(dim=1)
    h, w = torch.where(found, h, height), torch.where(found, w, width)
    top = (uniform(n) * (height - h + 1)).long()
    left = (uniform(n) * (width - w + 1)).long()
    return torch.stack([top, left, h, w], dim=1), found


def _crop_and_pad(images: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    _, _, height, width = images.shape
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    top, left, h, w = (box[:, i, None] for i in range(4))
    keep_rows = (rows >= top) & (rows < top + h)
    keep_cols = (cols >= left) & (cols < left + w)
    keep = keep_rows[:, :, None] & keep_cols[:, None, :]
    return images * keep[:, None].to(images.dtype)


def _resize(image: torch.Tensor, size: tuple[int, int], mode: int) -> torch.Tensor:
    name, antialias = _MODES[mode]
    if name == "nearest" or name == "area":
        return F.interpolate(image, size=size, mode=name)
    return F.interpolate(image, size=size, mode=name, align_corners=False, antialias=antialias)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.round_().clamp_(0, 255).to(torch.uint8)


def _line_resize(src: int, dst: int, mode: int, device: torch.device) -> torch.Tensor:
    """float32 [dst, src]: resizing a line of ``src`` pixels to ``dst`` with interpolation ``mode``. All five
    modes are linear and separable, so this is the resize of the ``src`` unit impulses (height 1 stays 1)."""
    impulses = torch.eye(src, device=device).view(1, src, 1, src)
    return _resize(impulses, (1, dst), mode).view(src, dst).T


def _resize_tables(length: int, sides: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For a line of ``length`` pixels, every mode m and side s in 1..``sides``: ``down[m, s]`` [sides, length]
    resizes it to s (rows past s zero), ``up[m, s]`` [length, sides] back from s (columns past s zero). Built
    once per device (2 x 28 MB for 112 pixels)."""
    key = (length, sides, str(device))
    if key not in _TABLES:
        down = torch.zeros(len(_MODES), sides + 1, sides, length, device=device)
        up = torch.zeros(len(_MODES), sides + 1, length, sides, device=device)
        for mode in range(len(_MODES)):
            for side in range(1, sides + 1):
                down[mode, side, :side] = _line_resize(length, side, mode, device)
                up[mode, side, :, :side] = _line_resize(side, length, mode, device)
        _TABLES[key] = down, up
    return _TABLES[key]


_TABLES: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _low_resolution(images: torch.Tensor, side: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """Each image down to side x side and back up as matrix products, rows @ image @ columns.T, all images at
    once (a handful of kernels, not four resizes per image): the small images sit zero-padded in a
    sides x sides corner, which the up-matrices' zero columns ignore."""
    height, width = images.shape[-2:]
    sides = max(height, width)
    (down_h, up_h), (down_w, up_w) = _resize_tables(height, sides, images.device), _resize_tables(width, sides,
                                                                                                  images.device)
    down, up = modes[:, 0], modes[:, 1]
    small = _to_uint8(down_h[down, side][:, None] @ images.float() @ down_w[down, side][:, None].transpose(-1, -2))
    return _to_uint8(up_h[up, side][:, None] @ small.float() @ up_w[up, side][:, None].transpose(-1, -2))


def _photometric(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter(brightness, contrast, saturation) as facerec.data.augment.photometric, vectorised: each
    operation blends x with a target (black, the mean grey level, the grey image) by its factor."""
    x = images.float()
    grey_weights = torch.tensor(_GREY, device=x.device).view(1, 3, 1, 1)
    for k in range(3):
        f = factors[:, k].view(-1, 1, 1, 1)
        op = order[:, k].view(-1, 1, 1, 1)
        grey = (x * grey_weights).sum(dim=1, keepdim=True)
        target = torch.where(op == 1, grey.mean(dim=(2, 3), keepdim=True), grey)
        target = torch.where(op == 0, torch.zeros_like(target), target)
        x = (x * f + (1 - f) * target).clamp_(0, 255)
    return _to_uint8(x)

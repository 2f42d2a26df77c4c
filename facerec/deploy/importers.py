"""Published IResNet and MobileFaceNet weights → facenas backbones: InsightFace arcface_torch and AdaFace.

``import_weights(path, "arcface_torch" | "adaface", arch)`` returns our fixed net of ``arch`` (one of
IMPORT_ARCHS: "iresnet18" ... "iresnet100", "mobilefacenet", "mobilefacenet_large"; ``facerec.model.backbones``)
holding the published weights, ready for ``save_checkpoint``.

- arcface_torch ``backbone.pth`` is a plain state dict whose keys are ours key for key (facerec.model.blocks
  names its modules after arcface_torch's ``iresnet.py``, facerec.model.mobilefacenet after its
  ``mobilefacenet.py``: ``get_mbf`` → mobilefacenet, ``get_mbf_large`` → mobilefacenet_large); it loads
  strictly.
- AdaFace ``.ckpt`` is a PyTorch Lightning checkpoint: the net sits under ``state_dict["model.*"]``
  (``head.*`` is the margin head, dropped). Its ``Backbone`` is the same IResNet under other names:
  ``input_layer.{0,1,2}`` = conv1/bn1/prelu; ``body.{i}`` is a flat list of blocks whose stage we
  read from the block's output width; inside a block ``res_layer.{0..5}`` = bn1, conv1, bn2, prelu,
  conv2, bn3 (the same order of operations, BatchNorm eps 1e-5 as ours) and ``shortcut_layer.{0,1}``
  = downsample.{0,1}; ``output_layer.{0,3,4}`` = bn2/fc/features (1, 2 are Dropout and Flatten).
  Three differences are bridged: the first block of stage 1 (64 → 64, stride 2) has a
  ``MaxPool2d(1, 2)`` shortcut, i.e. every other pixel, which our 1x1 stride-2 conv + BN reproduces
  as an identity conv and an identity BN; AdaFace's embedding BatchNorm1d has no affine weights (ours:
  weight 1, bias 0); AdaFace nets take BGR input, so conv1's input channels are reversed and the
  imported net takes RGB like every facenas model. The imported net outputs AdaFace's
  ``output_layer`` result, i.e. the embedding before AdaFace's own L2 normalisation (its model
  returns ``(embedding / norm, norm)``); facenas evaluation normalises after flip fusion.

Files are read with ``torch.load(weights_only=True)``. Lightning checkpoints may also hold objects
(hyper-parameters, callback state) that ``weights_only`` refuses; those are replaced by inert
placeholders (nothing from the file is imported or run) so the tensors can still be read, and the
caller is told which objects were skipped.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.errors import FaceRecError
from facerec.model.backbones import create_backbone
from facerec.model.mobilefacenet import MOBILEFACENETS
from nas_core.checkpoint import tensor_problem
from nas_core.registry import Registry
from nas_core.safe_pickle import load_weights_only

# The fixed IResNets of facerec.model.backbones, with arcface_torch's (and AdaFace's IR_18..IR_101) blocks per stage.
ARCH_BLOCKS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
_STEM_WIDTH = 64
IMPORT_ARCHS = (*ARCH_BLOCKS, *MOBILEFACENETS)
# What each format's files hold: arcface_torch publishes IResNets and MobileFaceNets, AdaFace only IResNets.
_FORMAT_ARCHS = {"arcface_torch": IMPORT_ARCHS, "adaface": tuple(ARCH_BLOCKS)}

# A format maps the loaded file to {our key: (key in the file, tensor)} plus {our key: filled-in tensor}.
KeyMapping = tuple[dict[str, tuple[str, torch.Tensor]], dict[str, torch.Tensor]]
WEIGHT_FORMATS = Registry("weights format")


def list_weight_formats(pattern: str = "*") -> list[str]:
    return WEIGHT_FORMATS.list(pattern)


def import_weights(path: str | Path, fmt: str, arch: str) -> tuple[nn.Module, list[str]]:
    """The facenas ``arch`` net (eval mode) holding the weights of ``path`` in layout ``fmt``, and notes
    for the user. FaceRecError naming the first bad key when the file does not fit."""
    if fmt not in WEIGHT_FORMATS:
        raise FaceRecError(f"--format {fmt}: expected one of {', '.join(list_weight_formats())}")
    if arch not in IMPORT_ARCHS:
        raise FaceRecError(f"--arch {arch}: expected one of {', '.join(IMPORT_ARCHS)}")
    if arch not in _FORMAT_ARCHS[fmt]:
        raise FaceRecError(f"--arch {arch}: expected one of {', '.join(_FORMAT_ARCHS[fmt])} for --format {fmt} "
                           f"({fmt} publishes no {arch} weights)")
    path = Path(path)
    loaded, notes = _read_weights_file(path, fmt)
    model = create_backbone(arch)
    mapped, filled = WEIGHT_FORMATS.get(fmt)(loaded, model, str(path))
    _load_mapped(model, mapped, filled, where=str(path), fmt=fmt, arch=arch)
    return model.eval(), notes


# ----------------------------------------------------------------------------------------- reading


class _Skipped:
    """Stands in for any object a checkpoint holds besides tensors: whatever the file asks to build
    becomes an empty OrderedDict (one of the few types the weights-only unpickler lets a file fill in),
    so the rest of the file still loads and no class or function named in it is ever looked up."""

    def __new__(cls, *args: Any, **kwargs: Any) -> OrderedDict:
        return OrderedDict()


def _read_weights_file(path: Path, fmt: str) -> tuple[Any, list[str]]:
    try:
        return load_weights_only(path, _EXPECTED[fmt], error=FaceRecError), []
    except FaceRecError:
        refused = _objects_besides_tensors(path) if path.is_file() else []
        if not refused:
            raise
    names = ", ".join(sorted(refused))
    try:
        loaded = load_weights_only(path, _EXPECTED[fmt], error=FaceRecError,
                                   safe_globals=[(_Skipped, name) for name in refused])
    except FaceRecError:
        raise FaceRecError(f"{path}: expected {_EXPECTED[fmt]} (it holds objects torch.load(weights_only=True) "
                           f"refuses: {names}; its tensors cannot be read around them: save the state dict "
                           "alone)") from None
    return loaded, [f"{path}: skipped objects besides tensors ({names}); nothing in them was run"]


def _objects_besides_tensors(path: Path) -> list[str]:
    """Classes/functions the file's pickle names that weights_only refuses (a static scan, no import)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001  (not a zip checkpoint at all)
        return []


def _tensor_dict(obj: Any, where: str, fmt: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        found = "an empty dict" if isinstance(obj, dict) else type(obj).__name__
        raise FaceRecError(f"{where}: expected {_EXPECTED[fmt]} (found {found})")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise FaceRecError(f"{where}: {key}: expected a tensor in {_EXPECTED[fmt]} "
                               f"(found {type(value).__name__}){_format_hint(obj, fmt)}")
        if value.layout != torch.strided:  # renaming and flipping below need plain dense tensors
            raise FaceRecError(f"{where}: {key}: expected a dense tensor in {_EXPECTED[fmt]} "
                               f"(found a {str(value.layout).removeprefix('torch.')} one)")
    return obj


# ----------------------------------------------------------------------------------------- formats

_EXPECTED = {
    "arcface_torch": "an arcface_torch backbone.pth (an IResNet or MobileFaceNet state dict)",
    "adaface": "an AdaFace Lightning .ckpt (an IR net under state_dict['model.*'])",
}
# Keys of an arcface_torch MobileFaceNet: its conv_sep conv (no other net has one) and its GDC Linear, whose
# rows are the embedding.
_MBF_KEY, _FEATURE_LINEAR = "conv_sep.layers.0.weight", "features.layers.2.weight"
_ARCFACE_TORCH_KEYS = ("conv1.weight", "layer1.0.conv1.weight", _MBF_KEY)  # any of them: an arcface_torch file


def _format_hint(obj: Any, fmt: str) -> str:
    """' (this looks like --format X)' when the file looks like the other layout."""
    keys = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    keys = [k for k in keys if isinstance(k, str)] if isinstance(keys, dict) else []
    if any(k.startswith(("input_layer.", "model.input_layer.", "body.", "model.body.")) for k in keys):
        guess = "adaface"
    elif any(k in keys for k in _ARCFACE_TORCH_KEYS):
        guess = "arcface_torch"
    else:
        return ""
    return "" if guess == fmt else f"; this looks like --format {guess}"


@WEIGHT_FORMATS.register("arcface_torch")
def _arcface_torch(loaded: Any, model: nn.Module, where: str) -> KeyMapping:
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        raise FaceRecError(f"{where}: expected {_EXPECTED['arcface_torch']} (found a checkpoint with a "
                           f"'state_dict'){_format_hint(loaded, 'arcface_torch')}")
    state = _tensor_dict(loaded, where, "arcface_torch")
    return {key: (key, value) for key, value in state.items()}, {}


# AdaFace module paths → ours. Stem and head are fixed; blocks are "body.{i}." + a block path.
_ADAFACE_OUTER = {"input_layer.0": "conv1", "input_layer.1": "bn1", "input_layer.2": "prelu",
                  "output_layer.0": "bn2", "output_layer.3": "fc", "output_layer.4": "features"}
_ADAFACE_BLOCK = {"res_layer.0": "bn1", "res_layer.1": "conv1", "res_layer.2": "bn2", "res_layer.3": "prelu",
                  "res_layer.4": "conv2", "res_layer.5": "bn3",
                  "shortcut_layer.0": "downsample.0", "shortcut_layer.1": "downsample.1"}
_BODY_KEY = re.compile(r"body\.(\d+)\.(.+)\.(\w+)$")
_OUTER_KEY = re.compile(r"((?:input|output)_layer\.\d+)\.(\w+)$")


@WEIGHT_FORMATS.register("adaface")
def _adaface(loaded: Any, model: nn.Module, where: str) -> KeyMapping:
    state = _adaface_net_state(loaded, where)
    stage_of = _adaface_block_places(state, where)
    mapped: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in state.items():
        ours = None
        if m := _BODY_KEY.match(key):
            block, module, param = int(m[1]), m[2], m[3]
            if module in _ADAFACE_BLOCK and block in stage_of:
                ours = f"{stage_of[block]}.{_ADAFACE_BLOCK[module]}.{param}"
        elif (m := _OUTER_KEY.match(key)) and m[1] in _ADAFACE_OUTER:
            ours = f"{_ADAFACE_OUTER[m[1]]}.{m[2]}"
        if ours is None:
            raise FaceRecError(f"{where}: unexpected key {key}; expected {_EXPECTED['adaface']} of IR blocks "
                               "(res_layer.0-5, shortcut_layer.0-1; IR-SE and bottleneck nets do not map)")
        mapped[ours] = (key, value)
    if "conv1.weight" in mapped:  # BGR → RGB: the net then reads our channel order
        src, weight = mapped["conv1.weight"]
        mapped["conv1.weight"] = (src, weight.flip(1))
    return mapped, _adaface_fill(model, mapped, stage_of)


def _adaface_net_state(loaded: Any, where: str) -> dict[str, torch.Tensor]:
    """The ``model.*`` part of a Lightning checkpoint (``head.*`` dropped); a bare net state dict as is."""
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    elif isinstance(loaded, dict) and any(k in loaded for k in _ARCFACE_TORCH_KEYS):
        raise FaceRecError(f"{where}: expected {_EXPECTED['adaface']}; this looks like --format arcface_torch")
    state = _tensor_dict(loaded, where, "adaface")
    if not any(k.startswith("model.") for k in state):
        return state
    net = {}
    for key, value in state.items():
        if key.startswith("model."):
            net[key[len("model."):]] = value
        elif not key.startswith("head."):
            raise FaceRecError(f"{where}: unexpected key {key}; expected {_EXPECTED['adaface']} "
                               "(only model.* and head.* keys)")
    return net


def _adaface_block_places(state: dict[str, torch.Tensor], where: str) -> dict[int, str]:
    """body index → our "layer{s}.{j}": the stage from the block's output width (64·2^(s-1))."""
    stage_of_width = {_STEM_WIDTH * 2**s: s + 1 for s in range(4)}
    blocks = sorted({int(m[1]) for k in state if (m := _BODY_KEY.match(k))})
    places, seen = {}, [0, 0, 0, 0]
    for block in blocks:
        key = f"body.{block}.res_layer.1.weight"
        if key not in state:
            raise FaceRecError(f"{where}: missing key {key}; expected {_EXPECTED['adaface']} (each block's conv)")
        width = state[key].shape[0]
        if width not in stage_of_width:
            raise FaceRecError(f"{where}: {key}: output width {width}; expected one of "
                               f"{', '.join(map(str, stage_of_width))} (an IResNet stage)")
        stage = stage_of_width[width]
        places[block] = f"layer{stage}.{seen[stage - 1]}"
        seen[stage - 1] += 1
    return places


def _adaface_fill(model: nn.Module, mapped: dict, stage_of: dict[int, str]) -> dict[str, torch.Tensor]:
    """Our parameters AdaFace has none for: identity shortcuts where it pools, the fixed embedding BN affine."""
    filled: dict[str, torch.Tensor] = {}
    for place in stage_of.values():
        block = model.get_submodule(place)
        conv, bn = (block.downsample[0], block.downsample[1]) if block.downsample is not None else (None, None)
        if conv is None or any(k.startswith(f"{place}.downsample.") for k in mapped):
            continue
        if conv.in_channels != conv.out_channels:
            continue  # a channel change needs real weights: reported as missing keys
        # MaxPool2d(1, 2) keeps every other pixel: a 1x1 stride-2 identity conv does the same.
        eye = torch.eye(conv.out_channels).reshape(conv.out_channels, conv.in_channels, 1, 1)
        filled[f"{place}.downsample.0.weight"] = eye
        filled.update(_identity_bn(f"{place}.downsample.1", bn))
    if "features.weight" not in mapped and "features.bias" not in mapped:
        size = model.features.num_features
        filled["features.weight"] = torch.ones(size)
        filled["features.bias"] = torch.zeros(size)
    return filled


def _identity_bn(prefix: str, bn: nn.BatchNorm2d) -> dict[str, torch.Tensor]:
    # Eval BN scales by 1/sqrt(var + eps): var = 1 - eps makes that exactly 1.
    c = bn.num_features
    return {f"{prefix}.weight": torch.ones(c), f"{prefix}.bias": torch.zeros(c),
            f"{prefix}.running_mean": torch.zeros(c), f"{prefix}.running_var": torch.full((c,), 1.0 - bn.eps),
            f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.long)}


# ----------------------------------------------------------------------------------------- loading


def _load_mapped(model: nn.Module, mapped: dict[str, tuple[str, torch.Tensor]], filled: dict[str, torch.Tensor],
                 *, where: str, fmt: str, arch: str) -> None:
    """Check every key and shape (first problem → FaceRecError naming the key), then load strictly."""
    expected = model.state_dict()
    hint = _arch_hint(mapped, arch)

    def named(ours: str, src: str) -> str:
        return src if src == ours else f"{src} (our {ours})"

    for ours, (src, value) in mapped.items():
        if ours not in expected:
            raise FaceRecError(f"{where}: unexpected key {named(ours, src)}; expected {_EXPECTED[fmt]} "
                               f"of {arch}{hint}")
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise FaceRecError(f"{where}: {named(ours, src)}: shape {tuple(value.shape)}, but {arch} expects "
                               f"{tuple(expected[ours].shape)}{hint}")
        why = tensor_problem(value, expected[ours], finite=True)  # sparse, complex, integer, NaN: refused by name
        if why is not None:
            raise FaceRecError(f"{where}: {named(ours, src)}: {why} ({arch})")
    for ours in expected:
        if ours not in mapped and ours not in filled:
            raise FaceRecError(f"{where}: missing key {_source_name(ours, fmt, arch)}; expected {_EXPECTED[fmt]} "
                               f"of {arch}{hint}")
    state = {ours: value for ours, (_, value) in mapped.items()}
    state.update(filled)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _source_name(ours: str, fmt: str, arch: str) -> str:
    """What a missing key of ours is called in the file (AdaFace numbers its blocks in one flat list)."""
    if fmt != "adaface":
        return ours
    if m := re.match(r"layer([1-4])\.(\d+)\.(.+)\.(\w+)$", ours):
        stage, index, module, param = int(m[1]), int(m[2]), m[3], m[4]
        block = sum(ARCH_BLOCKS[arch][: stage - 1]) + index
        adaface = {mine: theirs for theirs, mine in _ADAFACE_BLOCK.items()}[module]
        return f"body.{block}.{adaface}.{param} (our {ours})"
    for adaface, mine in _ADAFACE_OUTER.items():
        if ours.startswith(mine + "."):
            return f"{adaface}.{ours[len(mine) + 1:]} (our {ours})"
    return ours


def _arch_hint(mapped: dict[str, tuple[str, torch.Tensor]], arch: str) -> str:
    """'; the file holds 3/4/14/3 blocks per stage (--arch iresnet50)' or '; the file holds a MobileFaceNet
    (--arch mobilefacenet)' when the file holds another of our fixed nets than arch."""
    if _MBF_KEY in mapped:
        match = _mobilefacenet_of({ours: value for ours, (_, value) in mapped.items()})
        return f"; the file holds a MobileFaceNet (--arch {match})" if match not in (None, arch) else ""
    counts = [0, 0, 0, 0]
    for ours in mapped:
        if m := re.match(r"layer([1-4])\.(\d+)\.", ours):
            counts[int(m[1]) - 1] = max(counts[int(m[1]) - 1], int(m[2]) + 1)
    if tuple(counts) == ARCH_BLOCKS.get(arch) or not any(counts):
        return ""
    match = next((name for name, blocks in ARCH_BLOCKS.items() if blocks == tuple(counts)), None)
    text = f"; the file holds {'/'.join(map(str, counts))} blocks per stage"
    if match:
        return text + f" (--arch {match})"
    return text + (f", {arch} has {'/'.join(map(str, ARCH_BLOCKS[arch]))}" if arch in ARCH_BLOCKS else " (an IResNet)")


def _mobilefacenet_of(state: dict[str, torch.Tensor]) -> str | None:
    """The MobileFaceNet of ours whose every key and shape the state dict has (embedding size aside), if any."""
    size = {"embedding_size": max(1, state[_FEATURE_LINEAR].shape[0])} if _FEATURE_LINEAR in state else {}
    for name in MOBILEFACENETS:
        with torch.device("meta"):  # shapes only, no memory
            layout = create_backbone(name, **size).state_dict()
        if layout.keys() == state.keys() and all(state[k].shape == v.shape for k, v in layout.items()):
            return name
    return None

"""Settings of the commands that run a finished model: facerec-export, facerec-eval, facerec-embed.

One dataclass per command; its fields are the command's flags (nas_core.config_args builds the parser from
them, help text included), so ``--device``, ``--batch-size`` and ``--no-progress`` mean the same in each.
Dependency-free (ARCHITECTURE §7): ``--help`` imports nothing heavy. Values are checked where the job reads
them (one-line errors, ARCHITECTURE §7), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eval_protocols.protocols import PROTOCOL_ORDER

PRECISIONS = ("fp32", "fp16", "int8")
PARITY_IMAGES = 64  # face images from --data (and as many from --calibration) in the parity check
CALIBRATION_IMAGES = 256  # int8 activation ranges are calibrated on this many --calibration images
PARITY_TOLERANCE = 1e-4  # relative L2 error per sample; torch and onnxruntime agree to ~1e-6 in float32
MIN_OPSET = 17  # nas_core.cost.ONNX_OPSET (a torch module): the oldest opset the exporter writes

_MODEL_DEVICE = "where the model runs: auto (cuda when there is one, else cpu), cpu, cuda or cuda:N"


def _device(text: str = _MODEL_DEVICE):
    return field(default="auto", metadata={"help": text, "metavar": "DEVICE"})


def _progress(what: str):
    return field(default=True, metadata={"help": f"progress bar while {what}, drawn on a terminal only "
                                                 "(default on; --no-progress hides it)"})


def _flip():
    return field(default=True, metadata={"help": "flip fusion emb(x) + emb(fliplr x) (default on; --no-flip "
                                                 "turns it off)"})


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """facerec-export: checkpoint → ONNX, checked against torch; fp16/int8 judged on --check-bin."""

    checkpoint: str = field(metadata={"help": "facenas checkpoint (.pt)", "required": True, "metavar": "CKPT"})
    output: str = field(metadata={"help": "ONNX file to write", "required": True, "metavar": "MODEL.onnx"})
    precision: str = field(default="fp32", metadata={
        "metavar": "{" + ",".join(PRECISIONS) + "}",
        "help": "fp32; fp16 (weights and activations, for onnxruntime CUDA); int8 (static QDQ per-channel, needs "
                "--calibration); fp16/int8 need --check-bin"})
    data: str | None = field(default=None, metadata={
        "metavar": "PACK",
        "help": f"face images for the parity check ({PARITY_IMAGES} of them): face pack folder, image folder "
                "or .bin"})
    calibration: str | None = field(default=None, metadata={
        "metavar": "PACK",
        "help": f"int8 calibration images ({CALIBRATION_IMAGES} of them): face pack folder, image folder or "
                ".bin; also checked for parity"})
    check_bin: str | None = field(default=None, metadata={
        "metavar": "BIN",
        "help": "verification .bin pack: 10-fold accuracy of fp32 and of --precision"})
    max_drop: str = field(default="0.5", metadata={"help": "accuracy drop allowed for fp16/int8, in points"})
    tolerance: str = field(default=str(PARITY_TOLERANCE), metadata={
        "help": "parity: relative L2 error allowed per sample"})
    opset: int = field(default=MIN_OPSET, metadata={"help": f"ONNX opset, {MIN_OPSET} or newer"})
    batch_size: int = field(default=8, metadata={"help": "batch of the parity check and of the latency runs"})
    repeats: int = field(default=10, metadata={"help": "timed runs per engine (median reported)"})
    device: str = _device("where --check-bin is scored and the fp16/int8 model checked: cpu or cuda "
                          "(onnxruntime's CPU or CUDA provider); auto: the precision's target, cuda for fp16 "
                          "when onnxruntime has it, cpu for fp32 and int8")
    progress: bool = _progress("the --check-bin pack is embedded")


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """facerec-eval: a model on the protocols --data holds, or saved features re-scored."""

    model: str | None = field(default=None, metadata={
        "help": "an .onnx file or a facenas .pt checkpoint (not needed with --features-in)"})
    data: str | None = field(default=None, metadata={
        "help": "the data folder as you have it: faces_*/ with .bin packs, IJB_release/ (or IJBC/, IJBB/), the "
                "root holding tinyface/, or one root holding several of them"})
    protocol: str = field(default="all", metadata={
        "help": f"{', '.join(PROTOCOL_ORDER)}, or the stem of any .bin pack in --data (e.g. orl for orl.bin, scored 10-fold "
                "like lfw); all: whatever --data holds"})
    output: str | None = field(default=None, metadata={
        "help": "write the JSON result here (plus <stem>_roc.png for IJB and <stem>.log)"})
    batch_size: int = field(default=64, metadata={"help": "images per forward pass"})
    device: str = _device()
    features_out: str | None = field(default=None, metadata={
        "help": "also save the features (.npz) to re-score later without the model"})
    features_in: str | None = field(default=None, metadata={
        "help": "re-score features saved by --features-out (no model, no images)"})
    flip: bool = _flip()
    detector_score: bool = field(default=True, metadata={
        "help": "IJB: weight image features by the detector score (default on)"})
    norm_score: bool = field(default=True, metadata={
        "help": "IJB: keep each image feature's norm when pooling templates (default on, as InsightFace; "
                "--no-norm-score L2-normalises image features first)"})
    progress: bool = _progress("images are embedded")


@dataclass(frozen=True, kw_only=True)
class EmbedOptions:
    """facerec-embed: a folder of faces → embeddings .npz, and/or their nearest gallery names."""

    model: str = field(metadata={"help": "an .onnx file or a facenas .pt checkpoint", "required": True})
    images: str = field(metadata={"help": "folder of face images (searched at any depth)", "required": True})
    landmarks: str | None = field(default=None, metadata={
        "help": "5-point landmarks per image; embeds the images it lists, aligned"})
    detect: bool = field(default=False, metadata={
        "help": "--images are everyday photos: detect the faces (MTCNN), align and embed each kept face; boxes, "
                "scores and landmarks go to the .npz (default off: images are aligned 112x112 faces)"})
    faces: str = field(default="largest", metadata={
        "help": "with --detect: faces kept per photo, the largest or all (named PHOTO#k)",
        "metavar": "{largest,all}"})
    min_face: int = field(default=20, metadata={"help": "with --detect: smallest face kept, in pixels"})
    min_score: float = field(default=0.9, metadata={"help": "with --detect: lowest detector score kept"})
    output: str | None = field(default=None, metadata={"help": "write names + embeddings to this .npz"})
    gallery: str | None = field(default=None, metadata={
        "help": "an .npz from facerec-embed --output: print each image's nearest names"})
    top_k: int = field(default=5, metadata={"help": "gallery names printed per image"})
    batch_size: int = field(default=64, metadata={"help": "images per forward pass"})
    device: str = _device()
    flip: bool = _flip()
    progress: bool = _progress("images are embedded")


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """facerec-import: published weights → a facenas checkpoint."""

    format: str = field(metadata={
        "help": "layout of --weights: arcface_torch or adaface",
        "required": True})
    arch: str = field(metadata={
        "help": "the net the weights are for: iresnet18, iresnet34, iresnet50, iresnet100, mobilefacenet, "
                "mobilefacenet_large (adaface: the iresnets only)", "required": True})
    weights: str = field(metadata={"help": "arcface_torch backbone.pth or AdaFace .ckpt", "required": True})
    output: str = field(metadata={"help": "facenas checkpoint to write (replaced if present)", "required": True,
                                  "metavar": "CKPT"})

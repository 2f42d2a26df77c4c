"""Face recognition on top of nas_core: IResNet search space, margin heads, training, export.

``facerec.load_embedder(path).embed(images)`` embeds aligned faces with an .onnx or .pt model.
"""

# Importing facerec registers the "iresnet" search space and the facenas_* timm models.
from facerec.model import backbones as _backbones  # noqa: F401
from facerec.model import space as _space  # noqa: F401

__all__ = ["load_embedder"]


def __getattr__(name: str):
    # Loaded on first use: the embedding path pulls in OpenCV, onnxruntime and the evaluation code.
    if name == "load_embedder":
        from facerec.deploy.embedding import load_embedder

        return load_embedder
    raise AttributeError(f"module 'facerec' has no attribute {name!r}")

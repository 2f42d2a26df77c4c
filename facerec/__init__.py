"""Face recognition on top of nas_core: IResNet search space, margin heads, training, export.

``facerec.load_embedder(path).embed(images)`` embeds aligned faces with an .onnx or .pt model.
Importing facerec is cheap (no torch): the "iresnet" space is found through its entry point
(nas_core.space), and the facenas_* models join timm when timm is imported (facerec.model.timm_hook).
"""

from facerec.model.timm_hook import register_on_timm_import

__all__ = ["load_embedder"]

register_on_timm_import()


def __getattr__(name: str):
    # Loaded on first use, so that importing facerec stays cheap: embedding pulls in torch, OpenCV and onnxruntime.
    if name == "load_embedder":
        from facerec.deploy.embedding import load_embedder

        return load_embedder
    raise AttributeError(f"module 'facerec' has no attribute {name!r}")

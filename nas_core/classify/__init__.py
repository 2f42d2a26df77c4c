"""Image classification: the paper's FCN search space and the datasets it is benchmarked on."""

from nas_core.classify import network  # noqa: F401  (registers the "fcn" search space)

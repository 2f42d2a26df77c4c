"""Face recognition on top of nas_core: IResNet search space, margin heads, training, export."""

# Importing facerec registers the "iresnet" search space and the facenas_* timm models.
from facerec import backbones as _backbones  # noqa: F401
from facerec import space as _space  # noqa: F401

"""Face backbones: the IResNet search space, its blocks, the fixed backbones (IResNet, MobileFaceNet), margin heads and checkpoints (ARCHITECTURE §2)."""

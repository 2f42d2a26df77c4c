"""Face recognition on top of nas_core: IResNet search space, margin heads, training, export."""

"""Face training: the loop, its state and logs, the recipe, validation, diagnostics and torchrun helpers (ARCHITECTURE §2)."""

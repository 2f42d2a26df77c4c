"""The facerec-import job: published weights (facerec.deploy.importers) → a facenas checkpoint that rebuilds
itself like any other (ARCHITECTURE §10)."""

from __future__ import annotations

from facerec.deploy.importers import import_weights
from facerec.deploy.options import ImportOptions
from facerec.model.checkpoint import save_checkpoint
from nas_core.io import output_file


def run_import(options: ImportOptions) -> int:
    """Import --weights as --arch, write --output with where the weights came from; 0 on success."""
    output_file(options.output)  # a folder, a file in the way or a read-only folder fails before the import
    backbone, notes = import_weights(options.weights, options.format, options.arch)
    for note in notes:
        print(f"note: {note}")
    provenance = {"format": options.format, "weights": str(options.weights)}
    if options.format == "adaface":
        provenance["converted"] = "conv1 input channels reversed (BGR → RGB); identity shortcut in layer1.0"
    save_checkpoint(options.output, backbone=backbone, config={"imported": provenance})
    params = sum(p.numel() for p in backbone.parameters())
    print(f"wrote {options.output}: {options.arch} ({params:,} parameters) with the {options.format} weights of "
          f"{options.weights}")
    return 0

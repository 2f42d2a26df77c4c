"""The decoded-cache flags of the commands that train on a face pack (ARCHITECTURE §8), as data: the flags are
generated from these fields (nas_core.config_args) and the values are facerec.data.run_data.prepare_data's keywords.
Dependency-free, so a command's ``--help`` never imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CacheOptions:
    cache: bool = field(default=True, metadata={"help": (
        "read the training images from DATA/cache when it holds a decoded cache (facerec-data cache DATA); "
        "--no-cache decodes the JPEGs of train.rec")})
    cache_on_device: bool = field(default=False, metadata={"help": (
        "hold the decoded cache in GPU memory (RAM on a CPU) when it takes at most half of the free memory there; "
        "else read it from disk, with a warning")})

"""--no-cache / --cache-on-device, the same for facerec-train and facerec-search (ARCHITECTURE §8): argparse
only, so a command's --help does not load the data code."""

from __future__ import annotations

import argparse


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true",
                        help="decode the JPEGs of train.rec even when DATA/cache holds a decoded cache "
                             "(facerec-data cache DATA)")
    parser.add_argument("--cache-on-device", action="store_true",
                        help="hold the decoded cache in GPU memory (RAM on a CPU) when it takes at most half "
                             "of the free memory there; else read it from disk, with a warning")


def cache_options(args: argparse.Namespace) -> dict:
    """facerec.data.run_data.prepare_data's keywords for the flags of ``add_cache_flags``."""
    return {"cache": not args.no_cache, "cache_on_device": args.cache_on_device}

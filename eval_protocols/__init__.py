"""Face verification and identification protocols: LFW-style 10-fold, IJB-B/C, TinyFace."""

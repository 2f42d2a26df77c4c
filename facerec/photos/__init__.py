"""From everyday photos to aligned faces: face detection (boxes, scores, 5 points), the choice of faces per
photo, and aligning whole photo folders (``facerec-data align``). Alignment itself is the one
``eval_protocols.align.align_face`` of the project (ARCHITECTURE §6)."""

#!/usr/bin/env bash
# search -> train 15 epochs with the AdaFace head (--recipe adaface) -> facerec-export -> facerec-eval of .onnx and .pt,
# on ORL s1..s30 (training) and 600 pairs of the unseen s31..s40.
#   tools/orl_chain.sh [ORL_DIR] [WORK_DIR]     (ORL_DIR: orl_faces of the shared data folder, tools/shared_data.py)
set -euo pipefail
ORL=$(python "$(dirname "$0")/shared_data.py" orl_faces "${1:-}" --flag ORL_DIR)
W=${2:-runs/chain}
rm -rf "$W"
mkdir -p "$W/heldout_images" "$W/heldout"
for i in $(seq 31 40); do ln -s "$(realpath "$ORL/s$i")" "$W/heldout_images/s$i"; done
facerec-data pack "$ORL" "$W/train" --identities-to 30
facerec-data make-bin "$W/heldout_images" "$W/heldout/orl.bin" --pairs 600
facerec-search --data "$W/train" --output "$W/search" --size small --e-min 4 --d-min 4 --d-max 6 --w-min 8 \
    --w-max 16 --w-res 4 --micro-epochs 2 --max-trials 8 --holdout-ids 6 --batch-size 32 --embedding-size 128 \
    --workers 0 --device cpu --no-progress
facerec-train --genotype "$W/search/result.json" --data "$W/train" --output "$W/model" --epochs 15 \
    --batch-size 32 --lr 0.1 --holdout-ids 0 --workers 0 --device cpu --no-progress --recipe adaface
facerec-export --checkpoint "$W/model/model.pt" --output "$W/model.onnx" --data "$W/train" \
    --check-bin "$W/heldout/orl.bin" --batch-size 16 --repeats 5
for model in "$W/model.onnx" "$W/model/model.pt"; do
    facerec-eval --model "$model" --data "$W/heldout" --protocol orl --device cpu
done

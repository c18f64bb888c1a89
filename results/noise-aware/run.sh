#!/usr/bin/env bash
# Noise-aware training (issue #7): does training with the noise model in the loop recover
# accuracy under that noise? The fully quantum v1 student (Fashion-MNIST 0-5, 3 qubits,
# avg pool + amplitude, 4 HEA layers, no teacher, the paper's student protocol) trained
# with NOISE in the loop (density matrices), 3 seeds, against the committed noise-free
# runs of results/paper-v1-logprob (same config except student.noise); both evaluated
# exactly and under NOISE. The noise level was fixed before running (a strong NISQ-like
# setting), not tuned.
#
#   bash results/noise-aware/run.sh        # from the repository root, ~15 min on 1 core
set -euo pipefail
NOISE="depolarizing=0.02,depolarizing2=0.05,readout=0.05"
OUT=results/noise-aware
for seed in 0 1 2; do
  qdistill distill --student quantum --qubits 3 --reduction avgpool --encoding amplitude \
    --ansatz hea --layers 4 --readout probs --head logprob --dataset fashion-mnist \
    --classes 0-5 --teacher none --kd-variant paper --temperature 3 --alpha 0.9 \
    --epochs 10 --batch-size 1 --lr 0.001 --seed "$seed" --device cpu \
    --set "student.noise=$NOISE" --out "$OUT/runs/noise-aware_s$seed" > /dev/null
done
runs=()
for seed in 0 1 2; do
  runs+=(--run "$OUT/runs/noise-aware_s$seed"
         --run "results/paper-v1-logprob/runs/fashion-mnist_0-5_q3_quantum_none_s$seed")
done
qdistill evaluate "${runs[@]}" --noise "$NOISE" --shots 1000 --seeds 3 --out "$OUT/evaluation"

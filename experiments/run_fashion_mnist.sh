#!/usr/bin/env bash
# Reproduce docs/experiments.md: bayesian vs random on full Fashion-MNIST, 30 minutes each, on one machine.
# Both searches run at the same time, each pinned to one CPU core with one thread, so they see the same
# machine under the same load; then each best architecture is retrained on train+validation and tested once.
#   bash experiments/run_fashion_mnist.sh /path/to/fashion-mnist [OUT_DIR] [FINAL_EPOCHS]
set -euo pipefail
data=${1:?usage: run_fashion_mnist.sh DATA_DIR [OUT_DIR] [FINAL_EPOCHS]}
out=${2:-runs/experiments}
final=${3:-5}
cfg="$(dirname "$0")/fashion_mnist.toml"
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for strategy in bayesian random; do
  taskset -c "$([ $strategy = bayesian ] && echo 0 || echo 1)" \
    morphnas search --config "$cfg" --data-dir "$data" --strategy "$strategy" --out "$out/fm-$strategy" \
    > "$out/fm-$strategy.log" 2>&1 &
done
wait
for strategy in bayesian random; do
  taskset -c "$([ $strategy = bayesian ] && echo 0 || echo 1)" \
    morphnas final "$out/fm-$strategy" --epochs "$final" > "$out/fm-$strategy-final.log" 2>&1 &
done
wait
morphnas compare "$out/fm-bayesian" "$out/fm-random" --plot "$out/compare.png"

#!/usr/bin/env bash
# The README's method comparison on the real Fashion-MNIST (offline): ERM vs each method,
# 3 seeds, 1 epoch, clean / FGSM / PGD-20 / AutoAttack (standard) at L∞ ε = 0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 experiments/compare.py --output_dir="${1:-workdirs/compare_fashion_mnist}" \
  --configs=configs/erm.py:fashion_mnist,configs/amp.py:fashion_mnist,configs/dropattack.py:fashion_mnist,configs/mdl.py:fashion_mnist,configs/lfm.py:fashion_mnist,configs/class_similarity.py:fashion_mnist \
  --seeds=0,1,2 --num_epochs=1 --epsilon=0.1 --pgd_steps=20 --attack_examples=1000 --autoattack

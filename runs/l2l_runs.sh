#!/usr/bin/env bash
# Issue 17's meta-training runs, one at a time (2 shared cores: nice, 1 thread), each resumable:
# rerunning this script continues every unfinished run from its last checkpoint and skips the
# finished ones. Seeds in the order that gives one seed of each rule first. RULES="genome_norm" runs
# runs/l2l_genome_norm.toml instead; RULES="lstm_long" fine-tunes each seed's shipped LSTM rule
# (runs/l2l_lstm_long.toml, init_from runs/results/learn_to_learn/models/l2l_lstm_s<seed>); RULES=genome_fade
# meta-trains the fading genome of runs/l2l_genome_fade.toml (SEEDS=0 etc. runs seeds side by side);
# RULES=genome_fade40_early fine-tunes each seed's shipped T = 40 fading genome on 10-500-step episodes;
# RULES=genome_fade40_overlap fine-tunes that one again with an overlapping 4-input family added, and
# RULES=genome_fade_learned / genome_fade_bwd10 with per-entry fade times too (learned / eta_bwd's at 10).
#   nohup bash runs/l2l_runs.sh > runs/out/l2l_runs.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
for seed in ${SEEDS:-0 1 2}; do
  for rule in ${RULES:-genome lstm}; do
    out=runs/out/l2l_${rule}_s${seed}
    if [ -f "$out/done" ]; then continue; fi
    resume=""; [ -f "$out/checkpoint.json" ] && resume="--resume"
    # fine-tuning runs start from another shipped run's rule of the same seed
    case $rule in lstm_long) from=lstm ;; genome_fade40_early) from=genome_fade40 ;; genome_fade40_overlap | genome_fade_learned | genome_fade_bwd10) from=genome_fade40_early ;; *) from="" ;; esac
    init=""; [ -n "$from" ] && init="--set train.init_from=results/learn_to_learn/models/l2l_${from}_s${seed}"
    start=$(date +%s)
    nice -n 10 simgraph train runs/l2l_${rule}.toml --out "$out" --no-baselines --no-progress --set seed=$seed $init $resume \
      && echo "$(( $(date +%s) - start )) s on $(uname -n)" > "$out/done"
    echo "$rule seed $seed: exit $? after $(( $(date +%s) - start )) s"
  done
done

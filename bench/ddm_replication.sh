#!/usr/bin/env bash
# The replication table of Decentralized Diffusion Models (McAllister et al. 2025) on
# Fashion-MNIST at equal training compute, with the real ddactor binary:
#
#   monolith                     one DiT, batch B, for S steps plus the router's compute
#   K experts (k-means clusters) each the same DiT, batch B/K, S steps, on its cluster only;
#                                a router trained on all images; evaluated top-1, top-2, full,
#                                and with the oracle cluster of each requested class
#   K experts (random clusters)  the same on a random, balanced partition (the ablation), top-1
#
# Compute is counted as parameters x samples (every model here sees 49 tokens per image, so a
# sample's FLOPs are proportional to its parameters): the monolith gets the experts' samples
# (S x B) plus the router's (router parameters / DiT parameters x router steps x router batch)
# as extra steps. Every row is measured with `ddactor eval` (Frechet distance in the feature
# space of ddactor's Fashion-MNIST classifier, eval.num_samples generated images against the test
# split) and gets a sample grid (PNG, one row per class).
#
# Usage: bench/ddm_replication.sh [--build DIR] [--out DIR] [--experts K] [--steps S]
#                                 [--batch B] [--router-steps R] [--eval-steps N]
# Defaults: quickstart's model and budget (K=4, S=1500, B=128, R=S/5, eval steps from the config).
# On a 2-core machine the defaults take about 1.5 hours; --steps 750 --eval-steps 10 about 45
# minutes. Run again with the same --out, finished trainings are resumed at their last step (no
# work) and every row is evaluated again (delete a run's folder to train it anew).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
out="$repo/bench-out/ddm-replication"
experts=4
steps=1500
batch=128
router_steps=""
eval_steps=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --experts) experts=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --router-steps) router_steps=$2; shift 2 ;;
    --eval-steps) eval_steps=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
router_steps=${router_steps:-$((steps / 5))}
if [ $((batch % experts)) -ne 0 ]; then
  echo "--batch ($batch) must be divisible by --experts ($experts)" >&2
  exit 2
fi
ddactor="$build/ddactor"
[ -x "$ddactor" ] || { echo "no $ddactor: build first (cmake --build $build)" >&2; exit 2; }
mkdir -p "$out"
log="$out/logs"
mkdir -p "$log"

# One base run file; every role differs only by --set overrides.
base="$out/ddm.toml"
cat > "$base" <<EOF
# Written by bench/ddm_replication.sh: quickstart's DiT and the DDM settings of the table.
[run]
name = "ddm-replication"
[data]
source = "fashion-mnist"
batch_size = $batch
[model]
preset = "custom"
hidden_size = 128
depth = 4
num_heads = 4
patch_size = 4
[train]
steps = $steps
lr = 0.0005
warmup_steps = 100
ema_decay = 0.999
log_every = 50
checkpoint_every = $steps
sample_every = 0
[ddm]
num_experts = $experts
fine_clusters = 64
seed = 0
router_hidden_size = 128
router_depth = 2
router_heads = 4
router_patch_size = 4
EOF
if [ -n "$eval_steps" ]; then
  printf '[eval]\nsteps = %s\n' "$eval_steps" >> "$base"
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
declare -A seconds

# run NAME ARGS...: one ddactor invocation, its output in logs/NAME.log, its time recorded.
run() {
  local name=$1; shift
  local started; started=$(now)
  echo "== $name: ddactor $*" >&2
  if ! "$ddactor" "$@" > "$log/$name.log" 2>&1; then
    echo "!! $name failed; the end of $log/$name.log:" >&2
    tail -20 "$log/$name.log" >&2
    exit 1
  fi
  seconds[$name]=$(elapsed "$started")
  echo "   ${seconds[$name]} s" >&2
}

parameters_in() { grep -o 'with [0-9]* parameters' "$1" | head -1 | grep -o '[0-9]*'; }

# --- The two DDMs: clusters, experts, router ------------------------------------------------
expert_batch=$((batch / experts))
for partition in kmeans random; do
  root="$out/$partition"
  run "$partition-cluster" cluster --config "$base" --set "run.dir=\"$root\"" \
    --set "ddm.partition=\"$partition\""
  cp "$log/$partition-cluster.log" "$out/clusters-$partition.txt"
  for ((k = 0; k < experts; ++k)); do
    run "$partition-expert-$k" --config "$base" --set "run.dir=\"$root\"" \
      --set "ddm.expert=$k" --set "data.batch_size=$expert_batch"
  done
  run "$partition-router" --config "$base" --set "run.dir=\"$root\"" \
    --set "run.mode=\"router\"" --set "train.steps=$router_steps" \
    --set "train.checkpoint_every=$router_steps" --set "train.warmup_steps=20"
done

# --- The monolith at the same compute ----------------------------------------------------------
dit_parameters=$(parameters_in "$log/kmeans-expert-0.log")
router_parameters=$(parameters_in "$log/kmeans-router.log")
router_equivalent_steps=$(awk -v r="$router_parameters" -v d="$dit_parameters" \
  -v s="$router_steps" 'BEGIN { printf "%d", r / d * s + 0.5 }')
monolith_steps=$((steps + router_equivalent_steps))
run monolith --config "$base" --set "run.dir=\"$out/monolith\"" \
  --set "train.steps=$monolith_steps" --set "train.checkpoint_every=$monolith_steps"

# --- Quality of every row ---------------------------------------------------------------------
declare -A fd accuracy
evaluate() {  # evaluate ROW ROOT [ensemble args...]
  local row=$1 root=$2; shift 2
  run "eval-$row" eval --config "$base" --set "run.dir=\"$root\"" "$@"
  fd[$row]=$(awk '/^frechet_distance/ { print $2 }' "$log/eval-$row.log")
  accuracy[$row]=$(awk '/^class_accuracy/ { print $2 }' "$log/eval-$row.log")
  floor=$(awk '/^real_data_floor/ { print $2 }' "$log/eval-$row.log")
}
grid() {  # grid ROW ROOT [ensemble args...]
  local row=$1 root=$2; shift 2
  run "grid-$row" sample --config "$base" --set "run.dir=\"$root\"" --out "$out/grid-$row.png" "$@"
}
evaluate monolith "$out/monolith";                       grid monolith "$out/monolith"
evaluate top1 "$out/kmeans" --ensemble top1;             grid top1 "$out/kmeans" --ensemble top1
evaluate top2 "$out/kmeans" --ensemble topk --top-k 2;   grid top2 "$out/kmeans" --ensemble topk --top-k 2
evaluate full "$out/kmeans" --ensemble full;             grid full "$out/kmeans" --ensemble full
evaluate oracle "$out/kmeans" --ensemble oracle
evaluate random "$out/random" --ensemble top1;           grid random "$out/random" --ensemble top1

# --- The table ----------------------------------------------------------------------------------
samples_per_expert=$((steps * expert_batch))
{
  echo "DDM replication on Fashion-MNIST, K = $experts, equal compute"
  echo "  DiT: $dit_parameters parameters; router: $router_parameters parameters, $router_steps steps x $batch"
  echo "  experts: $steps steps x batch $expert_batch each ($samples_per_expert samples each, $((samples_per_expert * experts)) in all)"
  echo "  monolith: $monolith_steps steps x batch $batch ($steps + $router_equivalent_steps for the router's compute)"
  echo "  quality: ddactor eval ($(awk '/^generation_time/ { $1 = ""; print }' "$log/eval-monolith.log" | sed 's/^ *//')); real-data floor $floor"
  echo
  echo "| model | Frechet distance | class accuracy | vs monolith | grid |"
  echo "|---|---|---|---|---|"
  for row in monolith top1 top2 full oracle random; do
    case $row in
      monolith) label="monolith" ;;
      top1) label="$experts experts, top-1" ;;
      top2) label="$experts experts, top-2" ;;
      full) label="$experts experts, full ensemble" ;;
      oracle) label="$experts experts, oracle cluster" ;;
      random) label="$experts experts on random partitions, top-1" ;;
    esac
    ratio=$(awk -v a="${fd[$row]}" -v b="${fd[monolith]}" 'BEGIN { printf "%.3f", a / b }')
    picture="-"; [ -f "$out/grid-$row.png" ] && picture="grid-$row.png"
    echo "| $label | ${fd[$row]} | ${accuracy[$row]} | ${ratio}x | $picture |"
  done
  echo
  echo "training time of this invocation (s; 1-2 s: resumed a finished run): monolith ${seconds[monolith]}; k-means experts $(for ((k = 0; k < experts; ++k)); do printf '%s ' "${seconds[kmeans-expert-$k]}"; done)+ router ${seconds[kmeans-router]}; clustering ${seconds[kmeans-cluster]}"
} | tee "$out/table.md"

#!/usr/bin/env bash
# Rebuild models/default from nothing, on this machine: `make model` runs this.
#   1. record scripted FR3 demonstrations of every task in the sim (direct mode, randomised look)
#   2. convert the bags into a clap_ros dataset (parquet + mp4)
#   3. render the action-free "human" videos (floating hand)
#   4. train every CLAP stage with training/configs/default.yaml and export + parity-check the bundle
#   5. check the bundle with the runtime's loader, then replace models/default
# Training seeds start at 100000 so that eval-sim / demo seeds (0, 1, ...) are unseen layouts.
# Knobs (environment): EPISODES per task (100), HUMAN_CLIPS per task (12), DATA (data/default),
# OUT (models/default), CONFIG (default), RUN_DIR (runs/<name of OUT>: checkpoints, logs, metrics),
# THREADS (1; more threads only help on an idle machine).
set -euo pipefail
cd "$(dirname "$0")/.."
EPISODES=${EPISODES:-100}
HUMAN_CLIPS=${HUMAN_CLIPS:-12}
DATA=${DATA:-data/default}
OUT=${OUT:-models/default}
CONFIG=${CONFIG:-default}
THREADS=${THREADS:-1}
SEED=100000
VENV=${VENV:-.venv}
export OMP_NUM_THREADS=$THREADS MUJOCO_GL=${MUJOCO_GL:-egl}
CLAP_ROS=$VENV/bin/clap-ros
CLAP_TRAIN=$VENV/bin/clap-train
TASKS="reach push pick_place stack"
RUN_DIR=${RUN_DIR:-runs/$(basename "$OUT")}

if [ ! -f "$DATA/dataset/stats.json" ] || [ ! -f "$DATA/human/labels.json" ]; then
  echo "== data: $EPISODES FR3 episodes per task ($TASKS), $HUMAN_CLIPS human clips per task -> $DATA"
  rm -rf "$DATA"
  for task in $TASKS; do
    "$CLAP_ROS" sim record --direct --robot fr3 --task "$task" --episodes "$EPISODES" \
      --seed "$SEED" --out "$DATA/bags" --quiet
  done
  "$CLAP_ROS" bag2dataset --bags "$DATA/bags" --out "$DATA/dataset" --strict
  "$CLAP_ROS" sim human-videos --task all --episodes "$HUMAN_CLIPS" --scenes 6 --fps 15 \
    --seed "$SEED" --out "$DATA/human"
else
  echo "== data: reusing $DATA (delete it to record again)"
fi

echo "== training ($CONFIG preset) into $RUN_DIR"
"$CLAP_TRAIN" pipeline --config "$CONFIG" --threads "$THREADS" --no-resume \
  --set out_dir="$RUN_DIR" \
  --set data.robot_dataset="$DATA/dataset" --set data.human_videos="$DATA/human" \
  --bundle "$RUN_DIR/bundle" --summary "$RUN_DIR/summary.json" \
  --command "make model  (EPISODES=$EPISODES HUMAN_CLIPS=$HUMAN_CLIPS CONFIG=$CONFIG)"

"$CLAP_ROS" bundle check "$RUN_DIR/bundle" --backend cpu
mkdir -p "$(dirname "$OUT")"
rm -rf "$OUT.new"
cp -r "$RUN_DIR/bundle" "$OUT.new"
rm -rf "$OUT"
mv "$OUT.new" "$OUT"
echo "== wrote $OUT (metrics: $RUN_DIR/pipeline.json)"

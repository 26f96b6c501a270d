#!/usr/bin/env bash
# The five-minute tour in one command: serve, batch-predict the example images (classification), scenes
# (detection) and a generated video (tracking), show results, draw the boxes of one scene and the video's tracks, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-data-demo}
PORT=${PORT:-8080}
SERVER=http://127.0.0.1:$PORT

mkdir -p "$DATA/buckets/demo/images"
cp examples/images/*.* "$DATA/buckets/demo/images/"
ls "$DATA/buckets/demo/images" | sed 's|^|gs://demo/images/|' > "$DATA/buckets/demo/batch.csv"

$BIN/batchline serve --port "$PORT" --data-dir "$DATA" > "$DATA/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "$SERVER/v1/projects/demo/locations/us-central1/models" > /dev/null && break
  kill -0 $SERVER_PID 2>/dev/null || { cat "$DATA/server.log"; exit 1; }
  sleep 0.2
done

echo "== batchline is serving on $SERVER (data in $DATA/); models:"
$BIN/batchline models list --server "$SERVER"
echo "== batch prediction of $(wc -l < "$DATA/buckets/demo/batch.csv") images listed in gs://demo/batch.csv"
OUT=$($BIN/batchline batch-predict --server "$SERVER" --model shapes-classifier \
  --input gs://demo/batch.csv --output gs://demo/out/ --wait | tail -n 1 | sed 's/^output: //')
DIR="$DATA/buckets/${OUT#gs://}"
echo "== results in $OUT (the folder $DIR):"
ls "$DIR"
head -n 3 "$DIR"/image_classification_1.jsonl

echo "== object detection: the example scenes with shapes-detector"
mkdir -p "$DATA/buckets/demo/scenes"
cp examples/scenes/*.* "$DATA/buckets/demo/scenes/"
ls "$DATA/buckets/demo/scenes" | sed 's|^|gs://demo/scenes/|' > "$DATA/buckets/demo/scenes.csv"
OUT=$($BIN/batchline batch-predict --server "$SERVER" --model shapes-detector \
  --input gs://demo/scenes.csv --output gs://demo/out/ --wait | tail -n 1 | sed 's/^output: //')
DIR="$DATA/buckets/${OUT#gs://}"
echo "== results in $OUT:"
ls "$DIR"
head -n 1 "$DIR"/image_object_detection_1.jsonl | cut -c 1-400
SCENE=$(ls "$DATA/buckets/demo/scenes" | head -n 1)
$BIN/batchline predict --server "$SERVER" --model shapes-detector "$DATA/buckets/demo/scenes/$SCENE" \
  --render "$DATA/boxes.png"
echo "== open $DATA/boxes.png to see the boxes on $SCENE"

echo "== video object tracking: a generated 6-second video of moving shapes with shapes-tracker"
mkdir -p "$DATA/buckets/demo/videos"
$BIN/python scripts/videos.py "$DATA/buckets/demo/videos" --n 1 --seed 7 --size 640x480 --fps 30 --seconds 6
echo "gs://demo/videos/00000.mp4,0,inf" > "$DATA/buckets/demo/videos.csv"
OUT=$($BIN/batchline batch-predict --server "$SERVER" --model shapes-tracker \
  --input gs://demo/videos.csv --output gs://demo/out/ --wait | tail -n 1 | sed 's/^output: //')
DIR="$DATA/buckets/${OUT#gs://}"
echo "== results in $OUT:"
ls "$DIR"
cat "$DIR"/video_object_tracking.csv
head -c 400 "$DIR"/video_object_trackinng_1.json; echo
$BIN/batchline render "$DATA/buckets/demo/videos/00000.mp4" "$DIR/video_object_trackinng_1.json" \
  --out "$DATA/tracks.png"
echo "== open $DATA/tracks.png to see the tracked shapes, each with its instance id"

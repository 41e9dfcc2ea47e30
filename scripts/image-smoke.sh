#!/usr/bin/env bash
# Build the classifier's onnx image and invoke it through the Lambda runtime interface emulator that the
# AWS base image ships (port 9000 here -> 8080 in the container). Needs a Docker engine; no AWS account.
#
#   scripts/image-smoke.sh            # build, check the image's contents, invoke twice, clean up
#   IMAGE_TAG=... PORT=... scripts/image-smoke.sh
#
# Checks: the onnx target has onnxruntime, numpy and Pillow and no torch; the handler answers the recorded
# s3:TestEvent with an empty batchItemFailures; and, with AWS out of reach, it reports the recorded upload's
# message for redelivery instead of losing it.
set -euo pipefail

cd "$(dirname "$0")/.."
TAG=${IMAGE_TAG:-imgclf-classifier:onnx-smoke}
PORT=${PORT:-9000}
URL="http://127.0.0.1:${PORT}/2015-03-31/functions/function/invocations"

command -v docker >/dev/null || { echo "image-smoke: docker is not installed" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "image-smoke: no Docker engine is reachable" >&2; exit 2; }

echo "== build (target onnx)"
docker build --file functions/classifier/Dockerfile --target onnx --tag "$TAG" functions

echo "== contents"
docker run --rm --entrypoint python "$TAG" -c '
import importlib.util, sys
import numpy, onnxruntime, PIL
from imgclf_classifier import handler
assert importlib.util.find_spec("torch") is None, "torch must not be in the onnx image"
print("onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__, "Pillow", PIL.__version__)
'
docker image ls "$TAG" --format 'image size: {{.Size}}'

echo "== run"
# Fake credentials and an endpoint nobody listens on: nothing can reach a real account.
cid=$(docker run --detach --rm --publish "127.0.0.1:${PORT}:8080" \
  --env AWS_REGION=us-east-1 --env AWS_DEFAULT_REGION=us-east-1 \
  --env AWS_ACCESS_KEY_ID=testing --env AWS_SECRET_ACCESS_KEY=testing \
  --env AWS_ENDPOINT_URL=http://127.0.0.1:9 \
  --env DATA_BUCKET=imgclf-local-data-123456789012-us-east-1 \
  --env PREDICTIONS_TABLE=imgclf-local-predictions --env MODELS_TABLE=imgclf-local-models \
  --env POWERTOOLS_SERVICE_NAME=classifier --env POWERTOOLS_TRACE_DISABLED=true \
  --env POWERTOOLS_METRICS_DISABLED=true \
  "$TAG")
trap 'docker stop "$cid" >/dev/null 2>&1 || true' EXIT

invoke() {
  local response
  for _ in $(seq 1 30); do
    if response=$(curl --silent --show-error --fail --max-time 60 --data @"$1" "$URL" 2>/dev/null); then
      echo "$response"
      return 0
    fi
    sleep 1
  done
  echo "image-smoke: no answer from the emulator" >&2
  docker logs "$cid" >&2 || true
  return 1
}

expect() {
  local name=$1 event=$2 expected=$3 actual
  actual=$(invoke "$event" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))')
  if [ "$actual" = "$expected" ]; then
    echo "ok: $name -> $actual"
  else
    echo "FAILED: $name: expected $expected, got $actual" >&2
    docker logs "$cid" >&2 || true
    exit 1
  fi
}

expect "s3:TestEvent is ignored" tests/events/sqs_s3_test_event.json '{"batchItemFailures": []}'
message_id=$(python3 -c 'import json; print(json.load(open("tests/events/sqs_s3_put.json"))["Records"][0]["messageId"])')
expect "upload without AWS is left for redelivery" tests/events/sqs_s3_put.json \
  "{\"batchItemFailures\": [{\"itemIdentifier\": \"${message_id}\"}]}"
echo "image-smoke: passed"

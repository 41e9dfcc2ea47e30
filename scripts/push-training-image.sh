#!/usr/bin/env bash
# Build the training image and push it to the stack's ECR repository, tagged with the git revision and latest.
# Usage: scripts/push-training-image.sh [STAGE]   (needs Docker and AWS credentials; the stack must exist)
#   BASE_IMAGE=...  another PyTorch base (e.g. a CUDA 12 build where the hosts' NVIDIA driver is older than 580)
set -euo pipefail
cd "$(dirname "$0")/.."

stage="${1:-${STAGE:-dev}}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region)}}"
account="$(aws sts get-caller-identity --query Account --output text)"
repository="imgclf-${stage}-training"
registry="${account}.dkr.ecr.${region}.amazonaws.com"
revision="$(git rev-parse --short=12 HEAD)$(git diff --quiet || echo -dirty)"

aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
build_args=()
if [[ -n "${BASE_IMAGE:-}" ]]; then build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}"); fi
# The context is the repository root (the image takes the manifest schema from functions/common); BuildKit
# reads training_job/Dockerfile.dockerignore, which sends only what the Dockerfile copies.
docker build --platform linux/amd64 "${build_args[@]}" -t "${registry}/${repository}:${revision}" -f training_job/Dockerfile .
docker tag "${registry}/${repository}:${revision}" "${registry}/${repository}:latest"
docker push "${registry}/${repository}:${revision}"
docker push "${registry}/${repository}:latest"

echo "pushed ${registry}/${repository}:${revision}"
echo "pin it with: sam deploy --parameter-overrides TrainingImageUri=${registry}/${repository}:${revision}"

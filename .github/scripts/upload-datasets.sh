#!/usr/bin/env bash
# Uploads the files named on stdin (NUL-separated, as changed-datasets.sh writes them) to a
# stage: each datasets/<dataset>/manifest.json first (checked, then copied), then each
# datasets/<dataset>/<file>.csv through `automlops aws upload`, which applies the upload rules
# (names, header checks, the key) and whose arrival starts the run. Anything else is skipped.
#
#   changed-datasets.sh BEFORE AFTER | upload-datasets.sh STAGE
set -euo pipefail

stage=${1:?usage: upload-datasets.sh STAGE < NUL-separated paths}
bucket=$(aws ssm get-parameter --name "/automlops/${stage}/buckets/data" \
  --query Parameter.Value --output text)

manifests=()
csvs=()
while IFS= read -r -d '' path; do
  # Only datasets/<dataset>/<file>: the dataset is the folder right under datasets/.
  rest=${path#datasets/}
  if [[ "${rest}" != */* || "${rest#*/}" == */* ]]; then
    echo "skip ${path}: not datasets/<dataset>/<file>" >&2
    continue
  fi
  case "${path}" in
    */manifest.json) manifests+=("${path}") ;;
    *.csv) csvs+=("${path}") ;;
    *) echo "skip ${path}: neither a manifest nor a CSV" >&2 ;;
  esac
done

# Manifests first: a CSV's arrival is what triggers a run, and the run reads the manifest.
for path in "${manifests[@]}"; do
  dataset=$(basename "$(dirname "${path}")")
  python - "${path}" "${dataset}" <<'PY'
import sys

from automlops.config import Manifest

path, dataset = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    manifest = Manifest.model_validate_json(f.read())
if manifest.dataset != dataset:
    sys.exit(f"{path}: dataset must be {dataset!r}, not {manifest.dataset!r}")
PY
  aws s3 cp "${path}" "s3://${bucket}/data/${dataset}/manifest.json"
done
for path in "${csvs[@]}"; do
  dataset=$(basename "$(dirname "${path}")")
  automlops aws upload "${path}" --dataset "${dataset}" --stage "${stage}"
done
echo "uploaded ${#manifests[@]} manifest(s), ${#csvs[@]} CSV file(s) to ${stage}"

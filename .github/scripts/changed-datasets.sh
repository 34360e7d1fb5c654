#!/usr/bin/env bash
# The files under datasets/ that a push added or changed, NUL-separated on stdout (paths may
# hold spaces or newlines). Compares the push's whole range, BEFORE..AFTER, not just its last
# commit. When BEFORE is all zeros (the branch is new) or its commit cannot be had (a force
# push dropped it), every file under datasets/ at AFTER is listed: uploads are idempotent
# (a run's identity is its content), so listing too much costs a no-op, listing too little
# loses data. With no arguments (a run by hand) every file is listed too.
#
#   changed-datasets.sh [BEFORE AFTER]
set -euo pipefail

folder=datasets
before=${1:-}
after=${2:-HEAD}
zeros=0000000000000000000000000000000000000000

if [[ -n "${before}" && "${before}" != "${zeros}" ]]; then
  if ! git cat-file -e "${before}^{commit}" 2>/dev/null; then
    # A force push's old tip is not in the clone; GitHub still serves it by id for a while.
    git fetch --quiet --no-tags --depth=1 origin "${before}" 2>/dev/null || true
  fi
  if git cat-file -e "${before}^{commit}" 2>/dev/null; then
    # --no-renames: a moved file counts as added at its new path.
    exec git diff -z --name-only --no-renames --diff-filter=AM "${before}" "${after}" -- "${folder}"
  fi
  echo "note: ${before} is not available; listing every file under ${folder}/" >&2
fi
exec git ls-tree -r -z --name-only "${after}" -- "${folder}"

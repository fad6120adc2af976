#!/usr/bin/env bash
# The whole test suite: lint (ruff), types (mypy --strict on gateway/ and drivers/), pytest.
# CHISAN_SLOW=1 runs the long fault-injection and fuzzing suites at full size.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

export PATH="$PWD/.venv/bin:$PATH"
status=0
echo "== ruff"; ruff check . || status=1
ruff format --check --quiet gateway drivers tests benchmarks || { echo "ruff format: files need formatting"; status=1; }
echo "== mypy --strict gateway drivers"; mypy --strict gateway drivers || status=1
echo "== pytest"
python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here"
    rc=1
fi
[ $rc -ne 0 ] && status=$rc
exit $status

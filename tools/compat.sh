#!/usr/bin/env bash
# Compatibility check, run by hand (not in CI): build a venv at the lowest supported versions (pyproject.toml's lower
# bounds, installed with ==) and one at the newest available, install unprior into each with plain `pip install .`,
# and run a fast subset of the suite in each. README "Installing as a library" lists the matrix this gave.
#
#   tools/compat.sh [lowest|newest|both]        (default: both)
#   tools/compat.sh torch VERSION               a fresh venv holding only torch==VERSION (from the registry: a CUDA
#                                               build of a few GB), then plain `pip install .`: fails unless that
#                                               torch is kept; then the subset
#
# Where pip is capped below VERSION (this project's machines: /etc/xdg/pip holds torch<=2.14.1, which would also make
# `pip install .` downgrade a newer torch), run the torch mode with PIP_CONFIG_FILE=/dev/null: it lifts the cap for
# the pip of this script only.
#
# Environment:
#   COMPAT_DIR   where the venvs go (default /tmp/unprior-compat); an existing venv is reused, not rebuilt
#   PY           the Python that makes the venvs (default python3)
#   NEWEST_TORCH what the newest venv holds *before* unprior is installed (default "torch==2.14.1 torchvision==0.29.1":
#                a CUDA build, and torchvision, which the lock leaves out; both lie on this project's machines'
#                disk). `pip install .` must keep it: the script fails if the torch version changes.
#   TORCH_VENV   the torch mode's venv (default $COMPAT_DIR/torch-VERSION); an existing one is reused
#   SUBSET       the pytest arguments (default: below)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${COMPAT_DIR:-/tmp/unprior-compat}
PY=${PY:-python3}
NEWEST_TORCH=${NEWEST_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
DEFAULT_SUBSET="tests/models/test_families.py tests/pairs/test_rules.py tests/eval/test_pope.py
  tests/eval/test_amber.py tests/eval/test_chair.py tests/test_config.py
  tests/train/test_train.py::test_merged_full_and_bad_rows"
SUBSET=${SUBSET:-$DEFAULT_SUBSET}
PIP=(--disable-pip-version-check --quiet)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK"

lower_bounds() {  # pyproject's dependencies with >= turned into ==
  "$PY" - "$ROOT/pyproject.toml" <<'PYEOF'
import sys, tomllib
for dep in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]:
    print(dep.replace(">=", "==").split(",")[0])
PYEOF
}

versions() {
  "$1/bin/python" - <<'PYEOF'
from importlib.metadata import version
names = ["torch", "torchvision", "transformers", "tokenizers", "accelerate", "peft", "datasets", "pyarrow",
         "safetensors", "pillow", "numpy", "huggingface_hub"]
found = []
for n in names:
    try:
        found.append(f"{n} {version(n)}")
    except Exception:
        pass
print(", ".join(found))
PYEOF
}

torch_version() {  # venv
  "$1/bin/python" -c "import importlib.metadata as m; print(m.version('torch'))"
}

run_subset() {  # name [venv]
  local venv=${2:-"$WORK/$1"}
  "$venv/bin/pip" install "${PIP[@]}" "pytest>=9.2.0"
  "$venv/bin/pip" check
  echo "== $1: $(versions "$venv")"
  # From a copy of tests/ outside the checkout, so `unprior` is the installed package, not the source tree.
  local tree="$WORK/$1-tree"
  rm -rf "$tree" && mkdir -p "$tree" && cp -r "$ROOT/tests" "$ROOT/pyproject.toml" "$tree/"
  # shellcheck disable=SC2086
  (cd "$tree" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" $SUBSET)
}

lowest() {
  local venv="$WORK/lowest"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  lower_bounds > "$WORK/lowest-constraints.txt"
  "$venv/bin/pip" install "${PIP[@]}" -c "$WORK/lowest-constraints.txt" -r "$WORK/lowest-constraints.txt"
  "$venv/bin/pip" install "${PIP[@]}" -c "$WORK/lowest-constraints.txt" "$ROOT"
  run_subset lowest
}

newest() {
  local venv="$WORK/newest"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install "${PIP[@]}" $NEWEST_TORCH
  local before after
  before=$(torch_version "$venv")
  "$venv/bin/pip" install "${PIP[@]}" --upgrade --upgrade-strategy only-if-needed "$ROOT[openai,serve]"
  # the rest at their newest releases, torch left as it is
  "$venv/bin/pip" install "${PIP[@]}" --upgrade transformers tokenizers accelerate peft datasets safetensors
  after=$(torch_version "$venv")
  [ "$before" = "$after" ] || { echo "pip install . replaced torch $before with $after" >&2; exit 1; }
  echo "== newest: torch $before kept by pip install ."
  run_subset newest
}

preinstalled() {  # torch version
  local venv=${TORCH_VENV:-"$WORK/torch-$1"} before after
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/pip" install "${PIP[@]}" "torch==$1"
  before=$(torch_version "$venv")
  [ "$before" = "$1" ] || { echo "the venv holds torch $before, not $1" >&2; exit 1; }
  "$venv/bin/pip" install "${PIP[@]}" "$ROOT"  # plain, as a user types it
  after=$(torch_version "$venv")
  [ "$before" = "$after" ] || { echo "pip install . replaced torch $before with $after" >&2; exit 1; }
  "$venv/bin/python" -c "import torch; print('== torch', torch.__version__, 'imports; CUDA available:', torch.cuda.is_available())"
  echo "== torch-$1: torch $before kept by pip install ."
  run_subset "torch-$1" "$venv"
}

case "${1:-both}" in
  lowest) lowest ;;
  newest) newest ;;
  both) lowest; newest ;;
  torch) [ -n "${2:-}" ] || { echo "usage: $0 torch VERSION" >&2; exit 2; }; preinstalled "$2" ;;
  *) echo "usage: $0 [lowest|newest|both] | torch VERSION" >&2; exit 2 ;;
esac

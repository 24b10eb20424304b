#!/usr/bin/env bash
# Opt-in check (`make check-docker-install`): resolve the Dockerfile builder's `pip install`
# command in a scratch venv with `pip install --dry-run`, without Docker and without
# installing anything, then check what it would install (torch 2.13.0, and no CUDA
# packages for TORCH_VARIANT=cpu).
#
#   deploy/check_dockerfile_commands.sh                       # TORCH_VARIANT=cpu
#   TORCH_VARIANT=cu128 deploy/check_dockerfile_commands.sh   # needs download.pytorch.org
#
# Where $WHEELS (default /opt/wheels) holds a torch-2.13.0 wheel (our machines, which reach
# PyPI but no PyTorch index), that folder stands in for the PyTorch index (--find-links).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
WHEELS=${WHEELS:-/opt/wheels}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

"$PYTHON" -m venv "$scratch/venv"
venv_python="$scratch/venv/bin/python"
"$venv_python" - <<'EOF'
import sys
from importlib.metadata import version
major, minor = (int(x) for x in version("pip").split(".")[:2])
if (major, minor) < (22, 2):
    sys.exit(f"pip {major}.{minor} has no --dry-run/--report; need pip >= 22.2")
EOF

local_torch=""
if [[ "$TORCH_VARIANT" == cpu ]] && compgen -G "$WHEELS/torch-2.13.0*.whl" > /dev/null; then
    local_torch=$WHEELS
fi

mapfile -t commands < <("$PYTHON" -m deploy.dockerfile pip-install \
    --build-arg "TORCH_VARIANT=$TORCH_VARIANT")
if [[ ${#commands[@]} -eq 0 ]]; then
    echo "no 'pip install' found in the Dockerfile's builder stage" >&2
    exit 1
fi

for line in "${commands[@]}"; do
    eval "words=($line)"  # shlex.join output: safe to split with the shell's own rules
    [[ ${words[0]} == pip ]] || { echo "unexpected command: $line" >&2; exit 1; }
    args=()
    for ((i = 2; i < ${#words[@]}; i++)); do
        word=${words[i]}
        if [[ -n $local_torch && $word == --extra-index-url \
              && ${words[i+1]} == https://download.pytorch.org/* ]]; then
            args+=(--find-links "$local_torch")
            i=$((i + 1))
        else
            args+=("$word")
        fi
    done
    echo "Dockerfile: $line"
    echo "dry run:    pip install --dry-run ${args[*]}"
    "$venv_python" -m pip install --quiet --dry-run --ignore-installed \
        --report "$scratch/report.json" "${args[@]}"
    "$venv_python" - "$scratch/report.json" "$TORCH_VARIANT" <<'EOF'
import json
import sys

report, variant = json.load(open(sys.argv[1])), sys.argv[2]
found = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
torch = found.get("torch")
if torch is None or torch.split("+")[0] != "2.13.0":
    sys.exit(f"torch 2.13.0 not in the resolution: {torch}")
cuda = sorted(n for n in found if n.startswith("nvidia-"))
if variant == "cpu" and cuda:
    sys.exit(f"TORCH_VARIANT=cpu would install CUDA packages: {cuda}")
print(f"resolved {len(found)} packages: torch {torch}, modelzoo {found.get('modelzoo')}, "
      f"{len(cuda)} nvidia-* packages")
EOF
done
echo "OK: the Dockerfile's pip install resolves (TORCH_VARIANT=$TORCH_VARIANT)"

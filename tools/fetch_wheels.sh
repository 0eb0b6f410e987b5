#!/usr/bin/env bash
# Downloads into wheels/ what an offline accelerator host with only jax/flax/optax/orbax/numpy
# (and maybe torch) lacks for tools/accelerator_check.py: robust_jax's remaining core
# packages and the test runner. Run it on a machine with registry access, then copy wheels/ along
# with the repository; the check installs from it with `pip install --no-index` only what is
# missing there.
#
#     bash tools/fetch_wheels.sh [PYTHON_VERSION [PLATFORM...]]
#         PYTHON_VERSION: the host's Python, default 3.12; PLATFORMs: pip platform tags the host
#         accepts, default the x86-64 manylinux tags below (pip matches a tag exactly; most
#         packages here are pure Python, but hypothesis ships compiled wheels).
#
# Versions: the ones tested together, constraints-latest.txt (constraints.txt for Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
platforms=("${@:2}")
((${#platforms[@]})) ||
  platforms=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64 manylinux_2_34_x86_64)
constraints=constraints-latest.txt
[[ $python_version == 3.11 ]] && constraints=constraints.txt
# robust_jax's core not pulled in by jax/flax/optax/orbax, then pytest, pytest-xdist, hypothesis
# and their own requirements; absl-py, chex and toolz come with optax but cost nothing to carry.
packages=(ml-collections tqdm tensorboardX absl-py chex toolz
          pytest iniconfig pluggy packaging pytest-xdist execnet hypothesis attrs sortedcontainers)
mkdir -p wheels
PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version "$python_version" --implementation cp "${platforms[@]/#/--platform=}" \
  -c "$constraints" -d wheels "${packages[@]}"
echo "fetched for Python $python_version (${platforms[*]}); wheels/ holds:"
ls wheels

#!/usr/bin/env bash
# Regenerates constraints-latest.txt: the newest versions pip resolves for Python 3.12 (pyenv) when
# installing this project's test setup without constraints; .ci/run's second leg tests that set.
#
#     bash tools/update_latest_constraints.sh      # then run .ci/run and commit the file
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
versions=$(pyenv root)/versions
python312=$(ls -d "$versions"/3.12.*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$python312" ]]; then
  echo "error: no Python 3.12 under $versions; run: pyenv install 3.12" >&2
  exit 1
fi
venv=$(mktemp -d)/venv
"$python312" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[test]"
{
  version=$("$venv/bin/python" -c 'import platform; print(platform.python_version())')
  echo "# Newest versions pip resolved for Python $version on $(date -u +%F) (pip install -e"
  echo '# ".[test]" without constraints), tested together by the second leg of .ci/run. Regenerate:'
  echo '#     bash tools/update_latest_constraints.sh'
  echo '# Install with: pip install -c constraints-latest.txt -e ".[test]"'
  "$venv/bin/python" -m pip freeze --exclude-editable | sort -f
} > constraints-latest.txt
rm -rf "$(dirname "$venv")"
echo "wrote constraints-latest.txt ($(grep -vc '^#' constraints-latest.txt) packages)"

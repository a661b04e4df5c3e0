# Sourced by the project's scripts: puts a supported Node.js (24 LTS, the version in .node-version)
# first on PATH. The machine's own node is used when it is already a 24.x of at least that LTS line;
# otherwise the official binary, which the npm registry ships as the package node-<platform>-<arch>,
# is installed once into .tools/node (git-ignored). npm itself then runs on that node too.
# Needs some node and npm on the machine to bootstrap from (Node 20 from Debian's packages will do).

node_runtime_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
node_runtime_version=$(tr -d ' \n' <"$node_runtime_root/.node-version")

node_is_supported() {
  # package.json's engines: ^24.11.0 (24.11 is the first LTS release of the 24 line)
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a === 24 && b >= 11 ? 0 : 1)' 2>/dev/null
}

use_supported_node() {
  if command -v node >/dev/null && node_is_supported node; then return 0; fi
  command -v npm >/dev/null || { echo "node-runtime: neither Node.js 24 nor npm is installed (apt-get install nodejs npm)" >&2; return 1; }
  local platform
  platform=$(node -p 'process.platform + "-" + process.arch' 2>/dev/null) || { echo "node-runtime: no node to bootstrap from" >&2; return 1; }
  local prefix=$node_runtime_root/.tools/node
  local bin=$prefix/node_modules/node-$platform/bin
  if [ ! -x "$bin/node" ] || [ "$("$bin/node" -v)" != "v$node_runtime_version" ]; then
    echo "node-runtime: installing Node.js $node_runtime_version (npm package node-$platform) into .tools/node"
    npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-$platform@$node_runtime_version" >&2 \
      || { echo "node-runtime: could not install node-$platform@$node_runtime_version from the npm registry" >&2; return 1; }
  fi
  node_is_supported "$bin/node" || { echo "node-runtime: $bin/node is not a supported Node.js ($("$bin/node" -v))" >&2; return 1; }
  export PATH="$bin:$PATH"
}

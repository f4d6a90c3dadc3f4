#!/usr/bin/env bash
# Installs what a fresh machine lacks for owlet, then the workspace. Idempotent.
#  - pnpm 12.4.2 (corepack is not used)
#  - Debian's chromium (its SwiftShader Vulkan ICD lets WebGPU run on a CPU) and the Vulkan loader
#  - the workspace dependencies from the lockfile
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "12.4.2" ]; then
  echo "setup: installing pnpm 12.4.2"
  npm i -g pnpm@12.4.2 >/dev/null
fi

need_apt=()
[ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || need_apt+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need_apt+=(libvulkan1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} (Debian) for WebGPU on SwiftShader"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: WebGPU tests need Debian's ${need_apt[*]}: run 'sudo apt-get install -y ${need_apt[*]}'" >&2
  fi
fi

pnpm install --frozen-lockfile

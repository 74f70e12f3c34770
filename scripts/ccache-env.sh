# Sourced by build.sh and sanitize.sh: compile through ccache when it is there.
# The base dir and no-hash-dir settings let every clone of the repo (another
# folder, a CI checkout) share one cache, so only changed files are recompiled.
CCACHE_ARGS=()
if command -v ccache > /dev/null && [ "${BLOCKLAB_CCACHE:-1}" != 0 ]; then
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  CCACHE_ARGS=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

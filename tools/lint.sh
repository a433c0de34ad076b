#!/usr/bin/env bash
# House-rule checks (STYLE.md §2, §5): no blocking calls or unsafe libc in src/, and module
# includes point one way only. Prints one line per check; exits non-zero if any fails.
set -u
cd "$(dirname "$0")/.."
fail=0

check() { # name, command...
  local name=$1; shift
  local out
  out=$("$@" 2>&1)
  if [ -n "$out" ]; then
    echo "lint $name: FAILED"; echo "$out" | sed 's/^/  /'; fail=1
  else
    echo "lint $name: ok"
  fi
}

# Blocking calls must never run on the loop. Migrations and one-shot tools use the async pool too.
banned_blocking='\b(PQexec|PQexecParams|PQexecPrepared|PQconnectdb|PQconnectdbParams|PQsetdbLogin|PQprepare|PQgetCancel|PQcancel|PQreset|redisCommand|redisConnect[A-Za-z]*|curl_easy_perform|getaddrinfo|gethostbyname|sleep|usleep|nanosleep)\s*\('
code_grep() { # pattern: matches in src/ outside comment lines
  grep -rnE "$1" src/ | grep -vE '^[^:]+:[0-9]+:\s*(/\*|\*)'
}
check blocking-calls code_grep "$banned_blocking"
# Unsafe libc (curl checksrc idea).
check unsafe-libc code_grep '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|strtok_r)\s*\(' src/
# Every SQL parameter goes through libpq parameters: no format strings in query text.
check sql-format code_grep 'PQsendQuery(Params)?\([^,]+,\s*[a-z_]*printf'

# Include direction: a module may include only modules below it (ARCHITECTURE.md §3).
include_dir() {
  declare -A allowed=(
    [core]="core json config"
    [obs]="core json config obs"
    [net]="core json config obs net"
    [http]="core json config obs net http"
    [db]="core json config obs net db"
    [sse]="core json config obs net http sse db"
    [bus]="core json config obs net bus db"
    [auth]="core json config obs net http db auth"
    [ai]="core json config obs net http db ai"
    [api]="core json config obs net http db sse bus auth ai api"
  )
  for dir in src/*/; do
    local mod; mod=$(basename "$dir")
    [ -n "${allowed[$mod]+x}" ] || { echo "unknown module $mod"; continue; }
    grep -rhoE '#include "engram/[a-z_]+\.h"' "$dir" | sed -E 's/.*engram\/([a-z_]+)\.h.*/\1/' | sort -u |
      while read -r inc; do
        case " ${allowed[$mod]} " in *" $inc "*) ;; *) echo "src/$mod includes engram/$inc.h (upward)";; esac
      done
  done
}
check include-direction include_dir

# Formatting (.clang-format): every C file in the tree matches clang-format's output.
format_check() {
  command -v clang-format >/dev/null || { echo "clang-format not installed"; return; }
  git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'tests/fuzz/*.c' \
    'bench/*.c' | while read -r f; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || echo "$f (run clang-format -i $f)"
  done
}
check clang-format format_check

# The load tools in bench/ are C too: they build warning-free (-Werror, their Makefiles), and the
# SSE parser they share passes its test. Outside meson (STYLE.md: bench/ stays out of meson test).
bench_tools() {
  command -v make >/dev/null || { echo "make not installed"; return; }
  local d
  for d in bench/api bench/sse; do
    make -s -C "$d" >/dev/null 2>&1 || make -C "$d" 2>&1 | tail -n 20
  done
  make -s -C bench/sse check >/dev/null 2>&1 || echo "bench/sse: make check failed"
}
check bench-tools bench_tools

exit $fail

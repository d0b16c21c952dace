#!/bin/bash
# `unsafe` may appear only under src/platform/, and every unsafe block there
# needs a `// SAFETY:` comment (clippy checks the comments; this checks where).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(grep -rnE '\bunsafe\b' src --include=*.rs | grep -v '^src/platform/' |
      grep -vE '^\S+:\s*(//|//!|///)' | grep -vE 'forbid\(unsafe_code\)|unsafe_op_in_unsafe_fn' || true)
if [ -n "$bad" ]; then
    echo "unsafe outside src/platform/:"; echo "$bad"; exit 1
fi
missing=$(grep -rLE 'forbid\(unsafe_code\)' src --include=*.rs | grep -vE '^src/(platform/|main\.rs|lib\.rs)' || true)
if [ -n "$missing" ]; then
    echo "modules outside src/platform/ without #![forbid(unsafe_code)]:"; echo "$missing"; exit 1
fi
echo "check-unsafe: unsafe only in src/platform/"

#!/usr/bin/env bash
# Seeds the fuzz corpora from the captured client frames in
# crates/wire/tests/fixtures/**/*.bin (corpus/ is gitignored).
#   corpus/decode/        every fixture frame as it is, plus all of them back
#                         to back in one stream (several frames per input)
#   corpus/command_view/  the kind-0 body of every OP_MSG fixture and the
#                         command document of every OP_QUERY fixture
# Compressed fixtures are seeded as they are (decode decompresses them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="$here/../tests/fixtures"
decode="$here/corpus/decode"
cview="$here/corpus/command_view"
mkdir -p "$decode" "$cview"

n=0
while IFS= read -r -d '' f; do
    rel="${f#"$fixtures"/}"
    cp "$f" "$decode/${rel//\//_}"
    n=$((n + 1))
done < <(find "$fixtures" -name '*.bin' -type f -print0 | sort -z)
find "$fixtures" -name '*.bin' -type f -print0 | sort -z | xargs -0 cat > "$decode/all-fixtures-stream.bin"
echo "decode: $n fixture frames + 1 stream -> $decode"

python3 - "$fixtures" "$cview" <<'PY'
import pathlib, struct, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
n = 0
for f in sorted(src.rglob("*.bin")):
    b = f.read_bytes()
    if len(b) < 21:
        continue
    op = struct.unpack_from("<i", b, 12)[0]
    doc = None
    if op == 2013:  # OP_MSG: find the kind-0 section
        at, end = 20, len(b) - (4 if struct.unpack_from("<I", b, 16)[0] & 1 else 0)
        while at < end:
            kind = b[at]; at += 1
            size = struct.unpack_from("<i", b, at)[0]
            if kind == 0:
                doc = b[at:at + size]
                break
            at += size
    elif op == 2004:  # OP_QUERY: skip flags, namespace, skip/return
        at = b.index(0, 20) + 1 + 8
        size = struct.unpack_from("<i", b, at)[0]
        doc = b[at:at + size]
    if doc:
        name = str(f.relative_to(src)).replace("/", "_")
        (dst / name).write_bytes(doc)
        n += 1
print(f"command_view: {n} command documents -> {dst}")
PY

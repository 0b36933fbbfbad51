#!/bin/sh
# Regenerates the binary fixtures of archive_test.go (Go cannot write 7z or
# bzip2). Needs 7-Zip (Debian: apt-get install 7zip, which provides 7zz) and
# bzip2. AES salts/IVs are random, so the bytes differ on every run; the
# tests only rely on the names, contents and passwords below.
#
#   plain.7z          solid LZMA2: hello.txt, dir/ (directory), dir/nested.txt, empty.txt
#   enc.7z            solid LZMA2 + AES-256, password "infected", headers in clear:
#                     secret1.txt, secret2.txt
#   enc_hdr.7z        LZMA2 + AES-256 with encrypted headers (-mhe=on), password "infected":
#                     secret.txt
#   enc_copy.7z       Copy method (-mx0) + AES-256, non-solid, password "infected":
#                     a.txt, b.txt (a wrong password yields garbage, not a decode error)
#   hello.txt.bz2     bzip2 of "hello bzip2\n"
#
# Not regenerated here: enc_blocks.7z, 30 files fNN.txt (NN = 00..29) each
# holding "file NN " (with NN unpadded, e.g. "file 7 ") repeated 500*NN+1
# times, made with
#     7zz a -mx5 -ms=4k -pinfected enc_blocks.7z .
# and picked among several runs (the AES salt/IV are random) because
# decoding its first block with the empty password ends cleanly after 0
# bytes instead of failing: the regression input for telling "encrypted"
# from "corrupt" (Test7zEncryptedBlocks checks the property still holds).
set -eu
cd "$(dirname "$0")"
SEVENZ=$(command -v 7zz || command -v 7z)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/p/dir" "$work/e" "$work/h" "$work/c"
printf 'hello from 7z\n' > "$work/p/hello.txt"
printf 'nested file\n' > "$work/p/dir/nested.txt"
: > "$work/p/empty.txt"
printf 'first secret\n' > "$work/e/secret1.txt"
printf 'second secret, a bit longer than the first one\n' > "$work/e/secret2.txt"
printf 'header-encrypted secret\n' > "$work/h/secret.txt"
printf 'copy method A\n' > "$work/c/a.txt"
printf 'copy method B\n' > "$work/c/b.txt"
find "$work" -exec touch -d '2024-01-02 03:04:05Z' {} +
rm -f plain.7z enc.7z enc_hdr.7z enc_copy.7z hello.txt.bz2
(cd "$work/p" && "$SEVENZ" a -bd -mx9 -ms=on "$OLDPWD/plain.7z" hello.txt dir empty.txt >/dev/null)
(cd "$work/e" && "$SEVENZ" a -bd -mx9 -ms=on -pinfected -mhe=off "$OLDPWD/enc.7z" secret1.txt secret2.txt >/dev/null)
(cd "$work/h" && "$SEVENZ" a -bd -mx9 -pinfected -mhe=on "$OLDPWD/enc_hdr.7z" secret.txt >/dev/null)
(cd "$work/c" && "$SEVENZ" a -bd -mx0 -ms=off -pinfected -mhe=off "$OLDPWD/enc_copy.7z" a.txt b.txt >/dev/null)
printf 'hello bzip2\n' | bzip2 -9 > hello.txt.bz2

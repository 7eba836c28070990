#!/usr/bin/env bash
# Runs a command that must fail cleanly: exit status 1 (not a crash or a signal) and an
# "error: ..." line on stderr matching the regular expression $1.
# usage: expect_error.sh REGEX COMMAND [ARGS...]
set -u
regex=$1
shift
out=$("$@" 2>&1 >/dev/null)
rc=$?
echo "$out"
if [ "$rc" -ne 1 ]; then echo "expected exit status 1, got $rc"; exit 1; fi
if ! grep -Eq "^error: .*$regex" <<<"$out"; then echo "no error line matching '$regex'"; exit 1; fi

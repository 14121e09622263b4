#!/bin/bash
# Every long flag each subcommand accepts (from its --help) has an entry in
# man/vshare.1, written as \-\-flag (groff's hyphen). Prints the missing ones.
set -u
vshare=$1
man=$2
missing=0
for sub in create mount serve stats status ctl umount; do
  for flag in $("$vshare" "$sub" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    [ "$flag" = --mountpoint ] || [ "$flag" = --image ] || [ "$flag" = --command ] && continue
    escaped=$(sed 's/-/\\\\-/g' <<<"$flag")
    if ! grep -q -- "$escaped" "$man"; then
      echo "vshare $sub $flag: not in $man"
      missing=$((missing + 1))
    fi
  done
done
echo "$missing flags missing from the man page"
[ "$missing" = 0 ]

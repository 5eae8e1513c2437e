#!/bin/sh
# mmdebstrap customize hook of a pinned run (see lock.py): every locked
# package was named on apt's command line, so apt marked them all manually
# installed. Mark as automatically installed what an unpinned run would have:
# what the spec did not ask for ($2/requested.txt), was not installed with the
# essential set ($2/essential.txt), and is not of priority required or
# important (those variants install them by name).
set -eu
root=$1 work=$2
chroot "$root" dpkg-query -W -f='${Package} ${Priority}\n' \
    | awk '$2 != "required" && $2 != "important" { print $1 }' | sort >"$work/optional.txt"
sort "$work/essential.txt" "$work/requested.txt" | uniq >"$work/manual.txt"
comm -23 "$work/optional.txt" "$work/manual.txt" >"$work/auto.txt"
if [ -s "$work/auto.txt" ]; then
    xargs chroot "$root" apt-mark auto <"$work/auto.txt" >/dev/null
fi

#!/bin/sh
# Make the character-level text corpora available: Debian's bible-kjv (the `bible` program that
# prints the King James text the kjv dataset is cut from) and fortunes (the fortunes dataset).
# Installs what is missing only when running as root with apt-get; otherwise, or when apt
# fails, it prints a line and exits 0 so the caller never fails here. The datasets themselves
# then say what is missing and how to get it.
missing=""
command -v bible >/dev/null 2>&1 || missing=" bible-kjv"
# art is shipped by fortunes itself (fortunes-min has only the file named fortunes)
[ -f /usr/share/games/fortunes/art ] || missing="$missing fortunes"
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian package(s):$missing ..."
  # shellcheck disable=SC2086  # $missing is a list of package names
  (apt-get update -qq && apt-get install -y -qq $missing >/dev/null) \
    || echo "apt could not install$missing; the text datasets that need them stay unavailable"
else
  echo "not installed:$missing (installing needs root and apt-get): apt-get install$missing"
fi
exit 0

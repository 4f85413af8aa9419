#!/bin/sh
# Headless Chromium renders the study reports in tests/studies/test_report_render.py. Install
# Debian's package when apt can; otherwise that one test skips and says why.
if [ -x /usr/bin/chromium ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian package chromium (for the report-rendering test) ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
     apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
    || echo "apt could not install chromium; the report-rendering test will be skipped"
else
  echo "no /usr/bin/chromium and no apt as root; the report-rendering test will be skipped"
fi

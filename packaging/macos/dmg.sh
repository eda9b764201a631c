#!/usr/bin/env bash
# Make pollama-<version>-macos-<arch>.dmg from dist/pollama.app (packaging/build.py makes it), with hdiutil.
#
#   bash packaging/macos/dmg.sh [dist/pollama.app] [dist]
#
# The image holds pollama.app and a link to /Applications to drag it onto.
# Signing and notarization happen when their variables are set (README: Signing):
#   MACOS_SIGN_IDENTITY   "Developer ID Application: NAME (TEAMID)", in the keychain: signs the app and the image
#   APPLE_ID, APPLE_TEAM_ID, APPLE_APP_PASSWORD   an app-specific password: notarizes the image and staples the ticket
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
app="${1:-${root}/dist/pollama.app}"
out="${2:-${root}/dist}"
version="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "${root}/pyproject.toml")"
arch="$(uname -m)"
dmg="${out}/pollama-${version}-macos-${arch}.dmg"

if [ ! -d "${app}/Contents/MacOS" ]; then
  echo "dmg.sh: ${app} is not an app bundle; build it with packaging/build.py" >&2
  exit 1
fi

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  # Inside out: every library and executable, then the app, with the hardened runtime notarization requires.
  find "${app}/Contents" -type f \( -name '*.dylib' -o -name '*.so' -o -perm -u+x \) -print0 |
    xargs -0 codesign --force --timestamp --options runtime --sign "${MACOS_SIGN_IDENTITY}"
  codesign --force --timestamp --options runtime \
    --entitlements "${root}/packaging/macos/entitlements.plist" --sign "${MACOS_SIGN_IDENTITY}" "${app}"
  codesign --verify --deep --strict "${app}"
fi

stage="$(mktemp -d)"
trap 'rm -rf "${stage}"' EXIT
cp -R "${app}" "${stage}/"
ln -s /Applications "${stage}/Applications"
mkdir -p "${out}"
rm -f "${dmg}"
hdiutil create -volname "pollama ${version}" -srcfolder "${stage}" -fs HFS+ -format UDZO -ov "${dmg}"

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "${MACOS_SIGN_IDENTITY}" "${dmg}"
fi
if [ -n "${APPLE_ID:-}" ] && [ -n "${APPLE_TEAM_ID:-}" ] && [ -n "${APPLE_APP_PASSWORD:-}" ]; then
  xcrun notarytool submit "${dmg}" --apple-id "${APPLE_ID}" --team-id "${APPLE_TEAM_ID}" \
    --password "${APPLE_APP_PASSWORD}" --wait
  xcrun stapler staple "${dmg}"
fi
hdiutil verify "${dmg}"
echo "${dmg}"

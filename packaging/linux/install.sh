#!/bin/sh
# Install (or, with --uninstall, remove) the pollama bundle this script sits beside.
#
#   ./install.sh                      for this user: ~/.local/opt/pollama, ~/.local/bin/pollama
#   sudo ./install.sh --prefix /usr/local     for everyone
#   ./install.sh --uninstall [--prefix ...]   removes exactly what the install put there
#
# Also adds the desktop entry and icon under PREFIX/share (XDG data folders), so the
# tray app is in the desktop's application menu. Launch at login is the app's own
# setting (Settings > Launch at login).
set -eu

prefix="${HOME}/.local"
action=install
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "$0")" && pwd)"
app="${prefix}/opt/pollama"
bin="${prefix}/bin/pollama"
desktop="${prefix}/share/applications/pollama.desktop"
icon="${prefix}/share/icons/hicolor/scalable/apps/pollama.svg"

refresh_menus() {
  if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "${prefix}/share/applications" 2>/dev/null || true
  fi
}

if [ "$action" = uninstall ]; then
  rm -rf "$app"
  rm -f "$bin" "$desktop" "$icon"
  refresh_menus
  echo "pollama removed from ${prefix} (models in ~/.ollama/models are kept)"
  exit 0
fi

if [ ! -x "${here}/pollama/pollama" ]; then
  echo "install.sh: ${here}/pollama/pollama is missing; run this script from the unpacked archive" >&2
  exit 1
fi
rm -rf "$app"
mkdir -p "${prefix}/opt" "${prefix}/bin" "$(dirname "$desktop")" "$(dirname "$icon")"
cp -R "${here}/pollama" "$app"
ln -sf "${app}/pollama" "$bin"
sed "s|^Exec=pollama|Exec=${app}/pollama|" "${here}/share/pollama.desktop" > "$desktop"
cp "${here}/share/pollama.svg" "$icon"
refresh_menus
echo "pollama installed in ${app}; run it as ${bin}"
case ":${PATH}:" in
  *":${prefix}/bin:"*) ;;
  *) echo "note: ${prefix}/bin is not on PATH" ;;
esac

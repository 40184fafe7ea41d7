# Sourced by scripts/demo.sh and scripts/test.sh (POSIX sh, from the repository root): make
# sure "$VENV" is a working virtual environment, and make or remake it when it is not.
#
#   VENV    the directory, default .venv
#   PYTHON  the interpreter that makes it, default python3. When set, a venv made by another
#           Python is remade with this one (CI runs the suite under two interpreters).
#
# A venv is remade when it is half-made: `python3 -m venv` without Debian's python3-venv
# leaves bin/python but no pip behind, and a Python upgrade leaves bin/python dangling.

VENV=${VENV:-.venv}
_venv_python=${PYTHON:-python3}

# The interpreter's identity: its version and the installation it belongs to.
_venv_identity='import sys; print(sys.version.split()[0], sys.base_prefix)'

if [ -e "$VENV" ] || [ -L "$VENV" ]; then
    if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1
    then
        echo "$VENV is half-made (no working python or pip in it); making it again"
        rm -rf "$VENV"
    elif [ -n "${PYTHON:-}" ] && [ "$("$VENV/bin/python" -c "$_venv_identity")" != \
            "$("$_venv_python" -c "$_venv_identity" 2>/dev/null)" ]; then
        echo "$VENV was made by another Python than $_venv_python; making it again"
        rm -rf "$VENV"
    fi
fi

if ! [ -e "$VENV" ]; then
    if ! "$_venv_python" -m venv "$VENV"; then
        rm -rf "$VENV"
        echo "$_venv_python could not make a virtual environment; on Debian, Ubuntu and" \
             "Raspberry Pi OS: sudo apt-get install python3-venv" >&2
        exit 1
    fi
fi

# What runs from here on, on one line, e.g. "Python 3.11.2 (/usr/bin/python3) in .venv".
echo "== Python $("$VENV/bin/python" -c \
    'import sys; print(sys.version.split()[0], f"({sys._base_executable})")') in $VENV"

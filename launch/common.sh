# Shared by launch/*: usage errors, quoting, and running (or, with --dry-run, printing) commands.
# Sourced, not run. A script sets DRY_RUN=1 for --dry-run and calls `run CMD ARGS...`.

DRY_RUN=0
OVERRIDES=()  # --config.key=value arguments, passed through to `sorax train`

# The script's header comment (every leading "#" line but #! and #SBATCH) is its usage text.
usage() {
  awk 'NR == 1 || /^#SBATCH/ { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$SCRIPT"
}

# Bad or missing argument: the usage, then one line naming the argument; exit 2.
usage_error() {
  usage >&2
  echo "$(basename "$SCRIPT"): error: $*" >&2
  exit 2
}

# need_value "$@" (in the option loop): the option $1 must be followed by a value.
need_value() {
  if (($# < 2)) || [[ -z $2 || $2 == --* ]]; then usage_error "$1 needs a value"; fi
}

# require VALUE OPTION: a required option was given.
require() {
  [[ -n $1 ]] || usage_error "missing required $2"
}

# q ARGS...: the arguments as one shell-safe line. Like printf %q, but a word with special
# characters is single-quoted rather than backslash-escaped, so printed commands stay readable.
q() {
  local out=() w
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("$w")
    else
      out+=("'${w//\'/\'\\\'\'}'")
    fi
  done
  local IFS=' '
  echo "${out[*]}"
}

# run CMD ARGS...: with --dry-run, print the command (one line); otherwise echo it to stderr
# and run it.
run() {
  if ((DRY_RUN)); then
    q "$@"
  else
    echo "+ $(q "$@")" >&2
    "$@"
  fi
}

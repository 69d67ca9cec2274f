# Reading the system's apt sources, so that .ci/run adds bookworm-backports from whatever archive (or mirror)
# the machine already uses instead of naming one. Sourced by .ci/run; test/ci-apt-sources.test.ts runs these
# functions on sample files. Plain POSIX awk (Debian's default is mawk).

# The source files apt reads under ROOT (default /): sources.list, sources.list.d/*.list and *.sources.
apt_source_files() {
  local root=${1:-} f
  for f in "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*.list "$root"/etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && printf '%s\n' "$f"
  done
  return 0
}

# apt_uri_for_suite SUITE FILE…: prints the first URI of the first enabled binary ('deb') source that serves
# SUITE exactly (bookworm, not bookworm-security), reading one-line `deb [opts] URI SUITE COMPONENTS…` entries
# and deb822 paragraphs (Types/URIs/Suites/Enabled). Fails when no source serves it.
apt_uri_for_suite() {
  local suite=$1
  shift
  [ $# -gt 0 ] || return 1
  awk -v suite="$suite" '
    function serves(list) { gsub(/[ \t]+/, " ", list); return index(" " list " ", " " suite " ") > 0 }
    function flush(   u) {
      if (!found && uris != "" && enabled != "no" && index(" " types " ", " deb ") > 0 && serves(suites)) {
        split(uris, u, /[ \t]+/)
        print u[1]
        found = 1
      }
      types = ""; uris = ""; suites = ""; enabled = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*#/) next                     # a comment line
      if ($0 ~ /^[ \t]*$/) { flush(); next }         # the blank line between paragraphs
      if ($0 ~ /^[ \t]/) next                        # a continuation line (a multi-line Signed-By)
      colon = index($0, ":")
      if (colon == 0) next
      name = tolower(substr($0, 1, colon - 1))
      value = substr($0, colon + 1)
      gsub(/^[ \t]+|[ \t]+$/, "", value)
      if (name == "types") types = value
      else if (name == "uris") uris = value
      else if (name == "suites") suites = value
      else if (name == "enabled") enabled = tolower(value)
      next
    }
    {
      sub(/#.*/, "")
      if ($1 != "deb" || found) next
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }   # [arch=… signed-by=…]
      if (i + 1 <= NF && $(i + 1) == suite) { print $i; found = 1 }
    }
    END { flush(); exit found ? 0 : 1 }
  ' "$@"
}

#!/bin/bash
# Go's own compiler (cmd/compile of the installed Go) built four ways and counted compiling
# packages it was not trained on:
#   plain    go build -pgo=off
#   gopgo    go build -pgo=$GOROOT/src/cmd/compile/default.pgo (the profile Go ships: its
#            compiler building all of std and cmd)
#   gotrain  go build -pgo=<Go's own -cpuprofile of our training run, merged by pgo merge>
#   pgo      pgo apply --backend go with `pgo collect`'s profile of the same training run
# Training: `go build -a` of TRAIN_PKGS with the plain compiler. Measure: the compiles of
# MEASURE_PKGS (not among the training packages or their dependencies), rerun alone with each
# compiler under cachegrind with GOGC=off GOMAXPROCS=1 -c=1 (two runs agree to 0.1%).
#
#   benches/go-compiler.sh [WORKDIR]     (about 15 minutes; needs go, valgrind, target/release/pgo)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
pgo=${PGO:-$repo/target/release/pgo}
work=${1:-$repo/target/bench-go-compiler}
TRAIN_PKGS=${TRAIN_PKGS:-"go/types text/template encoding/json regexp go/printer compress/flate"}
MEASURE_PKGS=${MEASURE_PKGS:-"net/http net"}
rm -rf "$work" && mkdir -p "$work" && cd "$work"
go=$(go env GOROOT)/bin/go   # the real binary: a shim script would hide its frame pointers
variants="plain gopgo gotrain pgo"

# A -toolexec wrapper: run $COMPILE in place of the toolchain's compile; with $PROFDIR, each
# package's compile also writes Go's own CPU profile there; with $CAPDIR, each compile's
# directory and arguments are saved there to rerun it alone.
cat > wrap.sh <<'EOF'
#!/bin/sh
case "$1" in
  */compile) shift
    case " $* " in *" -V=full "*) exec "$COMPILE" "$@";; esac
    if [ -n "$CAPDIR" ]; then printf '%s\n' "$PWD" "$@" > "$CAPDIR/$$.cmd"; fi
    if [ -n "$PROFDIR" ]; then exec "$COMPILE" -cpuprofile="$PROFDIR/$$.prof" "$@"; fi
    exec "$COMPILE" "$@";;
  *) exec "$@";;
esac
EOF
chmod +x wrap.sh
for v in $variants; do mkdir -p "$v"; done   # the binary must be named `compile`

echo "== plain compiler, training runs"
$go build -pgo=off -o plain/compile cmd/compile
mkdir -p goprof cap
COMPILE=$work/plain/compile PROFDIR=$work/goprof $go build -a -toolexec "$work/wrap.sh" $TRAIN_PKGS
"$pgo" merge -o go-own.pb.gz goprof/*.prof
COMPILE=$work/plain/compile "$pgo" collect -o pgo.pb.gz --unwind fp -- \
  $go build -a -toolexec "$work/wrap.sh" $TRAIN_PKGS

echo "== PGO builds"
$go build -pgo="$(go env GOROOT)/src/cmd/compile/default.pgo" -o gopgo/compile cmd/compile
$go build -pgo="$work/go-own.pb.gz" -o gotrain/compile cmd/compile
"$pgo" apply --profile pgo.pb.gz --binary plain/compile --backend go --out-dir "$work/apply" -- \
  $go build -o "$work/pgo/compile" cmd/compile

echo "== measure: compiles of $MEASURE_PKGS"
COMPILE=$work/plain/compile CAPDIR=$work/cap $go build -a -work -toolexec "$work/wrap.sh" $MEASURE_PKGS 2> work.txt
run1() { # run1 COMPILE CMDFILE [WRAPPER...]: rerun a captured compile, writing to a temp file
  local bin=$1 f=$2; shift 2
  local dir; dir=$(head -1 "$f"); local -a args; mapfile -t args < <(tail -n +2 "$f")
  for i in "${!args[@]}"; do
    [ "${args[$i]}" = "-o" ] && args[i+1]=$work/out.$BASHPID.a
    case "${args[$i]}" in -c=*) args[i]=-c=1 ;; esac
  done
  (cd "$dir" && "$@" "$bin" "${args[@]}")
}
printf '| package | %s |\n|---|---:|---:|---:|---:|\n' "${variants// / | }" > counts.md
for p in $MEASURE_PKGS; do
  f=
  for c in cap/*.cmd; do
    if awk -v p="$p" 'prev == "-p" && $0 == p { found = 1 } { prev = $0 } END { exit !found }' "$c"; then
      f=$c && break
    fi
  done
  [ -n "$f" ] || { echo "no compile of $p was captured" >&2; exit 1; }
  row="| $p |"
  for v in $variants; do
    GOGC=off GOMAXPROCS=1 run1 "$work/$v/compile" "$f" valgrind --tool=cachegrind --cache-sim=no \
      --branch-sim=yes --cachegrind-out-file="$work/$v.$(basename "$f" .cmd).cg" 2> "$v.log" > /dev/null
    ir=$(grep -E 'I +refs' "$v.log" | awk '{gsub(",", "", $NF); print $NF}')
    row="$row $(awk -v n="$ir" 'BEGIN { printf "%.3f G", n / 1e9 }') |"
  done
  echo "$row" | tee -a counts.md
done
echo "instructions of each package's compile (GOGC=off GOMAXPROCS=1): $work/counts.md"

#!/bin/bash
# usage: ab-f.sh OUT ROUNDS NAME=BINDIR... : sagactl bench --phases saga, builds alternating, nothing deleted in between
O=$1; R=$2; shift 2
mkdir -p $O; mkdir -p /tmp/bw2; cd /tmp/bw2
for r in $(seq 1 $R); do
  for nb in "$@"; do
    n=${nb%%=*}; b=${nb#*=}
    $b/sagactl bench --phases saga --open-loop-base 1000 --rounds 3 --out $O/$n-$r > $O/$n-$r.log 2>&1
    echo "$n-$r: $(grep -o 'peak [0-9]* completed/s, [0-9.]* CPU' $O/$n-$r.log | tr '\n' ' ')"
  done
done

#!/bin/bash
# usage: ab-out.sh OUT ROUNDS RATE NAME=BINDIR... -- the Payment outage at one fixed rate, builds alternating
O=$1; R=$2; RATE=$3; shift 3
mkdir -p $O
for r in $(seq 1 $R); do
  for nb in "$@"; do
    n=${nb%%=*}; b=${nb#*=}
    $b/sagactl bench --phases saga --seconds 5 --open-loop-base 1600 --outage-rate $RATE --out $O/$n-$r > $O/$n-$r.log 2>&1
    echo "$n-$r: $(grep -o 'Payment down.*' $O/$n-$r.log)"
  done
done

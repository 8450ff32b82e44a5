#!/bin/bash
# usage: [EXTRA="--open-loop-base N"] ab2.sh OUT ROUNDS NAME=BINDIR... -- sagactl bench --phases saga, builds alternating
O=$1; R=$2; shift 2
mkdir -p $O
for r in $(seq 1 $R); do
  for nb in "$@"; do
    n=${nb%%=*}; b=${nb#*=}
    $b/sagactl bench --phases saga $EXTRA --out $O/$n-$r > $O/$n-$r.log 2>&1
    cp $O/$n-$r/report.txt $O/$n-$r.txt; cp $O/$n-$r/report.json $O/$n-$r.json
    echo "$n-$r: $(grep -o 'peak [0-9]* completed/s.*' $O/$n-$r.log)"
  done
done

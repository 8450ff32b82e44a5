#!/bin/bash
# usage: pairs.sh BINDIR OUT ROUNDS -- sagactl bench --phases saga, then --phases chain,
# alternating, ROUNDS times: the peak ratio from runs minutes apart, not one run's two phases.
B=$1; O=$2; R=$3
mkdir -p $O
for r in $(seq 1 $R); do
  for ph in saga chain; do
    $B/sagactl bench --phases $ph --out $O/$ph-$r > $O/$ph-$r.log 2>&1
    cp $O/$ph-$r/report.txt $O/$ph-$r.txt; cp $O/$ph-$r/report.json $O/$ph-$r.json; rm -rf $O/$ph-$r
    echo "$ph-$r $(date +%T): $(grep -o 'peak [0-9]* completed/s.*' $O/$ph-$r.log | head -1)"
  done
done

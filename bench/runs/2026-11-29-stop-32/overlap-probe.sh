. /work/main/bench/runs/2026-11-28-stop-26/system.sh
start_system $1 /tmp/probe-$2
demo 20000 128 $D/demo.log
curl -s http://127.0.0.1:18080/metrics > $D/m-orch.txt
for port in 18081 18082 18083; do curl -s http://127.0.0.1:$port/metrics > $D/m-$port.txt; done
tail -5 $D/demo.log
for f in $D/m-*.txt; do echo "$f: $(grep -E '^sagaflow_(commits_overlapped_total|commit_seconds_(sum|count)|commit_batch_size_(sum|count))' $f | tr '\n' ' ')"; done
stop_system

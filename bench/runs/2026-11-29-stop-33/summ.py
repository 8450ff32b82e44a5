import json, sys
for f in sys.argv[1:]:
    r = json.load(open(f)); s = r['saga']
    rows = [s['peak']] + s.get('openLoop', s.get('open', []))
    out = []
    for row in rows:
        p = row['processes']
        out.append(f"{row['completedPerSec']:5.0f}/s cpu {row['cpuMsPerSaga']:.2f} (orch {p['orchestrator']['cpuMsPerSaga']:.2f} rmq {p['rabbitmq']['cpuMsPerSaga']:.2f} ctx-orch {p['orchestrator']['contextSwitchesPerSaga']:.0f}) p50 {row['latencyMs']['p50']:.1f} p99 {row['latencyMs']['p99']:.1f}")
    print(f.split('/')[-1]); [print('   ', o) for o in out]

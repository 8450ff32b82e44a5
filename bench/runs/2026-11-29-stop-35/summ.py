import json, sys
for f in sys.argv[1:]:
    r = json.load(open(f)); s = r['saga']
    rows = [s['peak']] + s.get('openLoop', s.get('open', []))
    print(f.split('/')[-1])
    for row in rows:
        p = row['processes']
        ctx = sum(v['contextSwitchesPerSaga'] for k, v in p.items() if 'load' not in k)
        per = ' '.join(f"{k[:4]} {v['cpuMsPerSaga']:.2f}/{v['contextSwitchesPerSaga']:.0f}" for k, v in sorted(p.items()) if 'load' not in k)
        print(f"   {row['completedPerSec']:5.0f}/s cpu {row['cpuMsPerSaga']:.2f} ctx {ctx:5.1f} p50 {row['latencyMs']['p50']:6.1f} p99 {row['latencyMs']['p99']:7.1f} | {per}")

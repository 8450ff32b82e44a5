"""Each thread's CPU time and run-queue wait between two snapshots of /proc/<pid>/task/<tid>/schedstat
(where.sh, where25.sh): sched.py FIRST LAST SECONDS SAGAS."""
import sys, collections
def load(f):
    d = {}
    for line in open(f):
        p = line.split()
        if len(p) < 7: continue
        pid, comm, tid, tcomm, run, wait, slices = p[:7]
        d[tid] = (comm, tcomm, int(run), int(wait), int(slices))
    return d
a, b = load(sys.argv[1]), load(sys.argv[2]); secs = float(sys.argv[3]); sagas = float(sys.argv[4])
by = collections.defaultdict(lambda: [0,0,0]); byproc = collections.defaultdict(lambda: [0,0,0])
for tid, v in b.items():
    o = a.get(tid, (v[0], v[1], 0, 0, 0))
    import re
    tname = re.sub(r'[-_]?\d+$', '', v[1])
    k = (v[0], tname)
    for i in range(3): by[k][i] += v[2+i]-o[2+i]; byproc[v[0]][i] += v[2+i]-o[2+i]
print(f'{"process":14s} {"thread":20s} {"run ms/s":>9s} {"runq ms/s":>9s} {"slices/s":>9s} {"runq us/slice":>12s}')
for k, v in sorted(by.items(), key=lambda kv: -kv[1][0]):
    if v[0] < secs*1e6: continue
    print(f'{k[0]:14s} {k[1]:20s} {v[0]/secs/1e6:9.1f} {v[1]/secs/1e6:9.1f} {v[2]/secs:9.0f} {v[1]/max(v[2],1)/1e3:12.1f}')
print()
tot=[0,0,0]
for p, v in byproc.items():
    print(f'{p:14s} run {v[0]/secs/1e6:6.1f} ms/s  runq {v[1]/secs/1e6:6.1f} ms/s  per saga: run {v[0]/sagas/1e6:.3f} ms, runq wait {v[1]/sagas/1e6:.3f} ms, slices {v[2]/sagas:.1f}')
    for i in range(3): tot[i]+=v[i]
print(f'all: run {tot[0]/secs/1e6:.0f} ms/s, runq {tot[1]/secs/1e6:.0f} ms/s')

"""Mean and largest ready and unacked messages per queue, and each program's sampled gauges, from
where.sh's samples.txt: queues.py SAMPLES."""
import collections, re, sys
q = collections.defaultdict(list); prog = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, src, rest = line.split(None, 2)
    name, val = rest.rsplit(None, 1)
    if src == 'broker':
        m = re.search(r'messages_(ready|unacked)\{.*queue="[^"]*saga\.([^"]+)"', name)
        if m and not m.group(2).endswith(('.owner', '.lock')):
            q[(m.group(2), m.group(1))].append(float(val))
    elif 'sum' not in name and 'count' not in name:
        prog[(src, name)].append(float(val))
for k in sorted(q):
    v = q[k]
    print(f'{k[0]:30s} {k[1]:8s} mean {sum(v)/len(v):6.2f} max {max(v):5.0f}')
for k in sorted(prog):
    v = prog[k]
    print(f':{k[0]} {k[1]:45s} mean {sum(v)/len(v):9.2f} max {max(v):7.0f}')

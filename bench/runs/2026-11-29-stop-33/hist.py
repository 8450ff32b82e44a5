"""Per-second counts and means of the histograms and counters between two /metrics dumps:
hist.py FIRST LAST SECONDS."""
import sys, re, collections
def load(f):
    d = {}
    for line in open(f):
        if line.startswith('#') or not line.strip(): continue
        name, val = line.rsplit(None, 1)
        d[name] = float(val)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 1
# histograms: mean from _sum/_count, and p50 from buckets
groups = collections.defaultdict(dict)
for k in b:
    m = re.match(r'(.*)_(sum|count)(\{.*\})?$', k)
    if m:
        groups[(m.group(1), m.group(3) or '')][m.group(2)] = b[k] - a.get(k, 0)
for (name, labels), v in sorted(groups.items()):
    if v.get('count', 0) > 0:
        mean = v['sum'] / v['count']
        shown = f'{mean * 1000:.2f} ms' if 'seconds' in name else f'{mean:.1f}'
        print(f"{name}{labels}: count {v['count']:.0f} ({v['count']/secs:.0f}/s) mean {shown}")
for k in b:
    if k.startswith('sagaflow_') and '_bucket' not in k and not re.search(r'_(sum|count)(\{|$)', k) and 'total' in k:
        dv = b[k]-a.get(k,0)
        if dv: print(f'{k}: +{dv:.0f}')

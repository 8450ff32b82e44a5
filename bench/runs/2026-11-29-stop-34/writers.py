"""Reads `perf script -F comm,tid,event,ip,sym` of probe25.sh's perf.data (writes): sled's log writes
(pwrite64) by who made them, per fdatasync (one per commit), and the sync_file_range calls
(one after each log write, except with sled-stable-after-fdatasync.diff).
usage: perf script -i OUT/perf.data -F comm,tid,event,ip,sym | python3 writers.py"""
import collections
import re
import sys

events = collections.Counter()
writers = collections.Counter()
for sample in sys.stdin.read().split('\n\n'):
    lines = [l for l in sample.strip().split('\n') if l.strip()]
    if not lines:
        continue
    m = re.match(r'\s*(\S+)\s+(\d+)\s+(\S+):', lines[0])
    if not m:
        continue
    comm, _, event = m.groups()
    comm = re.sub(r'\d+', 'N', comm)
    event = event.split(':')[-1].replace('sys_enter_', '')
    events[event] += 1
    if event != 'pwrite64':
        continue
    stack = ' '.join(lines[1:])
    if 'threadpool' in stack:
        who = 'sled-io thread (a sealed buffer its last writer left)'
    elif 'pin_log' in stack:
        who = 'transaction start: the buffer written since the last commit'
    elif 'make_stable' in stack:
        who = 'flush: the transaction\'s own buffer'
    else:
        who = 'other'
    writers[(comm, who)] += 1
commits = events['fdatasync'] or 1
print(f"fdatasync: {events['fdatasync']}, sync_file_range: {events['sync_file_range']}")
for (comm, who), n in writers.most_common():
    print(f"  {n:6d}  {n / commits:5.2f} per commit  {comm:14s} {who}")
total = sum(writers.values())
print(f"  log writes: {total}, {total / commits:.2f} per fdatasync")

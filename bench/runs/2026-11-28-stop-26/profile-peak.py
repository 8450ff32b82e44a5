#!/usr/bin/env python3
"""Shares of a `perf script -F comm,tid,ip,sym` dump (of `perf record --call-graph dwarf`):
the percentage of samples whose stack holds each part of the code. Parts overlap (the relay
calls lapin; a commit runs inside the pipeline), so the column does not sum to 100."""
import sys

stacks, cur = [], []
for line in open(sys.argv[1]):
    if not line.strip():
        if cur:
            stacks.append(cur)
        cur = []
    elif line[0] not in ' \t':
        cur = []
    else:
        parts = line.strip().split(None, 1)
        cur.append(parts[1] if len(parts) > 1 else '?')
if cur:
    stacks.append(cur)
print(f'{len(stacks)} samples')
parts = {
    'group commit (sled transaction, log write)': 'Writes::commit',
    'applying inputs (engine)': 'Engine::apply',
    'relay (outbox read, group, publish)': 'relay::run',
    '  of which the outbox read': 'Outbox::read',
    '  of which decoding outbox messages': 'Message::decode',
    'lapin (IO thread, publish, consume)': 'lapin::',
    'HTTP (hyper; the demo polls each order)': 'hyper::',
    'serde_json': 'serde_json',
    'mimalloc': '_mi_',
    'context switch (finish_task_switch)': 'finish_task_switch',
}
for label, needle in parts.items():
    share = sum(1 for s in stacks if any(needle in f for f in s)) / len(stacks) * 100
    print(f'{label:45s} {share:5.1f} %')

"""Reads a `perf script -F comm,tid,ip,sym` dump of `perf record --call-graph dwarf`.
  stacks.py shares DUMP THREAD|'' NEEDLE...  the share of samples (of one thread name, or all)
                                             whose stack holds each needle
  stacks.py callers DUMP NEEDLE [DEPTH]      what calls the first frame holding NEEDLE"""
import collections
import sys


def samples(path):
    """(thread name, [frames, innermost first]) per sample: a header line, then its frames."""
    text = open(path).read()
    for block in text.split('\n\n'):
        lines = [l for l in block.split('\n') if l.strip()]
        if not lines or lines[0][0] in ' \t':
            continue
        frames = [(l.strip().split(None, 1) + ['?'])[1] for l in lines[1:]]
        yield lines[0].split()[0], frames


def shares(path, thread, needles):
    chosen = [f for t, f in samples(path) if not thread or t == thread]
    print(len(chosen), 'samples', thread)
    for needle in needles:
        n = sum(1 for frames in chosen if any(needle in f for f in frames))
        print(f'{needle:60s} {n / len(chosen) * 100:5.1f} %')


SKIP = ('inlined', 'alloc::', 'core::', '_mi_', 'mi_', '__mem', 'drop_in_place', '<alloc', 'clone')


def callers(path, needle, depth):
    tally, holding, total = collections.Counter(), 0, 0
    for _, frames in samples(path):
        total += 1
        at = next((i for i, f in enumerate(frames) if needle in f), None)
        if at is None:
            continue
        holding += 1
        chain = [g.split('(')[0][:90] for g in frames[at + 1:] if not any(k in g for k in SKIP)]
        tally[' <- '.join(chain[:depth])] += 1
    print(f'{holding} of {total} samples hold {needle!r}')
    for chain, n in tally.most_common(15):
        print(f'{n:5d} {chain}')


if __name__ == '__main__':
    if sys.argv[1] == 'shares':
        shares(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        callers(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 4)

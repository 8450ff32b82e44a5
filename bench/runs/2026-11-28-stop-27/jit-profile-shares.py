# usage: perf script -i perf.data -F comm,tid,ip,sym > script.txt; python3 jit-profile-shares.py
# Shares of a beam.smp perf profile (with the JIT's /tmp/perf-<pid>.map): by thread kind, by
# Erlang module on the stack (inclusive), by what the leaf frame is, and by the system call each
# thread kind is in.
import collections
import re

samples = []  # (thread name, [frames, leaf first])
current = None
for line in open("script.txt"):
    if not line.strip():
        if current:
            samples.append(current)
        current = None
    elif not line[0].isspace():
        current = (line.split()[0], [])
    else:
        parts = line.strip().split(None, 1)
        current[1].append(parts[1] if len(parts) > 1 else "?")
if current:
    samples.append(current)
n = len(samples)


def kind_of(thread):
    return re.sub(r"\d+", "N", thread)


def pct(count):
    return f"{count / n * 100:5.1f}%"


print("samples", n)
print("by thread:")
for k, c in collections.Counter(kind_of(t) for t, _ in samples).most_common(8):
    print(f"  {pct(c)} {k}")

# Erlang frames look like `$module:function/arity`; the generic wrappers say nothing.
generic = {"global", "proc_lib", "erts_beamasm", "gen_server", "gen", "gen_server2"}
inclusive, without_erlang = collections.Counter(), 0
for _, stack in samples:
    modules = {m.group(1) for f in stack if (m := re.match(r"\$([a-z_0-9]+):", f))} - generic
    without_erlang += not modules
    inclusive.update(modules)
print(f"no erlang frame: {without_erlang / n * 100:.1f}%")
print("inclusive by module:")
for k, c in inclusive.most_common(30):
    print(f"  {pct(c)} {k}")

print("leaf kind by thread:")
leaves = collections.Counter()
for thread, stack in samples:
    leaf = stack[0] if stack else "?"
    if leaf.startswith("$"):
        kind = "erlang"
    elif leaf in ("[unknown]", "?") or not re.match(r"^[a-z_]", leaf):
        kind = "unknown(C runtime)"
    else:
        kind = "named C/kernel"
    leaves[(kind_of(thread), kind)] += 1
for k, c in leaves.most_common(12):
    print(f"  {pct(c)} {k}")

# The first of these kernel functions found on a stack names what the thread was doing.
calls = [
    ("fsync", "do_fsync"), ("fdatasync", "__x64_sys_fdatasync"), ("write", "vfs_write"),
    ("writev", "do_writev"), ("pwrite", "__x64_sys_pwrite64"), ("read", "vfs_read"),
    ("epoll_wait", "do_epoll_wait"), ("futex wait", "futex_do_wait"), ("futex wake", "futex_wake"),
    ("sched_yield", "__x64_sys_sched_yield"), ("sendmsg/tcp", "tcp_sendmsg"),
    ("recv/tcp", "tcp_recvmsg"), ("irq/softirq", "common_interrupt"),
    ("page fault", "asm_exc_page_fault"),
]
for thread_kind in ("N_scheduler", "N_dirty_io_sche"):
    by_call, total = collections.Counter(), 0
    for thread, stack in samples:
        if kind_of(thread) != thread_kind:
            continue
        total += 1
        by_call[next((name for name, f in calls if f in stack), "other")] += 1
    print(thread_kind, f"{total / n * 100:.1f}% of broker samples")
    for k, c in by_call.most_common():
        print(f"   {pct(c)} {k}")

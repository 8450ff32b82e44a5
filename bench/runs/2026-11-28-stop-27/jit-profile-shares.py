# usage: perf script -i perf.data -F comm,tid,ip,sym > script.txt; python3 jit-profile-shares.py
# Shares of a beam.smp perf profile: by thread kind, by Erlang module on the stack (inclusive),
# by what the leaf frame is, and by the system call each thread kind is in.
import re,collections,sys
samples=[];cur=None
for line in open('script.txt'):
    if not line.strip():
        if cur: samples.append(cur); cur=None
        continue
    if not line.startswith('\t') and not line.startswith(' '):
        cur=(line.split()[0],[]); continue
    parts=line.strip().split(None,1)
    cur[1].append(parts[1] if len(parts)>1 else '?')
if cur: samples.append(cur)
n=len(samples); print("samples",n)
comm=collections.Counter(re.sub(r'\d+','N',s[0]) for s in samples)
print("by thread:"); [print(f"  {c/n*100:5.1f}% {k}") for k,c in comm.most_common(8)]
kern=sum(1 for s in samples if s[1] and s[1][0].startswith(('finish_task','_raw','__','do_','schedule')) )
incl=collections.Counter(); noerl=0
for _,st in samples:
    mods=set()
    for f in st:
        m=re.match(r'\$([a-z_0-9]+):',f)
        if m and m.group(1) not in ('global','proc_lib','erts_beamasm','gen_server','gen','gen_server2'): mods.add(m.group(1))
    if not mods: noerl+=1
    for m in mods: incl[m]+=1
print(f"no erlang frame: {noerl/n*100:.1f}%")
print("inclusive by module:"); [print(f"  {c/n*100:5.1f}% {k}") for k,c in incl.most_common(30)]
print("leaf kind by thread:")
kk=collections.Counter()
for c,st in samples:
    leaf=st[0] if st else '?'
    kind='erlang' if leaf.startswith('$') else ('unknown(C runtime)' if leaf in('[unknown]','?') or not re.match(r'^[a-z_]',leaf) else 'named C/kernel')
    kk[(re.sub(r'\d+','N',c),kind)]+=1
for k,c in kk.most_common(12): print(f"  {c/n*100:5.1f}% {k}")
cats=[('fsync','do_fsync'),('fdatasync','__x64_sys_fdatasync'),('write','vfs_write'),('writev','do_writev'),('pwrite','__x64_sys_pwrite64'),('read','vfs_read'),('epoll_wait','do_epoll_wait'),('futex wait','futex_do_wait'),('futex wake','futex_wake'),('sched_yield','__x64_sys_sched_yield'),('sendmsg/tcp','tcp_sendmsg'),('recv/tcp','tcp_recvmsg'),('irq/softirq','common_interrupt'),('page fault','asm_exc_page_fault')]
for comm in ('N_scheduler','N_dirty_io_sche'):
    c=collections.Counter(); tot=0
    for cm,st in samples:
        if re.sub(r'\d+','N',cm)!=comm: continue
        tot+=1
        for name,f in cats:
            if f in st: c[name]+=1; break
        else: c['other']+=1
    print(comm, f"{tot/n*100:.1f}% of broker samples")
    for k,v in c.most_common(): print(f"   {v/n*100:5.1f}% {k}")

#!/usr/bin/env python3
"""Turns benches/run's results.jsonl into Markdown tables: every run, then the
ratios issue 9 asks for (means over repetitions, measured in the same run)."""
import json
import sys
from collections import defaultdict

SYSTEMS = ["stampede", "stampede2", "stampede3", "stampede3tls", "floor", "centrifuge", "django"]
WORKLOADS = ["s", "m", "b", "c", "d", "e", "r"]

runs, notes, extra = [], defaultdict(list), defaultdict(dict)
memory, soak = defaultdict(list), []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    label = r.get("label", "")
    if "note" in r:
        # --interleave visits a system once per rep: say each note once.
        if r["note"] not in notes[label]:
            notes[label].append(r["note"])
    elif "memory" in r:
        memory[label.split("/")[0]].append(r["memory"])
    elif "soak" in r:
        soak.append(r["soak"])
    elif "db_reactions" in r:
        for k in ("db_reactions", "reaction_frames", "reactions_accepted", "chat_frames", "messages_stored"):
            if k in r:
                extra[label][k] = r[k]
    elif "redis_cpu" in r:
        extra[label]["redis_cpu"] = r["redis_cpu"]
        extra[label]["wall_s"] = r["wall_s"]
    elif "webhook" in r:
        extra[label]["webhook"] = r["webhook"]
    elif r.get("failed"):
        notes[label].append("the load tool failed (see load.log)")
    else:
        runs.append(r)

if len(sys.argv) > 2:
    print("```")
    print(open(sys.argv[2]).read().strip())
    print("```\n")


def f(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:,.1f}"


if memory:
    print("### Memory return (rounds of idle sockets joining a room with history, then leaving)\n")
    print("| system | round | sockets ok/failed | RSS before MiB | RSS connected MiB | KiB per socket "
          "| RSS after all left MiB | after − idle MiB | descriptors after | rooms, connections after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sys_, rounds in memory.items():
        idle = next((m["rss_kib_after"] for m in rounds if m["round"] == 0), None)
        for m in sorted(rounds, key=lambda m: m["round"]):
            if m["round"] == 0:
                print(f"| {sys_} | idle | – | – | – | – | {mib(m['rss_kib_after'])} | 0 | {m['fds_after']} "
                      f"| {m.get('rooms')}, {m.get('connections')} |")
                continue
            per = (m["rss_kib_connected"] - m["rss_kib_before"]) / max(m["opened"], 1)
            print(f"| {sys_} | {m['round']} | {m['opened']:,}/{m['failed']:,} | {mib(m['rss_kib_before'])} "
                  f"| {mib(m['rss_kib_connected'])} | {per:.1f} | {mib(m['rss_kib_after'])} "
                  f"| {mib(m['rss_kib_after'] - idle) if idle is not None else '–'} | {m['fds_after']} "
                  f"| {m.get('rooms')}, {m.get('connections')} |")
    print()

for s in soak:
    print("### Soak\n")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| sockets ok/failed, closed by the server during the run | {s['sockets']:,}/{s['failed']:,}, "
          f"{s['closed_during_run']:,} | –, 0 |")
    print(f"| churn: minutes with 1% of the sockets leaving and joining | {s['churn_cycles']} | every minute |")
    print(f"| messages in the window, expected deliveries, lost | {s['sent']:,}, {s['expected']:,}, {s['loss']:,} | 0 lost |")
    print(f"| p99 ms | {f(s['p99_ms'])} | – |")
    warm, end = s["rss_kib_warm"], s["rss_kib_end"]
    print(f"| RSS idle / after warm-up / at the end MiB | {mib(s['rss_kib_idle'])} / {mib(warm)} / {mib(end)} "
          f"({(end - warm) / warm * 100:+.1f} %) | end within 5 % of warm-up |")
    print(f"| RSS after every socket left MiB | {mib(s['rss_kib_after_all_left'])} | idle + 20 MiB |")
    print(f"| client sockets idle / after | {s.get('client_sockets_idle')} / {s.get('client_sockets_after')} | equal |")
    print(f"| descriptors idle / after (database pool connections opened under load included) "
          f"| {s['fds_idle']} / {s['fds_after']} | idle + pool |")
    print(f"| rooms, connections, socket-index entries idle / after | {s['rooms_idle']}, {s['connections_idle']}, "
          f"{s['index_entries_idle']} / {s['rooms_after']}, {s['connections_after']}, {s['index_entries_after']} | equal |")
    print()

if not runs:
    sys.exit(0)

print("| system | wl | rep | sockets ok/failed | msg/s | p50 ms | p99 ms | p99.9 ms | max ms | loss % "
      "| deliveries/s | server CPU s | deliveries per CPU-s | RSS KiB per socket (connected − before) | reactions recv/sent per viewer | reaction frames/viewer/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
by = defaultdict(list)
for r in runs:
    sys_, wl, rep = (r["label"].split("/") + ["", "", ""])[:3]
    by[(sys_, wl)].append(r)
    c, ch, sv, re = r["connections"], r["chat"], r["server"], r["reactions"]
    lat = ch["latency"]
    react = "–"
    if r["config"]["reaction_rate"] > 0:
        react = f'{re["received_per_viewer_avg"]:,.0f} / {re["sent"]:,}'
        db = extra.get(r["label"], {}).get("db_reactions")
        if db is not None:
            react += f" (logged {db:,})"
    print(f'| {sys_} | {wl} | {rep} | {c["opened"]:,}/{c["failed"]:,} | {r["config"]["chat_rate"]:g} '
          f'| {f(lat["p50_ms"])} | {f(lat["p99_ms"])} | {f(lat["p999_ms"])} | {f(lat["max_ms"])} '
          f'| {f(ch["loss_pct"], 2)} | {f(ch["deliveries_per_s"], 0)} | {f(sv["cpu_seconds"], 2)} '
          f'| {f(sv["deliveries_per_cpu_s"], 0)} | {f(sv["rss_delta_per_socket_kib"], 1)} | {react} '
          f'| {f(re["frames_per_viewer_per_s"], 2) if r["config"]["reaction_rate"] > 0 else "–"} |')

for label, ns in sorted(notes.items()):
    for n in ns:
        print(f"\n- `{label}`: {n}")


def mean(sys_, wl, key):
    rs = by.get((sys_, wl))
    if not rs:
        return None
    vals = []
    for r in rs:
        v = r
        for k in key.split("."):
            v = v[k]
        vals.append(v)
    return sum(vals) / len(vals)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


print("\n### Ratios (means over repetitions)\n")
print("| figure | stampede | vs floor | vs centrifuge | vs django | target |")
print("|---|---|---|---|---|---|")
for wl in ["s", "m", "b", "c", "d"]:
    key = "server.deliveries_per_cpu_s"
    st = mean("stampede", wl, key)
    if st is None:
        continue
    target = {"m": "≥0.9× floor, ≥1.1× centrifuge", "b": "≥0.9× floor, ≥1.1× centrifuge", "s": "≥40× django"}.get(wl, "")
    print(f"| ({wl}) deliveries per server CPU-s | {f(st, 0)} | {ratio(st, mean('floor', wl, key))} "
          f"| {ratio(st, mean('centrifuge', wl, key))} | {ratio(st, mean('django', wl, key))} | {target} |")
for wl in ["m", "b"]:
    key = "chat.latency.p99_ms"
    st = mean("stampede", wl, key)
    if st is None:
        continue
    print(f"| ({wl}) p99 ms | {f(st)} | {ratio(st, mean('floor', wl, key))} | {ratio(st, mean('centrifuge', wl, key))} "
          f"| {ratio(st, mean('django', wl, key))} | ≤1.25× floor |")
    loss = mean("stampede", wl, "chat.loss")
    print(f"| ({wl}) loss (messages) | {f(loss, 0)} | | | | 0 |")
    for r in by.get(("stampede", wl), []):
        if not r["chat"]["loss"]:
            continue
        x = extra.get(r["label"], {})
        if "chat_frames" in x:
            # Where the missing deliveries went: the node's own counts of the
            # whole run (warm-up included) against what the load tool sent.
            print(f"| ({wl}) {r['label']}: chat sent (whole run) / read by the node / stored / errors "
                  f"| {r['chat']['sent']:,} / {f(x.get('chat_frames'))} / {f(x.get('messages_stored'))} / "
                  f"{sum(r['errors'].values())} | | | | read = stored = sent |")
        m = r["chat"].get("messages")
        if m:
            # Message by message: whole messages missing (never broadcast, or
            # broadcast after the drain) or single viewers missing some; late
            # (after the drain, before the report) or never.
            short = "; ".join(f"{s['at_ms']:,.0f} ms: {s['in_time']:,} in time, {s['late']:,} late of {s['expected']:,}"
                              for s in m["short"])
            print(f"| ({wl}) {r['label']}: messages complete / partial / none in time; deliveries late / never "
                  f"| {m['complete']:,} / {m['partial']:,} / {m['none_in_time']:,}; {m['late_deliveries']:,} / "
                  f"{m['never_delivered']:,} (late max {f(r['chat'].get('late_max_ms'))} ms) | {short} | | | all complete |")
d99, m99 = mean("stampede", "d", "chat.latency.p99_ms"), mean("stampede", "m", "chat.latency.p99_ms")
if d99 is not None:
    print(f"| (d) chat p99 vs (m) | {f(d99)} ms | | | | {ratio(d99, m99)} of (m), target ≤1.25× |")
    fr = mean("stampede", "d", "reactions.frames_per_viewer_per_s")
    print(f"| (d) reaction frames per viewer per s | {f(fr, 2)} | | | | ≤5 |")
    for r in by.get(("stampede", "d"), []):
        x = extra.get(r["label"], {})
        print(f"| (d) {r['label']}: reactions sent / read by the server / taken by the room / logged / errors "
              f"| {r['reactions']['sent']:,} / {f(x.get('reaction_frames'))} / {f(x.get('reactions_accepted'))} / "
              f"{f(x.get('db_reactions'))} / {sum(r['errors'].values())} | | | | logged = sent |")
key = "server.rss_delta_per_socket_kib"
st = mean("stampede", "e", key)
if st is not None:
    print(f"| (e) RSS per socket KiB | {f(st)} | {ratio(st, mean('floor', 'e', key))} "
          f"| {ratio(st, mean('centrifuge', 'e', key))} | {ratio(st, mean('django', 'e', key))} | ≤12 KiB |")
    op = mean("stampede", "e", "connections.opened")
    loss = mean("stampede", "e", "chat.loss_pct")
    print(f"| (e) sockets held by one process, loss % at 1 msg/s | {f(op, 0)}, {f(loss, 2)} % | | | | 19,000+, delivering |")
for wl in ["m", "b"]:
    one = mean("stampede", wl, "server.deliveries_per_cpu_s")
    two = mean("stampede2", wl, "server.deliveries_per_cpu_s")
    if two is not None:
        p1, p2 = mean("stampede", wl, "chat.latency.p99_ms"), mean("stampede2", wl, "chat.latency.p99_ms")
        print(f"| ({wl}) two nodes: deliveries per CPU-s, p99 | {f(two, 0)} ({ratio(two, one)} of one node), "
              f"{f(p2)} ms (one node {f(p1)}) | | | | ≥0.9×, ≤ +10 ms |")

# (r): the relay on one Redis (stampede2) against a Redis Cluster (stampede3).
relay = [(r, extra.get(r["label"], {})) for r in runs if r["label"].split("/")[1:2] == ["r"]]
if relay:
    print("\n### The relay: one Redis against a Redis Cluster (r)\n")
    print("| run | msg/s | loss % | deliveries per node CPU-s | Redis processes: role, CPU % of one core |")
    print("|---|---|---|---|---|")
    share = defaultdict(list)
    for r, x in relay:
        sys_ = r["label"].split("/")[0]
        procs = []
        for p in x.get("redis_cpu", []):
            pct = 100 * p["cpu_s"] / x["wall_s"] if x.get("wall_s") else None
            procs.append(f'{p["port"]} {p["role"]} {f(pct)} %')
            if pct is not None and p["role"] == "master":
                share[sys_].append(pct)
        print(f'| {r["label"]} | {r["config"]["chat_rate"]:g} | {f(r["chat"]["loss_pct"], 2)} '
              f'| {f(r["server"]["deliveries_per_cpu_s"], 0)} | {"; ".join(procs) or "–"} |')
    one = mean("stampede2", "r", "server.deliveries_per_cpu_s")
    three = mean("stampede3", "r", "server.deliveries_per_cpu_s")
    single = sum(share["stampede2"]) / len(share["stampede2"]) if share["stampede2"] else None
    shard = sum(share["stampede3"]) / len(share["stampede3"]) if share["stampede3"] else None
    print(f"\n- node efficiency, cluster vs one Redis: {ratio(three, one)} (target within 10 %)")
    print(f"- CPU of a cluster primary vs the one Redis: {ratio(shard, single)} (target ≈ 0.33×)")
    tls = mean("stampede3tls", "r", "server.deliveries_per_cpu_s")
    if tls is not None:
        tls_shard = sum(share["stampede3tls"]) / len(share["stampede3tls"]) if share["stampede3tls"] else None
        print(f"- node efficiency, cluster over TLS vs plain cluster: {ratio(tls, three)}")
        print(f"- CPU of a primary, over TLS vs plain: {ratio(tls_shard, shard)}")
hooks = by.get(("stampedewh", "w"), [])
if hooks:
    rate = hooks[0]["config"]["chat_rate"]
    print(f"\n### Webhooks (w: one room, {rate:g} msg/s; one endpoint on message.created)\n")
    print("| rep | chat p99 without | chat p99 with | ratio (target ≤1.1×) | events delivered | delivered/s "
          "| commit→delivery p50 | p99 | bad signatures / duplicates |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in hooks:
        rep = r["label"].split("/")[-1]
        base = [b for b in by.get(("stampede", "w"), []) if b["label"].split("/")[-1] == rep]
        p_with = r["chat"]["latency"]["p99_ms"]
        p_without = base[0]["chat"]["latency"]["p99_ms"] if base else None
        h = extra.get(r["label"], {}).get("webhook", {})
        print(f"| {rep} | {f(p_without)} ms | {f(p_with)} ms | {ratio(p_with, p_without)} | {f(h.get('delivered'))} "
              f"| {f(h.get('delivered_per_s'))} | {f(h.get('p50_ms'))} ms | {f(h.get('p99_ms'))} ms "
              f"| {f(h.get('bad_signatures'))} / {f(h.get('duplicates'))} |")

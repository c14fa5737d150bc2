#!/usr/bin/env python3
"""plan.py — the storm's schedule, derived from the seed alone (a run is reproducible).

    plan.py --seed N --seconds D --tracks T --sources S --kinds k1,k2,... --ops OPS --faults FAULTS

OPS, one line per batch of operations, in time order:
    t_ms  up      ID:SRC ID:SRC ...     upload (or re-upload) track ID with source file number SRC
    t_ms  poison  ID ...                upload garbage under fresh ids: must end in the DLQ
    t_ms  del     ID ...                delete tracks that were uploaded before
    t_ms  reindex ID ...                a reindex job over these tracks (`ingest reindex --list`)
Track ids are chaos-NNNN (T of them, uploaded first, then re-uploaded with another source,
deleted, uploaded again); no id twice in one batch; a re-upload always changes the source, so the
stored sha256 names the version.

FAULTS, one line per fault, in time order (the driver runs them one after the other, each no
earlier than its time): t_s  kind  arg
    worker_kill       w1|w2        SIGKILL a worker while it has events in flight, restart it
    replicator_kill   -            SIGKILL the replicator, restart it
    replicator_ack    K            restart it with SOUNDHASH_TEST_KILL_AFTER_ACKS=K: it kills
                                   itself between Kafka's ack and moving its position; restart
    edge_kill         eA|eB        SIGKILL an edge while deltas arrive, restart it
    retention         eA|eB        SIGKILL an edge, let retention drop the deltas it has not
                                   read, restart it: it must bootstrap from a snapshot
    broker_kill       leader:P|controller|node:I   SIGKILL that broker, restart it
    broker_stop       leader:P|controller|node:I   SIGSTOP it for a few seconds, SIGCONT
    broker_restart    node:I       clean stop (SIGTERM), start
    elect             -            preferred-leader election on the project's topics
    pg_fast / pg_immediate  S      stop PostgreSQL (-m fast / immediate) for S seconds, start
    net_partition     S            edge eB's namespace cut off (its veth down) for S s, then up
    net_loss          PCT:S        PCT % of the packets dropped each way on eB's link for S s
    net_delay         MS:S         eB's link delay raised to MS ms one way for S s, then back
The first faults go through every kind once (in a seeded order), then kinds are drawn at random.
"""
import argparse
import random


def broker_target(rng, nodes=3):
    r = rng.random()
    if r < 0.4:
        return "leader:%d" % rng.randrange(8)
    if r < 0.7:
        return "controller"
    return "node:%d" % rng.randint(1, nodes)


def fault_arg(rng, kind):
    if kind == "worker_kill":
        return rng.choice(["w1", "w2"])
    if kind == "replicator_ack":
        return str(rng.randint(1, 6))
    if kind in ("edge_kill", "retention"):
        return rng.choice(["eA", "eB"])
    if kind in ("broker_kill", "broker_stop"):
        return broker_target(rng)
    if kind == "broker_restart":
        return "node:%d" % rng.randint(1, 3)
    if kind in ("pg_fast", "pg_immediate"):
        return "%.1f" % rng.uniform(1.0, 4.0)
    if kind == "net_partition":
        return "%.1f" % rng.uniform(3.0, 10.0)
    if kind == "net_loss":
        return "%d:%.1f" % (rng.randint(15, 40), rng.uniform(5.0, 12.0))
    if kind == "net_delay":
        return "%d:%.1f" % (rng.choice([150, 250, 400, 600]), rng.uniform(5.0, 12.0))
    return "-"


def plan_ops(rng, seconds, tracks, sources):
    ids = ["chaos-%04d" % i for i in range(tracks)]
    state = {}  # id -> source while active, None when deleted
    lines, t, poison = [], 0.0, 0
    # about 3 operations per track over the run, spread evenly with jitter
    n_batches = max(10, int(tracks * 3 / 3.5))
    step = seconds * 1000.0 * 0.9 / n_batches
    fresh = list(ids)
    for _ in range(n_batches):
        t += rng.uniform(0.5, 1.5) * step
        r = rng.random()
        active = sorted(i for i, s in state.items() if s is not None)
        deleted = sorted(i for i, s in state.items() if s is None)
        if fresh and (r < 0.5 or len(active) < 4):
            k = min(len(fresh), rng.randint(2, 6))
            batch = [fresh.pop(0) for _ in range(k)]
            items = []
            for i in batch:
                state[i] = rng.randrange(sources)
                items.append("%s:%d" % (i, state[i]))
            lines.append("%d up %s" % (t, " ".join(items)))
        elif r < 0.72 or not active:
            pool = active + deleted
            batch = rng.sample(pool, min(len(pool), rng.randint(1, 4)))
            items = []
            for i in batch:
                old = state[i]
                src = rng.randrange(sources)
                while src == old and sources > 1:
                    src = rng.randrange(sources)
                state[i] = src
                items.append("%s:%d" % (i, src))
            lines.append("%d up %s" % (t, " ".join(items)))
        elif r < 0.87:
            batch = rng.sample(active, min(len(active), rng.randint(1, 3)))
            for i in batch:
                state[i] = None
            lines.append("%d del %s" % (t, " ".join(batch)))
        elif r < 0.94:
            batch = rng.sample(active, min(len(active), rng.randint(3, 10)))
            lines.append("%d reindex %s" % (t, " ".join(sorted(batch))))
        else:
            k = rng.randint(1, 2)
            batch = ["poison-%04d" % (poison + j) for j in range(k)]
            poison += k
            lines.append("%d poison %s" % (t, " ".join(batch)))
    if poison == 0:  # every run dead-letters something
        lines.append("%d poison poison-0000" % (t + step))
    return lines


def plan_faults(rng, seconds, kinds, mean_gap):
    order = list(kinds)
    rng.shuffle(order)
    lines, t = [], seconds * 0.08
    end = seconds * 0.92
    while t < end:
        kind = order.pop(0) if order else rng.choice(kinds)
        lines.append("%.1f %s %s" % (t, kind, fault_arg(rng, kind)))
        t += rng.expovariate(1.0 / mean_gap)
    while order:  # a short run still sees every kind once, after its nominal end
        kind = order.pop(0)
        lines.append("%.1f %s %s" % (t, kind, fault_arg(rng, kind)))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--tracks", type=int, required=True)
    ap.add_argument("--sources", type=int, required=True)
    ap.add_argument("--kinds", required=True)
    ap.add_argument("--fault-gap", type=float, default=8.0)
    ap.add_argument("--ops", required=True)
    ap.add_argument("--faults", required=True)
    a = ap.parse_args()
    # two generators from the one seed: the faults' schedule does not shift when the op mix changes
    ops = plan_ops(random.Random(a.seed * 2 + 1), a.seconds, a.tracks, a.sources)
    faults = plan_faults(random.Random(a.seed * 2 + 2), a.seconds, a.kinds.split(","), a.fault_gap)
    with open(a.ops, "w") as f:
        f.write("\n".join(ops) + "\n")
    with open(a.faults, "w") as f:
        f.write("\n".join(faults) + "\n")


if __name__ == "__main__":
    main()

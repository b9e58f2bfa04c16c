#!/usr/bin/env python3
"""A work queue in shared memory: producers put jobs, consumer processes take them.

    python3 examples/work_queue.py [--producers 2] [--consumers 4] [--jobs 2000]

Each job is one item (key "job-<n>", value its argument). Consumers take jobs with
popitem(), which removes some item in one atomic step: of several consumers popping at
once, each job goes to exactly one of them. A consumer that finds the table empty looks
again until it finds it empty after the producers have all finished (a "producers-done"
counter, kept apart from the jobs in a second table), then stops. Results go to a third table, added with the
atomic counter add(). The table is temporary (Table.temporary): nothing is left in
/dev/shm when the script ends, even if it is killed.

It prints one line, as this from a run of the defaults (the split among consumers varies):
    2000 jobs, 4 consumers: each done once (sum of squares 2664667000), per consumer [1011, 989, 0, 0]
and exits 1 if a job was lost or done twice.
"""

import argparse
import multiprocessing
import sys
import time

import shmht


def produce(jobs, control, first, count):
    """Put jobs first .. first + count - 1, then say this producer is done."""
    for n in range(first, first + count):
        jobs[f"job-{n}"] = str(n)
    control.add("producers-done")


def consume(jobs, control, results, producers, consumer):
    """Take jobs until the producers are done and the queue is empty; record each job done."""
    done = 0
    while True:
        # Read before looking: if every producer was done before a look that finds the
        # queue empty, it stays empty (popitem finds any item present for its whole call).
        finished = control.get("producers-done") == producers
        try:
            key, value = jobs.popitem()
        except KeyError:
            if finished:
                break
            time.sleep(0.001)
            continue
        n = int(value)
        results.add(f"done-{n}")              # how many times job n was done (must be 1)
        results.add("sum-of-squares", n * n)
        done += 1
    results.add(f"consumer-{consumer}", done)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--start-method", default="spawn", choices=multiprocessing.get_all_start_methods())
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context(args.start_method)
    processes = args.producers + args.consumers + 1
    # Three tables; pickled to each child (which attaches by path while we hold them open).
    # The job table's capacity is the backlog, not the default 1,048,576: a popitem on a
    # nearly empty table walks about capacity / items slots (a full lap when it is empty),
    # so a small table keeps the consumers' empty looks cheap (python/README.md, popitem).
    with shmht.Table.temporary(capacity=args.jobs + 16, max_processes=processes, codec="text") as jobs, \
         shmht.Table.temporary(capacity=16, max_processes=processes, codec="text") as control, \
         shmht.Table.temporary(capacity=args.jobs + args.consumers + 16, max_processes=processes,
                               codec="text") as results:
        per_producer = -(-args.jobs // args.producers)
        workers = [ctx.Process(target=produce, args=(jobs, control, p * per_producer,
                                                     max(0, min(per_producer, args.jobs - p * per_producer))))
                   for p in range(args.producers)]
        workers += [ctx.Process(target=consume, args=(jobs, control, results, str(args.producers), c))
                    for c in range(args.consumers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        hung = [w.pid for w in workers if w.is_alive()]
        for w in workers:
            if w.is_alive():
                w.kill()
        if hung or any(w.exitcode != 0 for w in workers):
            print(f"workers failed: exit codes {[w.exitcode for w in workers]}, hung {hung}", file=sys.stderr)
            return 1
        done = [int(results.get(f"done-{n}", "0")) for n in range(args.jobs)]
        per_consumer = [int(results.get(f"consumer-{c}", "0")) for c in range(args.consumers)]
        expected = sum(n * n for n in range(args.jobs))
        ok = done == [1] * args.jobs and int(results.get("sum-of-squares", "0")) == expected and len(jobs) == 0
        lost, twice = done.count(0), sum(1 for d in done if d > 1)
        print(f"{args.jobs} jobs, {args.consumers} consumers: "
              + (f"each done once (sum of squares {expected})" if ok else f"{lost} lost, {twice} done twice")
              + f", per consumer {per_consumer}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

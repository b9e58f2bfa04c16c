#!/usr/bin/env python3
"""The Python half of examples/c_and_python (README.md there): reads what c_side wrote,
takes the jobs, counts a visit and writes a reply for c_side to read.

    python3 py_side.py NAME
"""
import sys

import shmht


def main(name: str) -> int:
    with shmht.Table(name, create=False) as t:  # the table c_side made
        print("py_side: greeting:", t[b"greeting"].decode())
        done = []
        for key in sorted(k for k in t.keys() if k.startswith(b"job:")):
            job = t.pop(key, None)  # atomic (take): a job is taken by one worker only
            if job is not None:
                done.append(job.decode())
        visits = t.add(b"visits", 1)
        t[b"reply"] = f"python did {len(done)} jobs ({', '.join(done)}); visit {visits}".encode()
        print("py_side: took", len(done), "jobs; visits =", visits)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: py_side.py NAME")
    sys.exit(main(sys.argv[1]))

"""Bounded multi-process runs: every child is joined with a deadline and killed if it
overstays, so a hung or failing test never leaves processes behind."""

import contextlib
import multiprocessing


def run_all(start_method, target, arg_tuples, timeout=60.0):
    """Run target(*args) in one process per tuple; assert all exit 0 within `timeout`."""
    ctx = multiprocessing.get_context(start_method)
    procs = [ctx.Process(target=target, args=args, daemon=True) for args in arg_tuples]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        hung = [p.pid for p in procs if p.is_alive()]
        assert not hung, f"processes {hung} did not finish within {timeout}s"
        codes = [p.exitcode for p in procs]
        assert codes == [0] * len(procs), f"exit codes {codes}"
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
            with contextlib.suppress(ValueError):
                p.close()

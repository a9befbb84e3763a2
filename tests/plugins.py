"""Backends that misbehave on purpose, registered through TRITBENCH_PLUGINS by the tests.

They run in real child processes like any backend: one aborts the process (as a GGML_ASSERT
does), one is slow enough to be interrupted mid-run.
"""

import os
import sys
import time

from tritbench.plugin import FormatInfo, Option


class _Session:
    n_vocab = 100
    bos_token = 1
    weights_mapped = None

    def __init__(self, step_s: float, abort_on_decode: bool):
        self.step_s, self.abort = step_s, abort_on_decode
        self.n_prompt = self.n_gen = 0

    def effective_settings(self):
        # read from inside the child: what the harness really applied
        import resource

        return {"n_threads": 1, "affinity": sorted(os.sched_getaffinity(0)),
                "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0]}

    def reset(self):
        pass

    def _crash(self):
        print("GGML_ASSERT(fake) failed: this backend aborts on purpose", file=sys.stderr, flush=True)
        os.abort()

    def prefill(self, tokens):
        if self.abort:
            self._crash()
        time.sleep(self.step_s)
        self.n_prompt += len(tokens)

    def decode(self, token):
        if self.abort:
            self._crash()
        time.sleep(self.step_s)
        self.n_gen += 1

    def reset_counters(self):
        self.n_prompt = self.n_gen = 0

    def counters(self):
        return {"n_prompt": max(self.n_prompt, 1), "n_gen": max(self.n_gen, 1), "prompt_ms": None, "gen_ms": None}

    def check_counters(self, n_prompt, n_gen, counters):
        return None

    def close(self):
        pass


class AbortingBackend:
    name = "aborting"
    formats = {f: FormatInfo() for f in ("f16", "q8_0", "q4_0", "tq1_0", "tq2_0")}
    workload_kinds = ("pp", "tg", "pg")
    libraries = ()
    options: dict[str, Option] = {}

    def info(self):
        return {"version": "0"}

    def open(self, model_path, n_threads, options, n_ctx):
        return _Session(0.0, abort_on_decode=True)


class SlowBackend(AbortingBackend):
    name = "slow"
    options = {"step_s": Option(float, 0.02, "seconds per step")}

    def open(self, model_path, n_threads, options, n_ctx):
        return _Session(options["step_s"], abort_on_decode=False)


class _MemHogSession(_Session):
    """Holds `load_mb` from open() on and touches `prefill_mb` more only while a prefill runs."""

    def __init__(self, load_mb: int, prefill_mb: int):
        super().__init__(0.0, abort_on_decode=False)
        self.held = bytearray(load_mb << 20)
        self.held[::4096] = b"\1" * len(range(0, len(self.held), 4096))  # touch every page
        self.prefill_mb = prefill_mb

    def prefill(self, tokens):
        extra = bytearray(self.prefill_mb << 20)
        extra[::4096] = b"\1" * len(range(0, len(extra), 4096))
        super().prefill(tokens)
        del extra


class MemHogBackend(AbortingBackend):
    name = "memhog"
    options = {"load_mb": Option(int, 0, "MiB held from load on"), "prefill_mb": Option(int, 0, "MiB during prefill")}

    def open(self, model_path, n_threads, options, n_ctx):
        return _MemHogSession(options["load_mb"], options["prefill_mb"])

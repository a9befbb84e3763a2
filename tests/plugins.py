"""Backends that misbehave on purpose, registered through TRITBENCH_PLUGINS by the tests.

They run in real child processes like any backend: one aborts the process (as a GGML_ASSERT
does), one is slow enough to be interrupted mid-run.
"""

import os
import sys
import time

from bench.plugin import Option


class _Session:
    n_vocab = 100
    bos_token = 1

    def __init__(self, step_s: float, abort_on_decode: bool):
        self.step_s, self.abort = step_s, abort_on_decode
        self.n_prompt = self.n_gen = 0

    def effective_settings(self):
        return {"n_threads": 1}

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

    def close(self):
        pass


class AbortingBackend:
    name = "aborting"
    formats = ("f16", "q8_0", "q4_0", "tq1_0", "tq2_0")
    workload_kinds = ("pp", "tg", "pg")
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

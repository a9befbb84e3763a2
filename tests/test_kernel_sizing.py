"""How many calls a kernel repetition makes: sized from warm calls, not the first (cold) one."""

from tritbench.execute.child import SIZING_S, calls_per_repetition


class FakeKernel:
    """A call's duration on a fake clock: the first `cold` seconds, then `warm` each."""

    def __init__(self, cold: float, warm: float):
        self.cold, self.warm, self.now, self.calls = cold, warm, 0.0, 0

    def run(self) -> None:
        self.now += self.cold if self.calls == 0 else self.warm
        self.calls += 1

    def clock(self) -> float:
        return self.now


def test_a_slow_first_call_does_not_shorten_repetitions():
    k = FakeKernel(cold=0.00067, warm=0.000145)  # a hot 4096x4096 GEMV's first and later calls (avx512)
    calls = calls_per_repetition(k.run, 0.2, clock=k.clock)
    assert calls * k.warm >= 0.2 and (calls - 1) * k.warm < 0.2  # 1380 calls; sized from the first: 299
    assert k.calls - 1 == -(-SIZING_S // k.warm)  # the sizing timed warm calls for SIZING_S


def test_long_calls_are_sized_from_one_warm_call():
    k = FakeKernel(cold=2.0, warm=0.5)
    assert calls_per_repetition(k.run, 0.2, clock=k.clock) == 1 and k.calls == 2
    k = FakeKernel(cold=0.3, warm=0.09)
    assert calls_per_repetition(k.run, 0.2, clock=k.clock) == 3

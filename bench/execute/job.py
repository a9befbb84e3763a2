"""The runner -> child contract: the `Job` a child is given and the `ChildResult` it leaves, as typed
dataclasses that both sides share and that travel as JSON files.

A child measures one variant: a `GenerationJob` loads a model file and runs pp/tg/pg workloads, a `KernelJob`
builds one linear layer per workload and calls it. Repetition samples stay plain dicts (their keys are the
child's own: `prefill_s`, `decode_s`, `cpu_s`, `counters`, `energy` for generation; `calls`, `latency_s`,
`cpu_s`, `thread_cpu_s`, `energy` for kernels), summarised by tritbench.analysis.metrics.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from tritbench.plan.workloads import Workload

ERROR_TAG = "tritbench-worker-error:"  # how a failed child's last stderr line tells the parent what went wrong
PARENT_ENV = "TRITBENCH_PARENT_PID"  # the runner's pid, so that a child whose runner is gone stops at once


@dataclass
class Job:
    """What every child is told: which backend, settings, workloads and how many repetitions."""

    KIND: ClassVar[str] = ""
    backend: str
    n_threads: int
    options: dict
    workloads: list[Workload]
    warmups: int
    reps: int
    seed: int
    energy: str  # the meter kind (tritbench.measure.energy)
    result_path: str = ""

    def to_json(self) -> str:
        d = asdict(self)
        d["workloads"] = [w.to_dict() for w in self.workloads]
        return json.dumps({"kind": self.KIND, **d})

    @staticmethod
    def from_json(text: str) -> Job:
        d = json.loads(text)
        cls = {c.KIND: c for c in (GenerationJob, KernelJob)}[d.pop("kind")]
        d["workloads"] = [Workload.from_dict(w) for w in d["workloads"]]
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class GenerationJob(Job):
    """Load `model_path` once, then run warmups and repetitions of each pp/tg/pg workload."""

    KIND: ClassVar[str] = "generation"
    model_path: str = ""
    n_ctx: int = 0
    # a derived format (models.DERIVED_FORMATS) the backend makes from the file itself, else ""; decided by the
    # parent, so that the measuring child never imports the models package (gguf)
    made_format: str = ""


@dataclass
class KernelJob(Job):
    """Build each gemv/gemm layer in `format` from the run's seeded weights and call it."""

    KIND: ClassVar[str] = "kernel"
    format: str = ""
    min_rep_s: float = 0.0  # a repetition repeats the call until it lasts this long (0: one call)
    min_total_bytes: int = 0  # weight copies span at least this much (cold cache), 0: one copy


@dataclass
class WorkloadResult:
    """One workload's samples from one child; `error` when the backend failed it."""

    reps: list[dict] = field(default_factory=list)
    error: str | None = None
    memory: dict[str, dict] = field(default_factory=dict)  # phase -> peak snapshot (generation)
    weight_bytes: int | None = None  # kernel: bytes of weights one call reads
    copies: int | None = None  # kernel: weight copies cycled through
    settings: dict | None = None  # kernel: the layer session's effective settings


@dataclass
class ChildResult:
    """What a child measured so far; it rewrites this after loading and after every workload, so a child
    that crashes still leaves what it finished."""

    backend_info: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    load_s: float | None = None
    rss_after_load_bytes: int | None = None
    peak_rss_bytes: int | None = None
    memory: dict = field(default_factory=dict)  # "load": snapshot, "per_phase_peaks": bool
    workloads: dict[str, WorkloadResult] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        """Atomically: the parent never reads half a file."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> ChildResult | None:
        return cls.from_dict(json.loads(path.read_text())) if path.exists() else None

    @classmethod
    def from_dict(cls, d: dict) -> ChildResult:
        d = {**d, "workloads": {k: WorkloadResult(**v) for k, v in d.get("workloads", {}).items()}}
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

"""pyRAPL (PyPI `pyRAPL`, 0.2.3.1, 2019) behind the common meter interface, imported only when asked for.

Its limits, which is why `rapl` (our own powercap reader) is the default and this is opt-in:
- it reads the real /sys/class/powercap/intel-rapl/intel-rapl:<N> paths and cannot use another root;
- it does not correct counter wraparound: a wrap inside the window gives a negative delta, which
  we report as unavailable rather than pass on;
- its Result.duration changed unit between releases (s, then µs), so the window is timed here;
- `pyRAPL.setup()` raises PyRAPLCantRecordEnergyConsumption on a machine without RAPL.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType

from tritbench.machine import sysfs_root
from tritbench.measure.energy.meter import BaseMeter, MeterError
from tritbench.measure.energy.reading import EnergyReading

NOTE = "pyRAPL: package and dram per socket, no wraparound correction, reads the real /sys only"


class PyRaplMeter(BaseMeter):
    """Package and dram energy per socket as pyRAPL reports them (µJ), timed with our own clock."""

    kind = "pyrapl"

    def __init__(self, root: Path | str | None = None, *, module: ModuleType | None = None) -> None:
        super().__init__()
        root = Path(root) if root is not None else sysfs_root()
        if root.resolve() != Path("/").resolve():
            self._unavailable(f"pyRAPL reads the real /sys and cannot use the sysfs root {root}")
            return
        try:
            self._pyrapl = module or importlib.import_module("pyRAPL")
        except ImportError:
            self._unavailable("pyRAPL is not installed (pip install pyRAPL)")
            return
        try:
            self._pyrapl.setup()
        except Exception as exc:  # pyRAPL raises its own exception types, and OSError on unreadable files
            self._unavailable(f"pyRAPL.setup() failed: {type(exc).__name__}: {exc}".rstrip(": "), found=True)
            return
        self._ready(["package", "dram"])

    def _begin(self) -> None:
        self._measurement = self._pyrapl.Measurement("tritbench")
        self._t0 = time.perf_counter()
        try:
            self._measurement.begin()
        except Exception as exc:  # any pyRAPL failure becomes an unavailable reading
            raise MeterError(f"Measurement.begin() failed: {type(exc).__name__}: {exc}") from exc

    def _end(self) -> EnergyReading:
        try:
            self._measurement.end()
        except Exception as exc:  # as in _begin
            raise MeterError(f"Measurement.end() failed: {type(exc).__name__}: {exc}") from exc
        window = time.perf_counter() - self._t0
        result = self._measurement.result
        domains: dict[str, float] = {}
        for prefix, values in (("package", result.pkg), ("dram", result.dram)):
            for socket, uj in enumerate(values or []):
                if uj < 0:
                    raise MeterError(f"the {prefix}-{socket} counter wrapped during the window "
                                     "(pyRAPL does not correct wraparound; use --energy rapl)")
                domains[f"{prefix}-{socket}"] = uj / 1e6
        if not domains:
            raise MeterError("pyRAPL returned no package or dram energy")
        return EnergyReading.measured("pyrapl", domains, window, note=NOTE)

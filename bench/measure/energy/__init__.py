"""Energy measurement: meters that read the machine's own counters and label every figure with its source.

    meter = select_meter("auto")          # or rapl, pyrapl, jetson, hwmon, pi5, powermetrics, none
    idle = measure_idle(meter, 3.0)       # before the work, machine quiet
    meter.start(); work(); reading = meter.stop()
    reading.source   # measured:rapl/package-0+dram | unavailable:<why>
    net_energy(reading, idle.watts)
    meter.close()                         # stops powermetrics' streaming process (also done at exit)

A meter never raises for missing or failing hardware and never reports 0 J for "unknown": its
reading is then `unavailable:<reason>` with `joules=None`.
"""

from tritbench.measure.energy.aggregate import combine_readings, energy_metrics, idle_watts, measure_idle, net_energy
from tritbench.measure.energy.hwmon import HwmonMeter
from tritbench.measure.energy.jetson import JetsonMeter
from tritbench.measure.energy.meter import BaseMeter, Meter, PollingMeter, UnavailableMeter
from tritbench.measure.energy.pi5 import Pi5Meter, parse_pmic_read_adc
from tritbench.measure.energy.powermetrics import PowermetricsMeter, parse_powermetrics
from tritbench.measure.energy.pyrapl import PyRaplMeter
from tritbench.measure.energy.rapl import RaplMeter
from tritbench.measure.energy.reading import EnergyReading, MeterProbe
from tritbench.measure.energy.select import AUTO_ORDER, METER_KINDS, probe_meters, select_meter

__all__ = [
    "AUTO_ORDER",
    "METER_KINDS",
    "BaseMeter",
    "EnergyReading",
    "HwmonMeter",
    "JetsonMeter",
    "Meter",
    "MeterProbe",
    "Pi5Meter",
    "PollingMeter",
    "PowermetricsMeter",
    "PyRaplMeter",
    "RaplMeter",
    "UnavailableMeter",
    "combine_readings",
    "energy_metrics",
    "idle_watts",
    "measure_idle",
    "net_energy",
    "parse_pmic_read_adc",
    "parse_powermetrics",
    "probe_meters",
    "select_meter",
]

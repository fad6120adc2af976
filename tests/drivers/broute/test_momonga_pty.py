"""momonga, the third-party B-route client, as an oracle for the emulator.

momonga is blocking and thread-based, so the emulator runs in a thread of its own and momonga in
the test's thread. It opens the port, resets the module, scans, joins and reads through the same
pty a real dongle would give it; if it reads what the meter model says, the emulator speaks
SKSTACK the way real modules do (at least as far as a widely used client relies on it).
"""

from __future__ import annotations

import pytest

from drivers.broute.dialect import Dialect
from drivers.broute.sim import DEFAULT_PASSWORD, DEFAULT_RBID, ThreadedEmulator
from gateway.clock import SystemClock

from .emulated import meter, module

momonga = pytest.importorskip("momonga", reason="momonga (test extra) is not installed")


@pytest.mark.parametrize(
    ("dialect", "einfo_addr16"),
    # momonga tells the families apart by EINFO's fifth field: FFFE (the 16-bit address of a
    # side-less module) or a side 0/1 (C-series firmware that prints the side in its place).
    [(Dialect.BP35A1, True), (Dialect.BP35C0, False)],
)
def test_momonga_reads_power_and_energy(dialect: Dialect, einfo_addr16: bool) -> None:
    config = module(dialect=dialect, einfo_addr16=einfo_addr16, link_delay=0.003)
    with ThreadedEmulator(config, meter(fixed_power_w=-1234), SystemClock()) as emu:
        client = momonga.Momonga(DEFAULT_RBID, DEFAULT_PASSWORD, emu.path)
        client.internal_xmit_interval = 0  # its fixed 5 s pauses between setup requests
        with client:
            power = client.get_instantaneous_power()
            imported = client.get_measured_cumulative_energy()
            exported = client.get_measured_cumulative_energy(reverse=True)
            currents = client.get_instantaneous_current()
        raw = emu.call(lambda e: (e.meter.import_raw, e.meter.export_raw))
        stats = emu.call(lambda e: e.stats)
    assert power == -1234
    assert float(imported) == pytest.approx(raw[0] / 10)
    assert float(exported) == pytest.approx(raw[1] / 10)
    assert currents["r phase current"] == pytest.approx(-1234 * 0.55 / 100, abs=0.05)
    assert stats.sessions == 1 and stats.commands[-1] == "SKTERM"

"""Placement survey: several scans in a row, the signal of each PAN summarised, and a verdict.

One scan says whether the meter is heard; whether it is heard *reliably* needs several, because
920 MHz links fade with doors, people and rain. The tally is pure (fed the PANs of each round);
``wisun-tool survey`` runs the scans.

Received power is estimated from the module's LQI byte (RSSI ≈ 0.275 × LQI − 104.27 dBm, see
:func:`drivers.broute.parser.lqi_to_rssi`). The verdict thresholds are this project's rule of
thumb against a receiver sensitivity of about −100 dBm for 920 MHz Wi-SUN at 100 kbit/s:

* **good**: heard in every round and the weakest round at or above −80 dBm (20 dB of margin);
* **marginal**: heard in at least half the rounds and the weakest round at or above −90 dBm;
* **poor**: anything less (missed in most rounds, or within 10 dB of the sensitivity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from statistics import fmean

from drivers.broute.parser import PanDescriptor, lqi_to_rssi

__all__ = ["GOOD_DBM", "MARGINAL_DBM", "PanSurvey", "Survey", "Verdict", "verdict"]

GOOD_DBM = -80.0
MARGINAL_DBM = -90.0


class Verdict(StrEnum):
    GOOD = "good"
    MARGINAL = "marginal"
    POOR = "poor"


def verdict(min_rssi: float, seen: int, rounds: int) -> Verdict:
    """The placement verdict for a PAN heard ``seen`` times out of ``rounds`` scans."""
    if rounds <= 0 or seen <= 0:
        return Verdict.POOR
    if seen == rounds and min_rssi >= GOOD_DBM:
        return Verdict.GOOD
    if 2 * seen >= rounds and min_rssi >= MARGINAL_DBM:
        return Verdict.MARGINAL
    return Verdict.POOR


@dataclass
class PanSurvey:
    """One PAN over the survey; LQIs as the module reported them, one per round it was heard."""

    channel: int
    pan_id: int
    mac: str
    pair_id: str | None
    lqis: list[int] = field(default_factory=list)

    @property
    def rssi(self) -> list[float]:
        return [lqi_to_rssi(lqi) for lqi in self.lqis]

    @property
    def min_dbm(self) -> float:
        return min(self.rssi)

    @property
    def mean_dbm(self) -> float:
        return fmean(self.rssi)

    @property
    def max_dbm(self) -> float:
        return max(self.rssi)


@dataclass
class Survey:
    """Feed it each round's PANs (:meth:`add_round`); read :meth:`results` at the end."""

    rounds: int = 0
    pans: dict[tuple[int, int, str], PanSurvey] = field(default_factory=dict)

    def add_round(self, pans: tuple[PanDescriptor, ...] | list[PanDescriptor]) -> None:
        self.rounds += 1
        seen: set[tuple[int, int, str]] = set()
        for pan in pans:
            key = (pan.channel, pan.pan_id, pan.mac.upper())
            if key in seen:  # one scan printing a PAN twice is one sighting
                continue
            seen.add(key)
            entry = self.pans.get(key)
            if entry is None:
                entry = PanSurvey(pan.channel, pan.pan_id, pan.mac.upper(), pan.pair_id)
                self.pans[key] = entry
            entry.lqis.append(pan.lqi)

    def verdict_of(self, pan: PanSurvey) -> Verdict:
        return verdict(pan.min_dbm, len(pan.lqis), self.rounds)

    def results(self) -> list[PanSurvey]:
        """PANs strongest (mean) first."""
        return sorted(self.pans.values(), key=lambda p: -p.mean_dbm)

    def to_json(self, own_pair_id: str | None = None) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "thresholds_dbm": {"good": GOOD_DBM, "marginal": MARGINAL_DBM},
            "pans": [
                {
                    "channel": p.channel,
                    "pan_id": f"{p.pan_id:04X}",
                    "mac": p.mac,
                    "pair_id": p.pair_id,
                    "own_meter": own_pair_id is not None
                    and (p.pair_id or "").upper() == own_pair_id.upper(),
                    "seen": len(p.lqis),
                    "lqi": p.lqis,
                    "rssi_dbm": {
                        "min": round(p.min_dbm, 1),
                        "mean": round(p.mean_dbm, 1),
                        "max": round(p.max_dbm, 1),
                    },
                    "verdict": self.verdict_of(p).value,
                }
                for p in self.results()
            ],
        }

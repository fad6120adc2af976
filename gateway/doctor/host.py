"""The gateway itself: clock synchronisation, disk space, the store and its signed chain."""

from __future__ import annotations

import asyncio
import os

from gateway.doctor.model import Checks, DoctorOptions, Failed, Outcome, Verdict


async def clock_check(options: DoctorOptions) -> Outcome:
    """Row ``clock`` (needs no config: it runs even when the config failed)."""
    from gateway.health import clock_synchronised

    synced = (options.check_clock or clock_synchronised)()
    if synced is None:
        return Outcome(
            "the kernel cannot tell whether the clock is synchronised",
            Verdict.WARN,
            "check timedatectl: 'System clock synchronized: yes'",
        )
    if not synced:
        raise Failed(
            "the system clock is not NTP-synchronised: slot times may be wrong",
            "enable time sync: sudo timedatectl set-ntp true (and allow UDP 123 out)",
        )
    return Outcome("synchronised (NTP)")


class HostChecks(Checks):
    """Rows ``disk`` and ``store``."""

    async def disk(self) -> Outcome:
        import shutil

        path = self.cfg.store.path
        probe = path if path.exists() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError as exc:
            raise Failed(f"{probe}: {exc.strerror or exc}", "check store.path") from None
        free = usage.free / usage.total if usage.total else 0.0
        detail = f"{usage.free / 1e9:.1f} GB free ({free * 100:.0f} %) at {probe}"
        data = {"free_bytes": usage.free, "free_fraction": round(free, 4)}
        if free < self.options.disk_fail_below:
            raise Failed(
                detail, "free space: old logs (journalctl --vacuum-size=50M), apt clean", data
            )
        if free < self.options.disk_warn_below:
            return Outcome(detail, Verdict.WARN, "free some space before it runs out", data)
        return Outcome(detail, data=data)

    async def store(self) -> Outcome:
        from gateway.store import Store, StoreError

        path = self.cfg.store.path
        if not path.exists():
            return Outcome(f"{path} not created yet (the daemon creates it on its first start)")
        if not os.access(path, os.R_OK):
            return Outcome(
                f"{path} is not readable by this user",
                Verdict.WARN,
                "run chisan doctor as root or as the chisan user to check the store",
            )

        def check() -> Outcome:
            try:
                with Store.open_readonly(path, self.cfg.site.id) as store:
                    integrity = store.integrity_check()
                    if integrity != "ok":
                        raise Failed(
                            f"SQLite integrity check failed: {integrity.splitlines()[0]}",
                            _STORE_STEP,
                        )
                    records = store.max_seq()
                    backlog = store.backlog_count()
                    if records == 0:
                        return Outcome("intact, no slot records yet", data={"records": 0})
                    result = store.verify()
            except StoreError as exc:
                raise Failed(str(exc), _STORE_STEP) from None
            except Exception as exc:  # sqlite3.DatabaseError from a file that is not a database
                raise Failed(f"{path}: {exc}", _STORE_STEP) from None
            data = {"records": records, "backlog": backlog}
            if not result.ok:
                raise Failed(f"signed record chain broken: {result.reason}", _STORE_STEP, data)
            return Outcome(
                f"intact: {result.checked} records, chain verified, {backlog} not yet acknowledged",
                data=data,
            )

        return await asyncio.to_thread(check)


_STORE_STEP = (
    "stop the daemon, move the database aside (and keep it for analysis), restore the last "
    "backup or let the daemon create a new one and backfill from the meter"
)

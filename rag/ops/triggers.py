"""When the periodic ingest fires: INGEST_CRON (crontab syntax) or INGEST_INTERVAL_MINUTES."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import ConfigError

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

MAX_INTERVAL_JITTER_SECONDS = 300
CRON_JITTER_SECONDS = 30

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_day_of_week(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3.x names (it counts 0 = Monday)."""
    if field == "*" or any(c.isalpha() for c in field):
        return field  # `*` and names mean the same to both
    days: set[int] = set()
    for term in field.split(","):
        base, _, step_text = term.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = int(a), int(b)
        else:
            first = int(base)
            last = 6 if step_text else first
        if not (0 <= first <= 7 and 0 <= last <= 7) or step < 1 or first > last:
            raise ValueError(f"bad day of week {term!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DOW_NAMES[d] for d in sorted(days))


def build_trigger(settings: Settings) -> BaseTrigger | None:
    """The trigger for INGEST_CRON (when set) or INGEST_INTERVAL_MINUTES; None when disabled."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if settings.ingest_cron:
        fields = settings.ingest_cron.split()
        if len(fields) != 5:
            raise ConfigError(
                f"INGEST_CRON: expected 5 fields (minute hour day month weekday), got {len(fields)}"
            )
        minute, hour, day, month, dow = fields
        try:
            return CronTrigger(
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=crontab_day_of_week(dow),
                jitter=CRON_JITTER_SECONDS,
            )
        except ValueError as e:
            raise ConfigError(f"INGEST_CRON: invalid crontab expression {settings.ingest_cron!r}: {e}") from e
    if settings.ingest_interval_minutes <= 0:
        return None
    seconds = settings.ingest_interval_minutes * 60
    # Jitter spreads the load when many deployments share a Confluence server.
    jitter = min(MAX_INTERVAL_JITTER_SECONDS, seconds // 10)
    return IntervalTrigger(seconds=seconds, jitter=jitter or None)


def describe_schedule(settings: Settings) -> str:
    """A one-line human description of the configured schedule."""
    if settings.ingest_cron:
        return f"cron {settings.ingest_cron}"
    if settings.ingest_interval_minutes > 0:
        return f"every {settings.ingest_interval_minutes} min"
    return "disabled"

#!/usr/bin/env python3
"""Generate one realistic day of usage events for a small org, as JSON Lines.

    python examples/generate_day.py > examples/day.jsonl

Deterministic (random.Random(2026)), standard library only, no network. The events follow
the "Usage events" section of billing-rules.md (field names and enum values exactly as spelled
there). A summary a person can check the file against is printed to stderr; examples/README.md
reproduces it.

The day is 2026-10-05 UTC, org `acme`, workspace `ws-main`:

* `ep-llama` (A100): one ACTIVE worker up all day (00:00:00 to 23:59:59.5, min_replica=1) plus FLEX
  replicas that scale up for the morning peak and down (SCALED_DOWN) in the evening. One FLEX replica
  is killed by OOM mid-request, one fails to boot (never UP) and is replaced.
* `ep-whisper` (L4): FLEX replicas that scale from zero on the first request of a burst and back to
  zero 300 s after the last one (scale-down delay 300 s), so the endpoint has no replica for hours.
  An image build (BUILD on A4000, BUILD_SUCCEEDED) runs after a push at 13:52.
* `ep-dev` (L4): a development deployment (`development: true`) with a few test requests.
* STORAGE_SAMPLE: CONTAINER_DISK per running worker every 300 s after its UP, plus one final sample
  at its STOP covering the partial interval (interval_seconds = ceil of the remainder); NETWORK_VOLUME
  `vol-models` (1200 GB) every 300 s on the 5-minute grid all day.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SEED = 2026
DAY = datetime(2026, 10, 5, tzinfo=UTC)
US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US
ORG = "acme"
WORKSPACE = "ws-main"
STORAGE_INTERVAL_S = 300
IDLE_BEFORE_SCALE_DOWN_S = 5  # R3: default idle wait before scale-down
WHISPER_SCALE_DOWN_DELAY_S = 300
LATE_FRACTION = 0.01

rng = random.Random(SEED)


# ----------------------------------------------------------------------------- time helpers


def at(h: int, m: int = 0, s: float = 0.0) -> int:
    """Microseconds since 2026-10-05T00:00:00Z."""
    return (h * 3600 + m * 60) * US + round(s * US)


def jitter(lo_s: float, hi_s: float) -> int:
    """A random duration in [lo_s, hi_s] seconds, in whole microseconds."""
    return rng.randint(round(lo_s * US), round(hi_s * US))


def rfc3339(t: int) -> str:
    assert 0 <= t < DAY_US, f"instant {t} is not on 2026-10-05"
    moment = DAY + timedelta(microseconds=t)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def hms(t: int) -> str:
    return rfc3339(t)[11:26]


# ----------------------------------------------------------------------------- model

UNSET = -1  # rfc3339() rejects it, so an unset instant can never reach the output


@dataclass
class Workload:
    workload_id: str
    endpoint_id: str
    kind: str  # SERVING / BUILD / TRAINING
    instance_type: str
    worker_type: str = "FLEX"
    development: bool = False
    # Instants in microseconds since 00:00:00; UNSET where the workload has no such event.
    scheduled: int = UNSET
    pull: int = UNSET
    up: int = UNSET
    ready: int = UNSET
    stop: int = UNSET
    stop_reason: str = ""
    boot_failed: int = UNSET
    disk_gb: float = 30.0
    max_concurrency: int = 4
    requests: list[Request] = field(default_factory=list)

    def in_flight(self, t: int) -> int:
        return sum(1 for r in self.requests if r.start <= t < (r.end if r.end is not None else self.stop))


@dataclass
class Request:
    workload: Workload
    start: int
    end: int | None  # None: never finished (killed with its replica)
    request_id: str = ""


workloads: list[Workload] = []


def boot(w: Workload, scheduled: int, cold_start: tuple[float, float] = (20, 90)) -> Workload:
    """SCHEDULED -> IMAGE_PULL_STARTED -> UP -> READY; image pull is not metered (R1), model load is (R2)."""
    w.scheduled = scheduled
    w.pull = scheduled + jitter(1, 8)
    w.up = w.pull + jitter(15, 75)
    if w.kind == "SERVING":
        w.ready = w.up + jitter(*cold_start)
    workloads.append(w)
    return w


def llama_flex(n: int) -> Workload:
    return Workload(f"wl-llama-flex-{n:02d}", "ep-llama", "SERVING", "A100", disk_gb=rng.uniform(40, 44))


def whisper(n: int) -> Workload:
    return Workload(
        f"wl-whisper-{n:02d}", "ep-whisper", "SERVING", "L4", disk_gb=rng.uniform(21, 24), max_concurrency=2
    )


def llama_duration() -> int:
    # LLM generation: lognormal, median ~7 s, a tail of long streamed completions.
    return round(min(max(rng.lognormvariate(math.log(7), 0.75), 0.35), 120) * US)


def whisper_duration() -> int:
    return round(min(max(rng.lognormvariate(math.log(9), 0.6), 1.2), 75) * US)


# ----------------------------------------------------------------------------- ep-llama

active = Workload(
    "wl-llama-active-01", "ep-llama", "SERVING", "A100", worker_type="ACTIVE", disk_gb=42.0, max_concurrency=4
)
# Always-on (min_replica=1): warm since before the day; the file carries it as a day-bounded session.
active.up = at(0)
active.ready = at(0)
active.stop = at(23, 59, 59.5)
active.stop_reason = "SCALED_DOWN"
workloads.append(active)

flex1 = boot(llama_flex(1), at(7, 36) + jitter(0, 59))
flex1.stop, flex1.stop_reason = at(20, 52) + jitter(0, 59), "SCALED_DOWN"
flex2 = boot(llama_flex(2), at(8, 14) + jitter(0, 59))
flex2.stop, flex2.stop_reason = at(19, 31) + jitter(0, 59), "SCALED_DOWN"
flex3 = boot(llama_flex(3), at(9, 2) + jitter(0, 59))
oom_at = at(11, 47) + jitter(0, 59)
flex3.stop, flex3.stop_reason = oom_at, "OOM"

# A replica that never comes up: scheduled, image pull started, then boot failure (R5: not billed).
flex4 = llama_flex(4)
flex4.scheduled = at(9, 48) + jitter(0, 30)
flex4.pull = flex4.scheduled + jitter(1, 6)
flex4.boot_failed = flex4.pull + jitter(90, 170)
workloads.append(flex4)

flex5 = boot(llama_flex(5), flex4.boot_failed + jitter(8, 20))  # the autoscaler retries
flex5.stop, flex5.stop_reason = at(17, 58) + jitter(0, 59), "SCALED_DOWN"
flex6 = boot(llama_flex(6), oom_at + jitter(20, 40))  # replaces the OOM-killed replica
flex6.stop, flex6.stop_reason = at(18, 44) + jitter(0, 59), "SCALED_DOWN"
llama_replicas = [active, flex1, flex2, flex3, flex5, flex6]

# The request in flight when flex-03 runs out of memory: started, never finished.
oom_request = Request(flex3, oom_at - jitter(6, 14), None)
flex3.requests.append(oom_request)

# Requests per hour (UTC) for ep-llama: quiet night, morning peak, long afternoon, evening fall-off.
LLAMA_PER_HOUR = [4, 3, 2, 2, 2, 3, 4, 10, 29, 43, 46, 39, 32, 35, 36, 31, 26, 21, 16, 11, 8, 6, 5, 4]
arrivals: list[int] = []
for hour, per_hour in enumerate(LLAMA_PER_HOUR):
    t = at(hour) + round(rng.expovariate(per_hour / 3600) * US)
    while t < at(hour + 1):
        arrivals.append(t)
        t += round(rng.expovariate(per_hour / 3600) * US)
# A batch client fires a burst at the peak: requests overlap on the same replicas.
burst_at = at(10, 14) + jitter(0, 59)
arrivals += [burst_at + jitter(0, 2.5) for _ in range(16)]
arrivals.sort()

dropped_llama = 0
for arrival in arrivals:
    duration = llama_duration()
    start = arrival
    placed = False
    for _attempt in range(50):
        # A replica takes a request it can finish before it stops (with the idle wait of R3); the
        # OOM replica takes none that would still run in its last 35 s except the one it dies with.
        fits = [
            w
            for w in llama_replicas
            if w.ready <= start
            and start + duration <= w.stop - (IDLE_BEFORE_SCALE_DOWN_S + (30 if w is flex3 else 0)) * US
        ]
        if not fits:
            break
        free = [w for w in fits if w.in_flight(start) < w.max_concurrency]
        if free:
            w = rng.choice(free)
            w.requests.append(Request(w, start, start + duration))
            placed = True
            break
        # Every replica is at its concurrency limit: the request queues until a slot frees.
        start = min(r.end for w in fits for r in w.requests if r.end is not None and r.start <= start < r.end) + jitter(
            0.001, 0.05
        )
    if not placed:
        dropped_llama += 1  # only at the very end of the day: nothing could serve it before the last stop

# ----------------------------------------------------------------------------- ep-whisper

# The image build after a push of a new ep-whisper version (R6: billed UP to STOPPED).
build = Workload("wl-build-whisper-01", "ep-whisper", "BUILD", "A4000", disk_gb=28.0)
boot(build, at(13, 52) + jitter(0, 59))
build.stop, build.stop_reason = build.up + jitter(420, 600), "BUILD_SUCCEEDED"

# (first request arrives, how long traffic keeps coming, mean seconds between requests)
WHISPER_BURSTS = [
    (at(2, 7) + jitter(0, 59), 38 * 60, 95.0),
    (at(7, 2) + jitter(0, 59), 4 * 3600 + 40 * 60, 165.0),
    (at(9, 26) + jitter(0, 59), 95 * 60, 165.0),  # second replica while the first is busy
    (at(14, 38) + jitter(0, 59), 2 * 3600 + 10 * 60, 150.0),
    (at(21, 24) + jitter(0, 59), 31 * 60, 95.0),
]
whisper_replicas = []
for n, (trigger, traffic_s, mean_gap_s) in enumerate(WHISPER_BURSTS, start=1):
    w = boot(whisper(n), trigger + jitter(0.2, 1.5))
    # The request that woke the endpoint from zero waits through the cold start.
    t = w.ready + jitter(0.05, 0.6)
    while t < trigger + traffic_s * US:
        end = t + whisper_duration()
        w.requests.append(Request(w, t, end))
        # Gaps stay under the scale-down delay, or the replica would have gone back to zero.
        t += round(min(rng.expovariate(1 / mean_gap_s), 240.0) * US)
    w.stop = max(r.end for r in w.requests if r.end is not None) + WHISPER_SCALE_DOWN_DELAY_S * US + jitter(0.05, 1.5)
    w.stop_reason = "SCALED_DOWN"
    whisper_replicas.append(w)

# ----------------------------------------------------------------------------- ep-dev (development: true, R8)

dev = Workload("wl-dev-01", "ep-dev", "SERVING", "L4", development=True, disk_gb=20.0, max_concurrency=1)
boot(dev, at(15, 6) + jitter(0, 59), cold_start=(25, 60))
t = dev.ready + jitter(3, 20)
for _ in range(12):
    end = t + round(rng.uniform(1.5, 14) * US)
    dev.requests.append(Request(dev, t, end))
    t = end + jitter(15, 360)
dev.stop = max(r.end for r in dev.requests if r.end is not None) + 600 * US + jitter(0, 1)
dev.stop_reason = "SCALED_DOWN"

# ----------------------------------------------------------------------------- events

all_requests = sorted((r for w in workloads for r in w.requests), key=lambda r: (r.start, r.workload.workload_id))
for number, r in enumerate(all_requests, start=1):
    r.request_id = f"req-{number:06d}"

events: list[tuple[int, int, dict[str, Any]]] = []  # (occurred_at, insertion order, fields)


def emit(w: Workload, t: int, event_type: str, **extra: str | int) -> None:
    body: dict[str, Any] = {
        "event_id": "",  # numbered once every event is known, in occurred_at order
        "org_id": ORG,
        "workspace_id": WORKSPACE,
        "endpoint_id": w.endpoint_id,
        "workload_id": w.workload_id,
        "workload_kind": w.kind,
        "development": w.development,
        "instance_type": w.instance_type,
        "worker_type": w.worker_type,
        "type": event_type,
        "occurred_at": rfc3339(t),
    }
    body.update(extra)
    events.append((t, len(events), body))


def gigabytes(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


for w in workloads:
    if w.scheduled != UNSET:
        emit(w, w.scheduled, "WORKLOAD_SCHEDULED")
        emit(w, w.pull, "IMAGE_PULL_STARTED")
    if w.boot_failed != UNSET:
        emit(w, w.boot_failed, "WORKLOAD_BOOT_FAILED")
        continue
    emit(w, w.up, "WORKLOAD_UP")
    if w.ready != UNSET:
        emit(w, w.ready, "WORKLOAD_READY")
    for r in w.requests:
        emit(w, r.start, "REQUEST_STARTED", request_id=r.request_id)
        if r.end is not None:
            emit(w, r.end, "REQUEST_FINISHED", request_id=r.request_id)
    # Container disk: every 300 s after UP, then the partial interval up to the stop.
    disk = w.disk_gb
    sample = w.up + STORAGE_INTERVAL_S * US
    while sample <= w.stop:
        disk += rng.choice((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1))  # logs and caches grow slowly
        emit(
            w,
            sample,
            "STORAGE_SAMPLE",
            storage_kind="CONTAINER_DISK",
            gigabytes=gigabytes(disk),
            interval_seconds=STORAGE_INTERVAL_S,
        )
        sample += STORAGE_INTERVAL_S * US
    last = sample - STORAGE_INTERVAL_S * US
    if last < w.stop:
        emit(
            w,
            w.stop,
            "STORAGE_SAMPLE",
            storage_kind="CONTAINER_DISK",
            gigabytes=gigabytes(disk),
            interval_seconds=math.ceil((w.stop - last) / US),
        )
    emit(w, w.stop, "WORKLOAD_STOPPED", stop_reason=w.stop_reason)

# Network volume: mounted by ep-llama; reported on the always-on worker at each 5-minute mark. The
# sample at 00:00:00 covers the last 300 s of 2026-10-04; (23:55, 24:00] comes at 2026-10-06T00:00:00Z.
for k in range(DAY_US // (STORAGE_INTERVAL_S * US)):
    emit(
        active,
        k * STORAGE_INTERVAL_S * US,
        "STORAGE_SAMPLE",
        storage_kind="NETWORK_VOLUME",
        volume_id="vol-models",
        gigabytes="1200",
        interval_seconds=STORAGE_INTERVAL_S,
    )

events.sort(key=lambda e: (e[0], e[1]))
for number, (_, _, body) in enumerate(events, start=1):
    body["event_id"] = f"{ORG}-{number:06d}"

# Late arrival: about 1% of the events reach the file a few seconds to minutes after later ones.
late = set(rng.sample(range(len(events)), round(LATE_FRACTION * len(events))))
written = []
for index, (t, _, body) in enumerate(events):
    delay = jitter(3, 420) if index in late else 0
    written.append((t + delay, index, body))
# R28: an org HEARTBEAT every 2 minutes while workloads are up (the ACTIVE worker is up all day). A heartbeat says
# every event of the org that occurred before it has been sent, so it is written after the last of those (late
# ones included). Heartbeats draw nothing from rng: the events and their late arrivals are as before.
HEARTBEAT_EVERY_S = 120
latest_written = 0
heartbeats = 0
for k in range(1, DAY_US // (HEARTBEAT_EVERY_S * US)):
    beat = k * HEARTBEAT_EVERY_S * US
    while heartbeats < len(events) and events[heartbeats][0] < beat:
        latest_written = max(latest_written, written[heartbeats][0])
        heartbeats += 1
    body = {"event_id": f"{ORG}-hb-{k:04d}", "org_id": ORG, "type": "HEARTBEAT", "occurred_at": rfc3339(beat)}
    written.append((max(beat, latest_written), len(events) + k, body))
heartbeat_count = k
written.sort(key=lambda a: (a[0], a[1]))

out = sys.stdout
for _, _, body in written:
    out.write(json.dumps(body) + "\n")

# ----------------------------------------------------------------------------- summary (stderr)

err = sys.stderr
late_ids = [events[i][2]["event_id"] for i in sorted(late)]
seen_max = ""
out_of_order = 0
for _, _, body in written:
    if body["type"] == "HEARTBEAT":
        continue  # counted on its own line below
    if body["occurred_at"] < seen_max:
        out_of_order += 1
    seen_max = max(seen_max, body["occurred_at"])

overlapping = 0
for w in workloads:
    spans = sorted((r.start, r.end if r.end is not None else w.stop) for r in w.requests)
    for i, (start, _) in enumerate(spans):
        if any(s <= start < e for s, e in spans[:i]):
            overlapping += 1

print(
    f"# examples/day.jsonl: seed {SEED}, {len(events)} events, 2026-10-05 UTC, org {ORG}, workspace {WORKSPACE}",
    file=err,
)
print("\n## Events by type\n", file=err)
print("| type | count |\n|---|---:|", file=err)
for event_type, count in sorted(Counter(b["type"] for _, _, b in events).items()):
    print(f"| {event_type} | {count} |", file=err)
kinds = Counter(b["storage_kind"] for _, _, b in events if b["type"] == "STORAGE_SAMPLE")
print(
    f"| (STORAGE_SAMPLE: CONTAINER_DISK {kinds['CONTAINER_DISK']}, NETWORK_VOLUME {kinds['NETWORK_VOLUME']}) | |",
    file=err,
)
print(f"| **total** | **{len(events)}** |", file=err)

print("\n## Workloads (times 2026-10-05 UTC)\n", file=err)
print(
    "| workload_id | endpoint | kind | instance | worker | dev | UP | READY | STOP | stop_reason | requests |", file=err
)
print("|---|---|---|---|---|---|---|---|---|---|---:|", file=err)
for w in sorted(workloads, key=lambda w: (w.up if w.up != UNSET else w.scheduled, w.workload_id)):
    if w.boot_failed != UNSET:
        up, ready, stop, reason = "-", "-", "-", f"BOOT_FAILED at {hms(w.boot_failed)}"
    else:
        up = hms(w.up)
        ready = hms(w.ready) if w.ready != UNSET else "-"
        stop, reason = hms(w.stop), w.stop_reason
    print(
        f"| {w.workload_id} | {w.endpoint_id} | {w.kind} | {w.instance_type} | {w.worker_type} | "
        f"{str(w.development).lower()} | {up} | {ready} | {stop} | {reason} | {len(w.requests)} |",
        file=err,
    )

print("\n## Facts to check\n", file=err)
print(
    f"- Requests: {len(all_requests)} (req-000001 .. req-{len(all_requests):06d}); "
    f"{overlapping} start while another request is in flight on the same replica; "
    f"{dropped_llama} generated arrival(s) dropped because no replica could finish them before the day closed.",
    file=err,
)
print(
    f"- OOM: {flex3.workload_id} stopped OOM at {hms(flex3.stop)}; request {oom_request.request_id} "
    f"(started {hms(oom_request.start)}) has REQUEST_STARTED and no REQUEST_FINISHED.",
    file=err,
)
print(
    f"- Boot failure: {flex4.workload_id} WORKLOAD_BOOT_FAILED at {hms(flex4.boot_failed)}, never UP (R5); "
    f"replaced by {flex5.workload_id}.",
    file=err,
)
print(f"- Development: {dev.workload_id} on ep-dev (development: true, R8), {len(dev.requests)} requests.", file=err)
print(
    f"- Build: {build.workload_id} ({build.instance_type}, BUILD) UP {hms(build.up)} to {hms(build.stop)}, "
    f"BUILD_SUCCEEDED.",
    file=err,
)
print("- ep-whisper has no replica (scaled to zero, R9) outside the whisper windows above.", file=err)
print(
    f"- Heartbeats (R28): {heartbeat_count} org HEARTBEATs (`acme-hb-NNNN`), every {HEARTBEAT_EVERY_S} s from "
    f"{hms(HEARTBEAT_EVERY_S * US)} to {hms(heartbeat_count * HEARTBEAT_EVERY_S * US)}, each written after every "
    "event that occurred before it (late ones included); not counted in the tables above.",
    file=err,
)
print(
    f"- Late arrivals: {len(late)} events written later than their occurred_at order (delays 3 s to 7 min); "
    f"{out_of_order} lines have an occurred_at earlier than a line before them. "
    f"Late event_ids: {', '.join(late_ids)}.",
    file=err,
)

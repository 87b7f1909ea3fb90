"""Realistic usage-event streams for the benchmarks: orgs with endpoints, autoscaled replicas, requests, storage.

Deterministic for a seed and cheap to generate, because the client processes build these messages inside the
timed window. Events follow billing-rules.md ("Usage events"): replicas go SCHEDULED -> IMAGE_PULL_STARTED ->
UP -> READY -> requests -> STOPPED (some OOM, CRASH or BOOT_FAILED), CONTAINER_DISK samples every 300 s per
worker, NETWORK_VOLUME samples every 300 s per volume, image builds after pushes, development endpoints and
training jobs. Traffic follows a diurnal curve like examples/generate_day.py's, and replicas follow traffic.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from usageledger.v1 import ledger_pb2 as pb

US = 1_000_000
STEP_US = 60 * US  # the simulation advances a minute at a time
STORAGE_INTERVAL_US = 300 * US

# Per-hour traffic shape (UTC), from examples/generate_day.py's ep-llama curve, as a fraction of the peak.
_HOURLY = [4, 3, 2, 2, 2, 3, 4, 10, 29, 43, 46, 39, 32, 35, 36, 31, 26, 21, 16, 11, 8, 6, 5, 4]
LOAD = [h / max(_HOURLY) for h in _HOURLY]

# Instance types of the default price book (R11) with the weight they get in generated endpoints.
SERVING_TYPES = [("A100", 5), ("H100 PRO", 4), ("L4", 4), ("L40S", 3), ("A6000", 2), ("4090 PRO", 2), ("H200 PRO", 1)]
BUILD_TYPE = "A4000"
TRAINING_TYPES = ["H100 PRO", "B200", "A100"]

ET = pb.EventType
_SCHEDULED = ET.Value("EVENT_TYPE_WORKLOAD_SCHEDULED")
_PULL = ET.Value("EVENT_TYPE_IMAGE_PULL_STARTED")
_UP = ET.Value("EVENT_TYPE_WORKLOAD_UP")
_READY = ET.Value("EVENT_TYPE_WORKLOAD_READY")
_BOOT_FAILED = ET.Value("EVENT_TYPE_WORKLOAD_BOOT_FAILED")
_STOPPED = ET.Value("EVENT_TYPE_WORKLOAD_STOPPED")
_REQ_STARTED = ET.Value("EVENT_TYPE_REQUEST_STARTED")
_REQ_FINISHED = ET.Value("EVENT_TYPE_REQUEST_FINISHED")
_STORAGE = ET.Value("EVENT_TYPE_STORAGE_SAMPLE")
_SERVING = pb.WorkloadKind.Value("WORKLOAD_KIND_SERVING")
_BUILD = pb.WorkloadKind.Value("WORKLOAD_KIND_BUILD")
_TRAINING = pb.WorkloadKind.Value("WORKLOAD_KIND_TRAINING")
_FLEX = pb.WorkerType.Value("WORKER_TYPE_FLEX")
_ACTIVE = pb.WorkerType.Value("WORKER_TYPE_ACTIVE")
_DISK = pb.StorageKind.Value("STORAGE_KIND_CONTAINER_DISK")
_VOLUME = pb.StorageKind.Value("STORAGE_KIND_NETWORK_VOLUME")
_STOP = {
    name: pb.StopReason.Value("STOP_REASON_" + name)
    for name in ("SCALED_DOWN", "OOM", "CRASH", "COMPLETED", "CANCELLED")
}
_STOP.update(BUILD_SUCCEEDED=pb.StopReason.Value("STOP_REASON_BUILD_SUCCEEDED"))
_STOP.update(BUILD_FAILED=pb.StopReason.Value("STOP_REASON_BUILD_FAILED"))


@dataclass
class Workload:
    """One replica, build or training container, with a proto template holding its constant fields."""

    template: pb.UsageEvent
    up: int = -1
    ready: int = -1
    stop: int = -1
    next_disk: int = -1
    last_disk: int = -1
    disk_gb: float = 30.0
    stop_due: int = -1  # training jobs: when the job ends


@dataclass
class Endpoint:
    endpoint_id: str
    instance_type: str
    min_replicas: int
    max_replicas: int
    requests_per_second: float  # per ready replica at peak load
    median_seconds: float
    development: bool = False
    active_first: bool = False  # min_replica >= 1 served by an ACTIVE worker
    volume: tuple[str, int] | None = None  # (volume_id, gigabytes)
    replicas: list[Workload] = field(default_factory=list)


class OrgStream:
    """One org's events, a simulated minute at a time, from `start` (microseconds since the epoch)."""

    def __init__(
        self, org_id: str, seed: int, start: int, *, endpoints: int, traffic: float = 1.0, ids: str = "random"
    ) -> None:
        """`ids`: "random" event and request IDs (UUIDv4-like, so every insert lands on a random index page) or
        "ordered" ones (time-ordered like ULID/UUIDv7, so inserts append to the right edge of each index)."""
        if ids not in ("random", "ordered"):
            raise ValueError(f"ids must be 'random' or 'ordered', not {ids!r}")
        self.org_id = org_id
        self.ordered_ids = ids == "ordered"
        self._ids = 0
        self.rng = random.Random(seed)
        self.now = start
        self.traffic = traffic
        self.workspace_id = f"ws-{self.rng.choice(['main', 'prod', 'research', 'staging'])}"
        self._workloads = 0
        rng = self.rng
        types = [t for t, w in SERVING_TYPES for _ in range(w)]
        self.endpoints = []
        for n in range(endpoints):
            development = n > 0 and rng.random() < 0.1
            lo = 0 if development or rng.random() < 0.4 else 1
            self.endpoints.append(
                Endpoint(
                    endpoint_id=f"ep-{n:03d}-{rng.choice(['llama', 'whisper', 'sdxl', 'mistral', 'embed', 'qwen'])}",
                    instance_type=rng.choice(types),
                    min_replicas=lo,
                    max_replicas=1 if development else lo + rng.randint(1, 5),
                    requests_per_second=rng.uniform(0.01, 0.08) * traffic,
                    median_seconds=rng.uniform(0.5, 12),
                    development=development,
                    active_first=lo == 1 and rng.random() < 0.5,
                    volume=(f"vol-{n:03d}", rng.choice([200, 500, 1200, 2500])) if rng.random() < 0.4 else None,
                )
            )
        self.training: list[Workload] = []

    # -- one event ---------------------------------------------------------------------------------

    def _new_id(self) -> str:
        if self.ordered_ids:
            self._ids += 1
            return f"{self.now // US:010x}-{self._ids:010x}"
        return f"{self.rng.getrandbits(128):032x}"

    def _workload(self, ep: Endpoint, kind: int, instance_type: str, worker: int) -> Workload:
        self._workloads += 1
        template = pb.UsageEvent(
            org_id=self.org_id,
            workspace_id=self.workspace_id,
            endpoint_id=ep.endpoint_id,
            workload_id=f"wl-{ep.endpoint_id[3:6]}-{self._workloads:06d}",
            workload_kind=kind,
            development=ep.development,
            instance_type=instance_type,
            worker_type=worker,
        )
        return Workload(template, disk_gb=round(self.rng.uniform(20, 50), 1))

    def _event(self, w: Workload, event_type: int, t: int) -> pb.UsageEvent:
        event = pb.UsageEvent()
        event.CopyFrom(w.template)
        event.event_id = self._new_id()
        event.type = event_type
        seconds, micros = divmod(t, US)
        event.occur_time.seconds = seconds
        event.occur_time.nanos = micros * 1000
        return event

    def _disk_sample(self, w: Workload, t: int, interval_us: int) -> pb.UsageEvent:
        event = self._event(w, _STORAGE, t)
        event.storage_kind = _DISK
        if self.rng.random() < 0.1:
            w.disk_gb = round(w.disk_gb + 0.1, 1)
        event.gigabytes = _decimal(w.disk_gb)
        event.interval_seconds = max(1, math.ceil(interval_us / US))
        return event

    def _stop(self, w: Workload, t: int, reason: str, out: list[pb.UsageEvent]) -> None:
        w.stop = t
        if w.last_disk < t:
            out.append(self._disk_sample(w, t, t - w.last_disk))
        event = self._event(w, _STOPPED, t)
        event.stop_reason = _STOP[reason]
        out.append(event)

    # -- one simulated minute ----------------------------------------------------------------------

    def step(self) -> list[pb.UsageEvent]:
        rng = self.rng
        t0 = self.now
        t1 = t0 + STEP_US
        load = LOAD[(t0 // (3600 * US)) % 24]
        out: list[pb.UsageEvent] = []
        for ep in self.endpoints:
            live = [w for w in ep.replicas if w.stop < 0]
            target = ep.min_replicas + round((ep.max_replicas - ep.min_replicas) * load)
            while len(live) < target:
                live.append(self._boot(ep, t0 + rng.randrange(STEP_US), first=not live, out=out))
            while len(live) > target and len(live) > 1:
                w = live.pop()  # the newest replica goes first
                if w.up >= 0:
                    self._stop(w, max(t0 + rng.randrange(STEP_US), w.ready + 5 * US), "SCALED_DOWN", out)
            for w in live:
                if w.stop >= 0 or w.up < 0:
                    continue
                if rng.random() < 0.0003:  # a replica dies now and then, mid-request or idle
                    self._stop(w, max(t0 + rng.randrange(STEP_US), w.ready + US), rng.choice(["OOM", "CRASH"]), out)
                    continue
                self._requests(ep, w, t0, t1, load, out)
                while w.next_disk < t1:
                    out.append(self._disk_sample(w, w.next_disk, STORAGE_INTERVAL_US))
                    w.last_disk = w.next_disk
                    w.next_disk += STORAGE_INTERVAL_US
            ep.replicas = [w for w in ep.replicas if w.stop < 0]
            if ep.volume is not None:
                mark = (t0 // STORAGE_INTERVAL_US + 1) * STORAGE_INTERVAL_US
                if mark < t1 and ep.replicas:
                    holder = ep.replicas[0]
                    event = self._event(holder, _STORAGE, mark)
                    event.storage_kind = _VOLUME
                    event.volume_id, gigabytes = ep.volume
                    event.gigabytes = str(gigabytes)
                    event.interval_seconds = 300
                    out.append(event)
            if not ep.development and rng.random() < 0.0015:  # a push: one image build
                self._build(ep, t0 + rng.randrange(STEP_US), out)
        if rng.random() < 0.0005 and len(self.training) < 2:
            self._training(t0 + rng.randrange(STEP_US), out)
        for w in self.training:
            if w.stop < 0 and w.stop_due <= t1:
                self._stop(w, w.stop_due, rng.choice(["COMPLETED", "COMPLETED", "CANCELLED"]), out)
            elif w.stop < 0:
                while w.next_disk < t1:
                    out.append(self._disk_sample(w, w.next_disk, STORAGE_INTERVAL_US))
                    w.last_disk = w.next_disk
                    w.next_disk += STORAGE_INTERVAL_US
        self.training = [w for w in self.training if w.stop < 0]
        self.now = t1
        return out

    def _boot(self, ep: Endpoint, t: int, *, first: bool, out: list[pb.UsageEvent]) -> Workload:
        rng = self.rng
        worker = _ACTIVE if first and ep.active_first else _FLEX
        w = self._workload(ep, _SERVING, ep.instance_type, worker)
        out.append(self._event(w, _SCHEDULED, t))
        pull = t + rng.randrange(1 * US, 8 * US)
        out.append(self._event(w, _PULL, pull))
        if rng.random() < 0.02:  # R5: never comes up
            w.stop = pull + rng.randrange(90 * US, 170 * US)
            out.append(self._event(w, _BOOT_FAILED, w.stop))
            return w
        w.up = pull + rng.randrange(15 * US, 75 * US)
        w.ready = w.up + rng.randrange(20 * US, 90 * US)
        w.next_disk = w.up + STORAGE_INTERVAL_US
        w.last_disk = w.up
        out.append(self._event(w, _UP, w.up))
        out.append(self._event(w, _READY, w.ready))
        ep.replicas.append(w)
        return w

    def _requests(self, ep: Endpoint, w: Workload, t0: int, t1: int, load: float, out: list[pb.UsageEvent]) -> None:
        rng = self.rng
        begin = max(t0, w.ready)
        if begin >= t1:
            return
        expected = ep.requests_per_second * (0.3 + 0.7 * load) * (t1 - begin) / US
        count = max(0, round(expected + rng.gauss(0, math.sqrt(expected))))
        for _ in range(count):
            start = rng.randrange(begin, t1)
            request_id = "req-" + self._new_id()
            event = self._event(w, _REQ_STARTED, start)
            event.request_id = request_id
            out.append(event)
            duration = int(min(max(rng.lognormvariate(math.log(ep.median_seconds), 0.7), 0.05), 300) * US)
            event = self._event(w, _REQ_FINISHED, start + duration)
            event.request_id = request_id
            out.append(event)

    def _build(self, ep: Endpoint, t: int, out: list[pb.UsageEvent]) -> None:
        rng = self.rng
        w = self._workload(ep, _BUILD, BUILD_TYPE, _FLEX)
        out.append(self._event(w, _SCHEDULED, t))
        w.up = t + rng.randrange(5 * US, 30 * US)
        w.last_disk = w.up
        out.append(self._event(w, _UP, w.up))
        reason = "BUILD_SUCCEEDED" if rng.random() < 0.9 else "BUILD_FAILED"
        self._stop(w, w.up + rng.randrange(120 * US, 600 * US), reason, out)

    def _training(self, t: int, out: list[pb.UsageEvent]) -> None:
        rng = self.rng
        job = Endpoint(f"train-{rng.getrandbits(24):06x}", rng.choice(TRAINING_TYPES), 1, 1, 0, 1)
        w = self._workload(job, _TRAINING, job.instance_type, _FLEX)
        out.append(self._event(w, _SCHEDULED, t))
        w.up = t + rng.randrange(10 * US, 60 * US)
        w.last_disk = w.up
        w.next_disk = w.up + STORAGE_INTERVAL_US
        w.stop_due = w.up + rng.randrange(1800 * US, 6 * 3600 * US)
        out.append(self._event(w, _UP, w.up))
        self.training.append(w)


def _decimal(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def org_ids(count: int, prefix: str = "org") -> list[str]:
    return [f"{prefix}-{n:04d}" for n in range(count)]


def interleaved(streams: list[OrgStream], limit: int, *, until: int) -> Iterator[pb.UsageEvent]:
    """Events of several orgs minute by minute, as one control-plane shard would send them; stops at `limit`.

    Raises if the simulated clock passes `until`, which would make the server reject events from the future.
    """
    sent = 0
    while True:
        for stream in streams:
            if stream.now >= until:
                raise RuntimeError(f"{stream.org_id}: the simulated clock reached the present; start earlier")
            for event in stream.step():
                yield event
                sent += 1
                if sent >= limit:
                    return


def timestamp(micros: int) -> Timestamp:
    seconds, fraction = divmod(micros, US)
    return Timestamp(seconds=seconds, nanos=fraction * 1000)

"""One check: a power loss at one point of a recorded run, under one fault policy.

Deterministic given the run directory, the point, the policy and its seed, so every failure the
test reports can be rebuilt and inspected with replay.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.powerloss.check import Verdict, check_image
from tests.reliability.powerloss.crash import CrashRun
from tests.reliability.powerloss.disk import POLICIES, crash_image, timeline, write_image
from tests.reliability.powerloss.workload import Ack


@dataclass(frozen=True, slots=True)
class PointCheck:
    point: int
    policy: str
    image_dir: Path
    acks: list[Ack]  # acknowledged before the power loss
    unsynced: int  # mutations not yet covered by a barrier: what the policy may lose
    verdict: Verdict

    def describe(self, run: CrashRun) -> str:
        return (
            f"seed {run.seed}, point {self.point}, policy {self.policy} (rebuild with: python -m "
            f"tests.reliability.powerloss.replay {run.run_dir} {self.point} {self.policy})"
        )


def policy_seed(run: CrashRun, point: int, policy: str) -> str:
    return f"{run.seed}/{point}/{policy}"


def check_point(run: CrashRun, point: int, policy: str, image_dir: Path) -> PointCheck:
    """Build the image a power loss right after record `point` leaves under `policy`, and check it."""
    records, acks, deployment_id = run.cut(point)
    tl = timeline(run.snapshot, records)
    rng = random.Random(policy_seed(run, point, policy))
    write_image(crash_image(tl, POLICIES[policy](rng), rng), image_dir)
    verdict = check_image(image_dir, image_dir.with_name(image_dir.name + "-scratch"), acks, deployment_id)
    return PointCheck(point, policy, image_dir, acks, len(tl.mutations) - len(tl.synced), verdict)

"""A finished scan's conclusions: one finding per environment, base and kind (kept across scans until resolved),
rebuilds of moved bases, deployments flagged for redeploy, and the report to the webhook."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.builds import BuildRecord, BuildStatus
from shared.domain.errors import EnvhubError, NotFound, StaleRecord
from shared.domain.patching import Conclusion, base_use, conclude
from shared.domain.records import EnvironmentRecord
from shared.domain.scans import REPORT_CAP, Deployment, Finding, FindingStatus, FindingType, Scan, finding_id
from shared.ports import BuildStore, DeploymentStore, Notifier, ScanStore
from shared.services.environments import EnvironmentService
from shared.services.images import ImageService

log = logging.getLogger(__name__)
LIVE = frozenset({FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED, FindingStatus.SNOOZED})
PAGE = 200


@dataclass(frozen=True)
class RebuildPolicy:
    """Auto-rebuild on `base_moved`: on by default, switched per workspace."""

    default: bool = True
    workspaces: dict[str, bool] = field(default_factory=dict)

    def rebuilds(self, workspace: str) -> bool:
        """Whether this workspace's moved bases are rebuilt at once."""
        return self.workspaces.get(workspace, self.default)


@dataclass
class _Pass:
    """What one conclusion pass has gathered so far."""

    live: dict[str, dict[str, Finding]] = field(default_factory=dict)  # workspace -> id -> live finding
    seen: set[str] = field(default_factory=set)
    made: list[Finding] = field(default_factory=list)
    kept: set[tuple[str, str, str, str]] = field(default_factory=set)  # uses this scan could not judge
    new: list[Finding] = field(default_factory=list)
    moved: list[tuple[EnvironmentRecord, Finding]] = field(default_factory=list)


class Concluder:
    """Turns a scan's facts into findings, rebuilds, redeploy flags and a report."""

    def __init__(self, *, scans: ScanStore, builds: BuildStore, deployments: DeploymentStore,
                 environments: EnvironmentService, images: ImageService, notifier: Notifier, default_registry: str,
                 policy: RebuildPolicy, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.scans = scans
        self.builds = builds
        self.deployments = deployments
        self.environments = environments
        self.images = images
        self.notifier = notifier
        self.default_registry = default_registry
        self.policy = policy
        self.clock = clock

    def conclude(self, scan: Scan, records: Iterable[EnvironmentRecord]) -> dict[str, Any]:
        """Everything a finished scan does; returns the scan's fields to record."""
        now = self.clock()
        state = _Pass()
        last_builds: dict[str, BuildRecord | None] = {}
        for record in records:
            if record.workspace not in state.live:
                state.live[record.workspace] = self._live(record.workspace)
            if record.description.hash not in last_builds:
                last_builds[record.description.hash] = self.builds.latest_for_hash(record.description.hash)
            self._judge(scan, record, last_builds[record.description.hash], state, now)
        self._resolve(scan, state, now)
        for record, finding in state.moved:
            if self.policy.rebuilds(record.workspace):
                self._rebuild(record, finding)
        redeploys, flagged = self._flag_deployments(state)
        news = {f.id for f in state.new}
        fields: dict[str, Any] = {
            "new_findings": sorted(news),
            "redeploys": [f"{d['workspace']}/{d['deployment']}" for d in redeploys],
            "findings": [summary(f) | {"new": f.id in news} for f in state.made[:REPORT_CAP]],
            "truncated": max(0, len(state.made) - REPORT_CAP),
            "redeploy": flagged[:REPORT_CAP]}
        if state.new or redeploys:
            report = {"scan_id": scan.id, "findings": [summary(f) for f in state.new], "redeploy": redeploys}
            try:
                self.notifier.notify(report)
                fields |= {"notified": True, "notify_error": None}
            except Exception as error:  # a failed delivery is recorded on the scan, never fails it
                log.warning("scan %s: the report was not delivered: %s", scan.id, error)
                fields |= {"notified": False, "notify_error": str(error)}
        return fields

    def _live(self, workspace: str) -> dict[str, Finding]:
        found: dict[str, Finding] = {}
        cursor: str | None = None
        while True:
            page = self.scans.list_findings(workspace, top=PAGE, cursor=cursor, statuses=LIVE)
            found |= {f.id: f for f in page.items}
            cursor = page.next_cursor
            if cursor is None:
                return found

    def _judge(self, scan: Scan, record: EnvironmentRecord, last_build: BuildRecord | None, state: _Pass,
               now: datetime) -> None:
        for text in record.description.base_images:
            use = base_use(text, default_registry=self.default_registry)
            if use is None:
                continue
            key = (record.workspace, record.name, record.version, text)
            # A repository the registry failed on, or a build still deciding its base: judged next time.
            if use.repository not in scan.facts or (use.mutable and last_build is not None
                                                    and last_build.status is not BuildStatus.SUCCEEDED):
                state.kept.add(key)
                continue
            used = None if last_build is None else last_build.base_digests.get(text)
            conclusion = conclude(use, scan.facts[use.repository].get(use.reference), used, now)
            if conclusion is not None:
                finding, new = self._save(scan, record, text, conclusion, state, now)
                state.seen.add(finding.id)
                state.made.append(finding)
                if new:
                    state.new.append(finding)
                if finding.type is FindingType.BASE_MOVED and finding.status is not FindingStatus.SNOOZED:
                    state.moved.append((record, finding))

    def _save(self, scan: Scan, record: EnvironmentRecord, text: str, conclusion: Conclusion, state: _Pass,
              now: datetime) -> tuple[Finding, bool]:
        """Create or refresh the finding (optimistic: an overlapping scan makes the same finding, never two)."""
        fid = finding_id(record.workspace, record.name, record.version, conclusion.type, text)
        known = state.live[record.workspace].get(fid)
        facts = {"current": conclusion.current, "available": conclusion.available, "overdue": conclusion.overdue,
                 "available_created": conclusion.available_created, "detail": conclusion.detail,
                 "last_seen": now, "last_scan": scan.id}
        for _ in range(20):
            current = known or self.scans.get_finding(record.workspace, fid)
            known = None
            if current is None or current.status is FindingStatus.RESOLVED:
                fresh = Finding(id=fid, workspace=record.workspace, environment_name=record.name,
                                environment_version=record.version, type=conclusion.type, base_image=text,
                                first_seen=now, revision=0 if current is None else current.revision, **facts)
                new = True
            else:
                waking = current.status is FindingStatus.SNOOZED and (current.snoozed_until or now) <= now
                fresh = current.model_copy(update={**facts, **({"status": FindingStatus.OPEN, "snoozed_until": None}
                                                               if waking else {})})
                new = False
            try:
                saved = self.scans.put_finding(fresh)
            except StaleRecord:
                continue
            state.live[record.workspace][fid] = saved
            return saved, new
        raise StaleRecord(f"finding {fid} kept changing under this scan", where=fid)

    def _resolve(self, scan: Scan, state: _Pass, now: datetime) -> None:
        """Live findings this scan did not make again, on repositories it did see, are resolved."""
        for workspace, live in state.live.items():
            for finding in list(live.values()):
                use = base_use(finding.base_image, default_registry=self.default_registry)
                key = (workspace, finding.environment_name, finding.environment_version, finding.base_image)
                if key in state.kept and finding.id not in state.seen:
                    state.seen.add(finding.id)
                    state.made.append(finding)  # not judged this time: still listed, unchanged
                    continue
                if finding.id in state.seen or use is None or use.repository not in scan.facts:
                    continue
                try:
                    self.scans.put_finding(finding.model_copy(update={"status": FindingStatus.RESOLVED,
                                                                      "resolved_at": now, "last_scan": scan.id}))
                    del live[finding.id]
                except StaleRecord:
                    log.info("finding %s changed while being resolved; the next scan looks again", finding.id)

    def _rebuild(self, record: EnvironmentRecord, finding: Finding) -> None:
        try:
            self.images.rebuild(record, reason=finding.detail or "the base image moved")
        except EnvhubError as error:
            log.warning("could not queue the rebuild of %s:%s: %s", record.name, record.version, error)

    def _flag_deployments(self, state: _Pass) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Flag the deployments whose image is not their environment's current one, or whose environment has a
        live finding; clear the flag of the others. Returns (newly flagged, every flagged)."""
        newly: list[dict[str, str]] = []
        flagged: list[dict[str, str]] = []
        digests: dict[tuple[str, str, str], str | None] = {}
        for deployment in self.deployments.each():
            reasons = self._reasons(deployment, state, digests)
            needs, reason = (deployment.needs_redeploy, deployment.redeploy_reason) if reasons is None \
                else (bool(reasons), "; ".join(reasons) or None)  # None: the registry could not tell, keep it
            entry = {"workspace": deployment.workspace, "deployment": deployment.name,
                     "environment": deployment.environment, "reason": reason or ""}
            if needs:
                flagged.append(entry)
            if (needs, reason) == (deployment.needs_redeploy, deployment.redeploy_reason):
                continue
            self.deployments.put(deployment.model_copy(update={"needs_redeploy": needs, "redeploy_reason": reason,
                                                               "updated_at": self.clock()}))
            if needs and not deployment.needs_redeploy:
                newly.append(entry)
        return newly, flagged

    def _reasons(self, deployment: Deployment, state: _Pass,
                 digests: dict[tuple[str, str, str], str | None]) -> list[str] | None:
        key = (deployment.workspace, deployment.environment_name, deployment.environment_version)
        try:
            if key not in digests:
                record = self.environments.get(workspace=key[0], name=key[1], version=key[2])
                digests[key] = self.images.current_digest(record)
        except NotFound:
            return [f"its environment {deployment.environment} no longer exists"]
        except EnvhubError as error:
            log.warning("deployment %s/%s not judged: %s", deployment.workspace, deployment.name, error)
            return None
        reasons = []
        if digests[key] is not None and digests[key] != deployment.image_digest:
            reasons.append(f"it runs {deployment.image_digest}, its environment's image is now {digests[key]}")
        live = state.live.get(deployment.workspace)
        if live is None:
            live = state.live[deployment.workspace] = self._live(deployment.workspace)
        for finding in live.values():
            if (finding.environment_name, finding.environment_version) == key[1:] and \
                    finding.status is not FindingStatus.SNOOZED:
                reasons.append(f"{finding.type.value} on {finding.base_image}")
        return reasons


def summary(finding: Finding) -> dict[str, Any]:
    """A finding as the report and `envhub scan --json` print it."""
    return {"workspace": finding.workspace, "environment": finding.environment, "type": finding.type.value,
            "base_image": finding.base_image, "current": finding.current, "available": finding.available,
            "overdue": finding.overdue}

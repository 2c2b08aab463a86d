"""Scan reports to a webhook: the JSON report as is, or a Teams-compatible message card; retried with backoff."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.domain.errors import Unavailable


class NoNotifier:
    """No webhook configured: reports stay in the scan records."""

    def check(self) -> None:
        """Nothing to reach."""

    def notify(self, report: dict[str, Any]) -> None:
        """Nothing to send."""


class WebhookNotifier:
    """POSTs each report; 5xx, 429 and transport errors are retried, then raised as Unavailable."""

    def __init__(self, url: str, *, format: Literal["json", "teams"] = "json", attempts: int = 3,
                 backoff: float = 1.0, timeout: float = 10.0) -> None:
        self.url = url
        self.format = format
        self._client = httpx.Client(timeout=timeout)
        self._retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=backoff, max=30),
                                  retry=retry_if_exception_type(_Again), reraise=True)

    def check(self) -> None:
        """The webhook's host answers at all (any HTTP status; a HEAD may well be refused)."""
        try:
            self._client.head(self.url)
        except httpx.HTTPError as error:
            raise Unavailable(f"the scan webhook did not answer: {error}", where="webhook") from error

    def notify(self, report: dict[str, Any]) -> None:
        """Deliver one report, or raise Unavailable with the last reason."""
        body = report if self.format == "json" else teams_card(report)
        try:
            for attempt in self._retrying.copy():
                with attempt:
                    self._post(body)
        except _Again as error:
            raise Unavailable(f"the scan webhook refused the report: {error}", where="webhook") from error

    def _post(self, body: dict[str, Any]) -> None:
        try:
            response = self._client.post(self.url, json=body)
        except httpx.HTTPError as error:
            raise _Again(f"{type(error).__name__}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise _Again(f"answered {response.status_code}")
        if not response.is_success:
            raise Unavailable(f"the scan webhook answered {response.status_code}: {response.text[:200]}",
                              where="webhook")


class _Again(Exception):
    """A delivery worth trying again."""


def teams_card(report: dict[str, Any]) -> dict[str, Any]:
    """The report as an Office 365 connector MessageCard, which Teams incoming webhooks accept."""
    findings = report.get("findings", [])
    redeploys = report.get("redeploy", [])
    facts = [{"name": f"{f['workspace']}/{f['environment']}",
              "value": f"{f['type']}: {f['base_image']} {f.get('current') or ''} → {f.get('available') or ''}"
                       + (" (overdue)" if f.get("overdue") else "")} for f in findings[:25]]
    facts += [{"name": f"redeploy {d['workspace']}/{d['deployment']}", "value": d["reason"]} for d in redeploys[:25]]
    return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "themeColor": "D83B01",
            "summary": f"envhub scan {report.get('scan_id')}: {len(findings)} new findings, {len(redeploys)} "
                       "deployments to redeploy",
            "sections": [{"activityTitle": f"envhub patch scan {report.get('scan_id')}", "facts": facts}]}

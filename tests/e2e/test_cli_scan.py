"""The patch watch through the CLI against a real server, in both homes: a scan with progress, its JSON report,
and the findings it leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.test_cli_session import envhub
from tests.registry_seed import push_history
from tests.support import authed


def test_scan_then_findings(server: str, tmp_path: Path) -> None:
    registry = authed.get(f"{server}/api/health").json()["registry"]["host"]
    now = datetime.now(UTC)
    push_history(registry, "team/base", [("20240101.v1", now - timedelta(days=90)),
                                         ("20240201.v1", now - timedelta(days=40))])
    (tmp_path / "env.yml").write_text(f"name: trainer\nimage: {registry}/team/base:20240101.v1\n")
    envhub("register", str(tmp_path / "env.yml"), "--url", server, "--workspace", "ml")

    report = json.loads(envhub("scan", "--wait", "--json", "--poll", "0.2", "--url", server).stdout)
    assert report["status"] == "finished" and report["redeploy"] == []
    assert report["findings"] == [{"workspace": "ml", "environment": "trainer:1", "type": "patch_available",
                                   "base_image": f"{registry}/team/base:20240101.v1", "current": "20240101.v1",
                                   "available": "20240201.v1", "overdue": True}]
    listed = json.loads(envhub("findings", "--json", "--url", server, "--workspace", "ml").stdout)
    assert [(f["environment"], f["type"], f["status"]) for f in listed] == [("trainer:1", "patch_available", "open")]
    shown = envhub("scan", "--wait", "--url", server, "--poll", "0.2").stdout
    assert "patch_available" in shown and "20240201.v1" in shown

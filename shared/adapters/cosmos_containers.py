"""Environment containers on Cosmos DB, read from the per-name head documents the Cosmos store keeps."""

from __future__ import annotations

from shared.adapters.cosmos_common import Doc, Docs
from shared.domain.records import Container
from shared.ports import Page

# Heads of names that are not anonymous (heads written before the flag existed have none: those are checked on
# their cached record), by name; `listed` is "has a live version that is not anonymous".
_HEADS = ("SELECT * FROM c WHERE c.workspace = @ws AND c.type = 'head' "
          "AND (NOT IS_DEFINED(c.anonymous) OR c.anonymous = false){only} ORDER BY c.name")
_ONLY = {None: "", False: " AND c.listed = true", True: " AND IS_NULL(c.latest)"}
_NEWEST = ("SELECT TOP 1 VALUE c.version FROM c WHERE c.workspace = @ws AND c.type = 'version' AND c.name = @name "
           "ORDER BY c.key DESC")


def container_of(docs: Docs, head: Doc) -> Container | None:
    """The container a head describes; None for a head whose name has no version (a crash right after
    `insert_next` took a number)."""
    newest = head.get("newest") or _newest(docs, head["workspace"], head["name"])  # older heads lack `newest`
    if newest is None:
        return None
    return Container(workspace=head["workspace"], name=head["name"], latest_version=newest,
                     next_version=str(head["counter"] + 1), archived=head["latest"] is None)


def containers(docs: Docs, workspace: str, *, archived: bool | None, top: int,
               cursor: str | None) -> Page[Container]:
    """A page of containers, as the EnvironmentStore port describes it."""
    heads, after = docs.page(_HEADS.format(only=_ONLY[archived]), {"@ws": workspace}, pk=workspace, top=top,
                             cursor=cursor)
    found = [container_of(docs, head) for head in heads if not (head.get("record") or {}).get("anonymous")]
    return Page([c for c in found if c is not None], after)


def _newest(docs: Docs, workspace: str, name: str) -> str | None:
    found, _ = docs.page(_NEWEST, {"@ws": workspace, "@name": name}, pk=workspace, top=1, cursor=None)
    return str(found[0]) if found else None

"""The start-up estimate of a sync: how many requests it expects, against the budget.

Made from what the run has read anyway (the workspace and repository listings, shared
through the directory) and from the state, with the same per-partition decisions the
sync will take (``needs_request``: refresh intervals, unchanged repositories, scopes
the credential lacks). Each partition that will be asked costs at least one request,
so the estimate is a floor: a repository read for the first time costs one request
per page of its history on top.
"""

from __future__ import annotations

import logging
import typing as t

from tap_bitbucket.progress import DOCUMENTED_BUDGET

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.streams import Stream

    from tap_bitbucket.client import BitbucketStream
    from tap_bitbucket.services import Services

LOGGER = logging.getLogger("tap_bitbucket")


def _selected(stream: Stream) -> bool:
    return bool(stream.selected or stream.has_selected_descendents)


def plan_run(streams: Iterable[Stream], services: Services) -> int:
    """Log the run's plan in one line; return the expected requests (a floor)."""
    by_name = {s.name: t.cast("BitbucketStream", s) for s in streams}
    repositories = by_name.get("repositories")
    if repositories is None or not _selected(repositories):
        return 0
    repo_children = [
        s for s in by_name.values() if s.parent_stream_type is type(repositories) and _selected(s)
    ]
    workspace_children = [
        s
        for s in by_name.values()
        if s.parent_stream_type is not None
        and s.parent_stream_type.__name__ == "WorkspacesStream"
        and s is not repositories
        and _selected(s)
    ]
    directory, scope = services.directory, services.scope
    slugs = directory.workspace_slugs()
    for slug in slugs:
        # Read now (the sync reads them anyway, from the directory): counted as made.
        directory.workspace(slug)
        directory.repositories(slug)
    total = new = 0
    # The listings are read by now (the sync shares them): they count as made.
    made = services.transport.total_requests()
    expected = made
    for slug in slugs:
        rows = [r for r in directory.repositories(slug) if scope.includes_record(r)]
        workspace_context = {
            "workspace_slug": slug,
            "workspace_uuid": directory.workspace(slug).get("uuid"),  # cached: no request
        }
        expected += sum(1 for s in workspace_children if s.needs_request(workspace_context, ahead=True))
        for row in rows:
            context = repositories.get_child_context(row, workspace_context) or {}
            asked = [s for s in repo_children if s.needs_request(context, ahead=True)]
            expected += len(asked)
            total += 1
            marks = services.bookmarks
            if not any(marks.known(s.name, s.partition_of(context)) for s in repo_children):
                new += 1
    services.progress.repositories_total = total
    budget = services.transport.hourly_budget()
    cap = services.settings.max_requests_per_run
    per_hour = f"{budget:,}/h" if budget else f"{DOCUMENTED_BUDGET:,}/h (Bitbucket's default)"
    if cap is not None and expected > cap:
        then = (
            f"max_requests_per_run ({cap:,}) will stop this run early; the next run goes on "
            "from the next repository"
        )
    elif expected > (budget or DOCUMENTED_BUDGET):
        then = (
            "that is more than one hour's budget: Bitbucket will answer 429 and the run "
            "will wait it out; set max_requests_per_run to spread it over scheduled runs"
        )
    else:
        then = "it fits the budget"
    LOGGER.info(
        "plan: %s repositories in %s workspace(s) (%s read for the first time); at least "
        "%s requests expected (%s made for the listings) against %s; %s",
        f"{total:,}",
        len(slugs),
        f"{new:,}",
        f"{expected:,}",
        f"{made:,}",
        per_hour,
        then,
    )
    return expected

"""Every stream of the tap, grouped by resource family."""

from __future__ import annotations

from tap_bitbucket.streams.commits import (
    BranchesStream,
    CommitsStream,
    CommitStatusesStream,
    TagsStream,
)
from tap_bitbucket.streams.pipelines import PipelinesStream, PipelineStepsStream
from tap_bitbucket.streams.pull_requests import (
    PullRequestActivityStream,
    PullRequestCommentsStream,
    PullRequestCommitsStream,
    PullRequestDiffstatsStream,
    PullRequestsStream,
    PullRequestTasksStream,
)
from tap_bitbucket.streams.repository import (
    BranchRestrictionsStream,
    DefaultReviewersStream,
    DeployKeysStream,
    DeploymentsStream,
    DownloadsStream,
    EnvironmentsStream,
    RepositoriesStream,
    RepositoryGroupPermissionsStream,
    RepositoryUserPermissionsStream,
    RepositoryWebhooksStream,
)
from tap_bitbucket.streams.workspace import (
    ProjectDefaultReviewersStream,
    ProjectGroupPermissionsStream,
    ProjectsStream,
    ProjectUserPermissionsStream,
    WorkspaceMembersStream,
    WorkspacesStream,
    WorkspaceWebhooksStream,
)

STREAM_TYPES = [
    WorkspacesStream,
    WorkspaceMembersStream,
    WorkspaceWebhooksStream,
    ProjectsStream,
    ProjectUserPermissionsStream,
    ProjectGroupPermissionsStream,
    ProjectDefaultReviewersStream,
    RepositoriesStream,
    RepositoryUserPermissionsStream,
    RepositoryGroupPermissionsStream,
    BranchesStream,
    TagsStream,
    CommitsStream,
    CommitStatusesStream,
    PullRequestsStream,
    PullRequestCommentsStream,
    PullRequestActivityStream,
    PullRequestCommitsStream,
    PullRequestTasksStream,
    PullRequestDiffstatsStream,
    PipelinesStream,
    PipelineStepsStream,
    DeploymentsStream,
    EnvironmentsStream,
    BranchRestrictionsStream,
    DefaultReviewersStream,
    RepositoryWebhooksStream,
    DownloadsStream,
    DeployKeysStream,
]

__all__ = ["STREAM_TYPES"]

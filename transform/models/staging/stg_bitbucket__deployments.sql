-- One row per deployment. A deployment changes in place (in progress, then completed):
-- the version with the latest completion (then start) date is the newest.
{% set completion = json_text('state', 'completion_date') %}
{% set start = json_text('state', 'start_date') %}
with latest as (
  {{ deduplicated(source('bitbucket', 'deployments'), ['uuid'], [completion, start]) }}
)

select
  repo_uuid,
  workspace_slug || '/' || repo_slug as repository_full_name,
  uuid as deployment_uuid,
  {{ json_text('environment', 'uuid') }} as environment_uuid,
  {{ json_text('state', 'name') }} as state_name,
  {{ json_text('state', 'status.name') }} as status,
  {{ iso_to_utc(start) }} as started_at,
  {{ iso_to_utc(completion) }} as completed_at,
  {{ json_text('release', 'commit.hash') }} as commit_hash
from latest

-- One row per pipeline run (a run that completed is newer than the same run in progress).
with latest as (
  {{ deduplicated(source('bitbucket', 'pipelines'), ['uuid'], ['completed_on']) }}
)

select
  repo_uuid,
  workspace_slug || '/' || repo_slug as repository_full_name,
  uuid as pipeline_uuid,
  cast(build_number as bigint) as build_number,
  {{ utc_timestamp('created_on') }} as created_at,
  {{ utc_timestamp('completed_on') }} as completed_at,
  {{ json_text('state', 'name') }} as state_name,
  {{ json_text('state', 'result.name') }} as result,
  cast(duration_in_seconds as bigint) as duration_seconds,
  cast(build_seconds_used as bigint) as build_seconds_used
from latest

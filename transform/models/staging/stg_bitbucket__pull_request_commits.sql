-- One row per (pull request, commit).
with latest as (
  {{ deduplicated(source('bitbucket', 'pull_request_commits'), ['repo_uuid', 'pull_request_id', 'hash']) }}
)

select
  repo_uuid,
  cast(pull_request_id as bigint) as pull_request_id,
  hash as commit_hash,
  {{ utc_timestamp(adapter.quote('date')) }} as committed_at
from latest

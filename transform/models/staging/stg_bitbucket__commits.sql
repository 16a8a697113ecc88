-- One row per commit of a repository.
with latest as (
  {{ deduplicated(source('bitbucket', 'commits'), ['repo_uuid', 'hash']) }}
)

select
  repo_uuid,
  hash as commit_hash,
  {{ utc_timestamp(adapter.quote('date')) }} as committed_at
from latest

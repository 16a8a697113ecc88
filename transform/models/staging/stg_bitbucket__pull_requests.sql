-- One row per pull request (newest version by updated_on).
with latest as (
  {{ deduplicated(source('bitbucket', 'pull_requests'), ['repo_uuid', 'id'], ['updated_on']) }}
)

select
  repo_uuid,
  workspace_slug || '/' || repo_slug as repository_full_name,
  cast(id as bigint) as pull_request_id,
  title,
  {{ json_text('author', 'uuid') }} as author_uuid,
  state,
  {{ utc_timestamp('created_on') }} as created_at,
  {{ utc_timestamp('updated_on') }} as updated_at,
  -- Bitbucket sends the merge commit as a 12-character short hash.
  {{ json_text('merge_commit', 'hash') }} as merge_commit_short_hash,
  {{ json_text('destination', 'branch.name') }} as destination_branch
from latest

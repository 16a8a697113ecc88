-- One row per pull-request comment (newest version by updated_on); deleted ones stay.
with latest as (
  {{ deduplicated(source('bitbucket', 'pull_request_comments'), ['repo_uuid', 'pull_request_id', 'id'], ['updated_on']) }}
)

select
  repo_uuid,
  cast(pull_request_id as bigint) as pull_request_id,
  cast(id as bigint) as comment_id,
  {{ json_text(adapter.quote('user'), 'uuid') }} as user_uuid,
  {{ utc_timestamp('created_on') }} as created_at,
  coalesce(pending, false) as is_pending,
  coalesce(deleted, false) as is_deleted,
  {{ json_text('inline', 'path') }} is not null as is_inline
from latest

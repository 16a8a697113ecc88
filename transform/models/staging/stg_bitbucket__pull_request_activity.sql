-- One row per activity entry: state updates (with the state and its date), approvals and
-- changes-requests (with who and when). Comments are read from the comments stream, which
-- says whether one is a pending draft.
with latest as (
  {{ deduplicated(source('bitbucket', 'pull_request_activity'), ['repo_uuid', 'pull_request_id', 'activity_id']) }}
)

select
  repo_uuid,
  cast(pull_request_id as bigint) as pull_request_id,
  activity_id,
  activity_kind,
  {{ utc_timestamp('activity_date') }} as activity_at,
  {{ json_text(adapter.quote('update'), 'state') }} as update_state,
  {{ iso_to_utc(json_text(adapter.quote('update'), 'date')) }} as update_at,
  coalesce(
    {{ json_text('approval', 'user.uuid') }},
    {{ json_text('changes_requested', 'user.uuid') }}
  ) as vote_user_uuid,
  {{ iso_to_utc("coalesce(" ~ json_text('approval', 'date') ~ ", " ~ json_text('changes_requested', 'date') ~ ")") }} as vote_at
from latest
